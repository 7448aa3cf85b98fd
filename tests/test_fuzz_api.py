"""A short schemathesis run against the served schema, request bodies included: no request may get a
5xx, and every answer is one the schema documents. The long run is bench/fuzz_api.py."""

from __future__ import annotations

from pathlib import Path

from bench.fuzz_api import fuzz


def test_fuzzed_requests_get_no_server_error_and_only_documented_statuses(tmp_path: Path) -> None:
    result = fuzz(examples=8, data_dir=tmp_path / "data")
    assert result.operations >= 17  # every route, the ones with bodies included
    assert result.cases > 100
    assert result.server_errors == []
    assert not result.undocumented, result.undocumented
    assert result.statuses[400] > 0  # malformed bodies reached the parsers and were refused
