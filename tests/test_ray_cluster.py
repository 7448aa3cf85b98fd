"""`build --engine ray --ray-address` against a real Ray cluster: a head node started by `ray start` in a
folder of its own (one CPU), joined by the CLI, which leaves it running; output as the local build's."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from demotrace.dataset.build import build_dataset
from demotrace.dataset.options import ShardLimits
from demotrace.dataset.privacy import default_key_path
from demotrace.dataset.privacy import load_or_create_key as load_pseudonym_key
from demotrace.device.spool import Spool, load_or_create_key
from tests.test_distributed import assert_same_dataset, fleet

pytest.importorskip("ray")

RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, head: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the Ray head did not listen on {port} within {seconds} s")


@pytest.fixture
def ray_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster's own token (Ray enables token auth by default), given to the head and the CLI
    alike through the environment, so neither depends on ~/.ray."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))


@pytest.fixture
def ray_head(ray_auth: None) -> Iterator[str]:
    """A Ray head node in a session of its own (``--block``: it lives as long as this process); its
    whole process group is ended afterwards (never ``ray stop``: it would end every Ray on the machine).
    The temp folder is short: Ray's socket paths must fit in 107 bytes."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rayt-", dir="/tmp"))
    port = _free_port()
    command = [
        str(RAY),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--num-cpus=1",
    ]
    command += [f"--temp-dir={temp_dir}", "--include-dashboard=false", "--disable-usage-stats"]
    head = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_for_port(port, head, 90.0)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_build_joins_a_running_ray_cluster_and_writes_what_the_local_engine_writes(
    ray_head: str, tmp_path: Path
) -> None:
    key_path = tmp_path / "spool.key"
    spool = Spool(tmp_path / "spool", load_or_create_key(key_path))
    data = fleet()
    spool.append(list(data.frames.values()))
    spool.append(data.batches)
    out = tmp_path / "ray"
    command = [sys.executable, "-m", "demotrace.cli", "build", "--spool", str(tmp_path / "spool")]
    command += ["--key", str(key_path), "--out", str(out), "--engine", "ray", "--ray-address", ray_head]
    built = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr

    # The same sessions built here with the key the CLI made for its dataset give the same bytes.
    pseudonym_key = load_pseudonym_key(default_key_path(out))
    local = build_dataset(
        spool.batches(),
        spool.load_frame,
        tmp_path / "local",
        pseudonym_key=pseudonym_key,
        shard_limits=ShardLimits(),
    )
    spool.close()
    assert local.steps == 16
    # summary.json differs in one field: the CLI names the key file it made (pseudonym_key_path).
    cli_summary = json.loads((out / "summary.json").read_bytes())
    assert cli_summary.pop("pseudonym_key_path") == f"../{default_key_path(out).name}"
    local_summary = json.loads((tmp_path / "local" / "summary.json").read_bytes())
    assert local_summary.pop("pseudonym_key_path") == ""
    assert cli_summary == local_summary
    (out / "summary.json").unlink()
    (tmp_path / "local" / "summary.json").unlink()
    assert_same_dataset(tmp_path / "local", out)
    # The cluster is the caller's: the CLI left it running.
    status = subprocess.run([str(RAY), "status", "--address", ray_head], capture_output=True, timeout=60)
    assert status.returncode == 0
