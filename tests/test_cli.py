"""The `demotrace` command as a user runs it: real processes, real files, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import free_port, start_recorder, stop_process, user_dirs
from demotrace.device.spool import SPOOL_FILE, open_spool
from demotrace.model import Batch, Button, Frame, FrameTaken, Monitor, SessionHeader


def demotrace(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demotrace.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env if env is not None else {**os.environ},
    )


def tiny_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def spool_with_one_click(tmp_path: Path) -> tuple[Path, Path]:
    spool_dir, key = tmp_path / "spool", tmp_path / "spool.key"
    spool = open_spool(spool_dir, key)
    header = SessionHeader("s1", "d1", "x11", 64, 48, [Monitor(0, 0, 64, 48)], 400, 5, 10.0, 1e9)
    events = [
        FrameTaken(10.0, 1e9, "f1", 0, 0, 64, 48, "click"),
        Button(10.0, 1e9, True, "left", 32, 24),
        Button(10.05, 1e9, False, "left", 32, 24),
    ]
    spool.append(
        [
            Batch("b1", "s1", "d1", 0, events, header=header),  # type: ignore[arg-type]
            Frame("f1", "s1", "d1", 10.0, 1e9, 0, 0, 64, 48, "image/png", tiny_png()),
        ]
    )
    spool.close()
    return spool_dir, key


def test_build_from_a_spool_writes_the_chosen_formats(tmp_path: Path) -> None:
    spool_dir, key = spool_with_one_click(tmp_path)
    out = tmp_path / "dataset"
    result = demotrace(
        "build", "--spool", str(spool_dir), "--key", str(key), "--out", str(out), "--format", "agentnet"
    )
    assert result.returncode == 0, result.stderr
    episode = json.loads((out / "trajectories.jsonl").read_text())
    assert episode["traj"][0]["value"]["code"] == "pyautogui.click(x=0.5, y=0.5)"
    assert (out / episode["traj"][0]["image"]).is_file()
    assert not (out / "parquet").exists()
    assert json.loads((out / "summary.json").read_text())["steps"] == 1


def test_build_errors_are_clear(tmp_path: Path) -> None:
    spool_dir, _ = spool_with_one_click(tmp_path)
    neither = demotrace("build", "--out", str(tmp_path / "o"))
    assert neither.returncode == 2 and "exactly one source: --spool DIR, or --from-server" in neither.stderr
    no_blobs = demotrace("build", "--database-url", "postgresql+psycopg://h/db", "--out", str(tmp_path / "o"))
    assert no_blobs.returncode == 2 and "--database-url needs --blobs" in no_blobs.stderr
    no_ray = demotrace(
        "build", "--spool", str(spool_dir), "--ray-address", "ray://h:1", "--out", str(tmp_path / "o")
    )
    assert no_ray.returncode == 2 and "--ray-address needs --engine ray" in no_ray.stderr
    unknown = demotrace("build", "--spool", str(spool_dir), "--out", str(tmp_path / "o"), "--format", "mp4")
    assert unknown.returncode == 2 and "unknown --format mp4" in unknown.stderr
    not_spool = demotrace("build", "--spool", str(tmp_path), "--out", str(tmp_path / "o"))
    assert not_spool.returncode == 2 and "not a spool folder" in not_spool.stderr
    wrong_key = tmp_path / "other.key"
    wrong_key.write_bytes(os.urandom(32))
    bad_key = demotrace(
        "build", "--spool", str(spool_dir), "--key", str(wrong_key), "--out", str(tmp_path / "o")
    )
    assert bad_key.returncode == 2 and "wrong key" in bad_key.stderr


def test_rebuilding_replaces_the_whole_folder_or_refuses(tmp_path: Path) -> None:
    spool_dir, key = spool_with_one_click(tmp_path)
    out = tmp_path / "dataset"
    source = ["--spool", str(spool_dir), "--key", str(key), "--out", str(out)]
    first = demotrace("build", *source)
    assert first.returncode == 0, first.stderr
    assert "steps" in first.stdout and str(out / "index.html") in first.stdout  # the table, on stdout
    (out / "images" / "left-over.png").write_bytes(b"an image of an older build")
    pseudonyms = (out / "trajectories.jsonl").read_text()

    again = demotrace("build", *source, "--format", "agentnet")
    assert again.returncode == 2
    assert again.stderr.strip() == f"error: {out} already holds a dataset: add --overwrite to replace it"
    assert (out / "images" / "left-over.png").exists()  # refused: nothing touched

    replaced = demotrace("build", *source, "--format", "agentnet", "--overwrite", "--json")
    assert replaced.returncode == 0, replaced.stderr
    summary = json.loads(replaced.stdout)
    assert summary["out_dir"] == str(out) and summary["steps"] == 1
    assert summary["pseudonym_key_path"] == str(tmp_path / ".dataset.pseudonym-key")
    assert not (out / "images" / "left-over.png").exists()
    assert not (out / "parquet").exists() and not (out / "webdataset").exists()
    assert (out / "trajectories.jsonl").read_text() == pseudonyms  # the same key: the same pseudonyms
    written = json.loads((out / "summary.json").read_text())
    assert written["pseudonym_key_path"] == "../.dataset.pseudonym-key"
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".dataset.")] == [
        ".dataset.pseudonym-key"  # no staging folder left beside it
    ]


def test_a_failed_build_leaves_nothing_and_a_folder_not_a_dataset_is_never_replaced(tmp_path: Path) -> None:
    spool_dir, _ = spool_with_one_click(tmp_path)
    wrong_key = tmp_path / "other.key"
    wrong_key.write_bytes(os.urandom(32))
    out = tmp_path / "dataset"
    failed = demotrace("build", "--spool", str(spool_dir), "--key", str(wrong_key), "--out", str(out))
    assert failed.returncode == 2 and "wrong key" in failed.stderr
    assert not out.exists()  # no empty images/ folder, no half build
    assert not [path for path in tmp_path.iterdir() if ".building-" in path.name]
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "todo.txt").write_text("keep me")
    refused = demotrace("build", "--spool", str(spool_dir), "--out", str(precious), "--overwrite")
    assert refused.returncode == 2
    assert "is not empty and is not a dataset (no summary.json)" in refused.stderr
    assert (precious / "todo.txt").read_text() == "keep me"


def test_ray_builds_quietly_unless_asked(tmp_path: Path) -> None:
    spool_dir, key = spool_with_one_click(tmp_path)
    args = ["build", "--spool", str(spool_dir), "--key", str(key), "--engine", "ray", "--format", "agentnet"]
    result = demotrace(*args, "--out", str(tmp_path / "dataset"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no Ray start-up lines, no Ray Data execution plans
    assert result.stdout.splitlines()[0] == f"dataset   {tmp_path / 'dataset'}"


def test_record_and_up_need_a_display(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DISPLAY"}
    for command in (["record", "--spool", str(tmp_path / "s")], ["up"]):
        result = demotrace(*command, env=env)
        assert result.returncode == 2
        assert "no $DISPLAY" in result.stderr


def test_record_runs_as_a_lean_process_that_stops_cleanly(tmp_path: Path, desktop: VirtualDesktop) -> None:
    # `demotrace record` hands over to the agent in the same process: a supervisor's pid and signals
    # still reach it, and none of the CLI's own libraries is loaded in the hours-long recording.
    spool = tmp_path / "spool"
    recorder, output = start_recorder(
        desktop.display, spool, tmp_path / "spool.key", tmp_path / "d.json", None, accept_notice=True
    )
    try:
        command_line = Path(f"/proc/{recorder.pid}/cmdline").read_bytes().split(b"\0")
        assert b"demotrace.device.agent" in command_line
        # typer's option parsing loads pydantic's compiled core; the exec'd agent must not have it.
        assert "_pydantic_core" not in Path(f"/proc/{recorder.pid}/maps").read_text()
    finally:
        code = stop_process(recorder)
    assert code == 0, output.text()
    assert "recording" in output.text()
    assert (spool / SPOOL_FILE).exists()


def test_record_with_a_dead_server_says_so(tmp_path: Path, desktop: VirtualDesktop) -> None:
    env = {**os.environ, **user_dirs(tmp_path), "DISPLAY": desktop.display}
    dead = f"http://127.0.0.1:{free_port()}"
    result = demotrace(
        "record",
        "--spool",
        str(tmp_path / "s"),
        "--credentials",
        str(tmp_path / "d.json"),
        "--server",
        dead,
        env=env,
    )
    assert result.returncode == 2
    assert f"cannot reach collector {dead}" in result.stderr
    assert "Traceback" not in result.stderr
