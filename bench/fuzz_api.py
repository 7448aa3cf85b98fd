"""Fuzz the collector's HTTP API from its served OpenAPI schema (schemathesis), request bodies included.

Every operation gets ``--examples`` generated requests (valid and not), with a real device token or
admin token where the path needs one, against a live collector on loopback. Prints the cases sent,
the statuses seen, any 5xx and any status the schema does not document.

    .venv/bin/python -m bench.fuzz_api [--examples 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings

ADMIN_TOKEN = "fuzzing-admin-token-0123456789"


@dataclass
class FuzzResult:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    undocumented: Counter[str] = field(default_factory=Counter)
    operations: int = 0


def _raw_bytes(_context: Any, value: Any) -> bytes:
    """Generated bodies as bytes: a string as UTF-8, bytes as they are, anything else as its text."""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else str(value).encode()


def _register_serializers() -> None:
    import schemathesis

    for media_type in ("application/x-demotrace-record", "application/octet-stream", "application/toml"):
        schemathesis.serializer(media_type)(_raw_bytes)


def fuzz(examples: int, data_dir: Path) -> FuzzResult:
    """Run ``examples`` cases per operation against a fresh collector in ``data_dir``."""
    import schemathesis
    from schemathesis.core.result import Ok

    from demotrace.collector.app import create_app
    from demotrace.collector.limits import CollectorLimits
    from demotrace.collector.server import ServerThread

    # Generous rates: the fuzzer is one client sending thousands of requests, not an attack to shed.
    limits = CollectorLimits(
        device_requests_per_second=10_000, device_request_burst=10_000, enrollments_per_minute=60_000,
        enrollment_burst=10_000, admin_failures_per_minute=60_000, admin_failure_burst=10_000,
    )  # fmt: skip
    _register_serializers()
    result = FuzzResult()
    with ServerThread(create_app(data_dir, admin_token=ADMIN_TOKEN, limits=limits)) as server:
        enrolled = httpx.post(f"{server.url}/v1/enroll", json={"device_name": "fuzzer"}, timeout=10).json()
        device_token = enrolled["token"]
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        for found in schema.get_all_operations():
            if not isinstance(found, Ok):
                raise RuntimeError(f"the served schema has an invalid operation: {found.err()}")
            operation = found.ok()
            result.operations += 1
            token = ADMIN_TOKEN if "/admin/" in operation.path else device_token
            documented = set(operation.definition.raw.get("responses", {}))
            _fuzz_operation(server.url, operation, token, documented, examples, result)
    return result


def _fuzz_operation(
    url: str, operation: Any, token: str, documented: set[str], examples: int, result: FuzzResult
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        response = case.call(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        result.cases += 1
        result.statuses[response.status_code] += 1
        if response.status_code >= 500:
            result.server_errors.append(f"{case.method} {case.formatted_path}: {response.status_code}")
        if str(response.status_code) not in documented and response.status_code not in (404, 405, 422):
            result.undocumented[f"{case.method} {operation.path} {response.status_code}"] += 1

    run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=300, help="cases per operation")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dt-fuzz-") as folder:
        result = fuzz(args.examples, Path(folder) / "data")
    print(f"{result.cases} cases over {result.operations} operations in {time.monotonic() - started:.0f} s")
    print(f"statuses: {dict(sorted(result.statuses.items()))}")
    print(f"5xx: {len(result.server_errors)} {result.server_errors[:10]}")
    print(f"undocumented statuses: {dict(result.undocumented)}")


if __name__ == "__main__":
    main()
