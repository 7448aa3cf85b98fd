"""The whole path on a real X server: injected input → recorder → spool → upload → collector → dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from demotrace.demo.run import DemoResult, record_scripted_session

pytestmark = pytest.mark.x11


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    # One scripted cycle: every kind of action, in both windows.
    return record_scripted_session(tmp_path_factory.mktemp("e2e"), seconds=None, seed=7)


def test_recorder_exits_cleanly(demo_run: DemoResult) -> None:
    assert demo_run.recorder_exit == 0


def test_every_injected_action_comes_out_right_and_in_order(demo_run: DemoResult) -> None:
    comparison = demo_run.comparison
    assert comparison.problems == []
    assert comparison.captured == comparison.injected
    expected_kinds = {"click", "double_click", "triple_click", "right_click", "drag", "scroll", "type"}
    assert expected_kinds <= set(comparison.injected)
    assert {"press", "hotkey"} <= set(comparison.injected)


def test_every_step_has_its_pre_action_frame(demo_run: DemoResult) -> None:
    dataset = demo_run.dataset
    steps = 0
    for line in (dataset / "trajectories.jsonl").read_text().splitlines():
        for step in json.loads(line)["traj"]:
            steps += 1
            assert step["image"], f"step {step['index']} has no frame"
            image = dataset / step["image"]
            with Image.open(image) as picture:  # a whole screen, decodable by any image reader
                assert picture.size == (1920, 1080), f"{step['image']} is {picture.size}"
                assert picture.format in ("PNG", "WEBP", "JPEG")
    assert steps == len(demo_run.injected)
    summary = json.loads((dataset / "summary.json").read_text())
    assert summary["steps"] == steps


def test_viewer_page_lists_every_step(demo_run: DemoResult) -> None:
    page = (demo_run.dataset / "index.html").read_text()
    assert page.count("pyautogui.") >= len(demo_run.injected)


def test_typed_text_is_not_in_the_spool_files(demo_run: DemoResult) -> None:
    typed = [action.text for action in demo_run.injected if action.kind == "type" and action.text]
    assert typed
    spool_dir = demo_run.dataset.parent / "spool"
    raw = b"".join(path.read_bytes() for path in spool_dir.iterdir() if path.is_file())
    for text in typed:
        for fragment in {text, text[:6]}:
            if len(fragment) >= 4:
                assert fragment.encode() not in raw, f"{fragment!r} is in the spool in plaintext"


def test_every_record_reached_the_collector_and_left_the_spool(demo_run: DemoResult, tmp_path: Path) -> None:
    from demotrace.collector.reader import CollectorReader
    from demotrace.device.spool import open_spool
    from demotrace.model import Marker
    from demotrace.protocol import STOP_MARKER_KIND

    out = demo_run.dataset.parent
    spool = open_spool(out / "spool", out / "spool.key")
    try:
        assert spool.pending_count() == 0, "the recorder stopped with records not uploaded"
        assert list(spool.batches()) == [], "uploaded records stay in the spool"
    finally:
        spool.close()
    with CollectorReader(out / "collector") as reader:
        batches = list(reader.iter_batches())
    # One session, every batch of it (seq 0, 1, 2 ... with no gap), the last one closing it.
    assert len({batch.session_id for batch in batches}) == 1
    assert [batch.seq for batch in batches] == list(range(len(batches)))
    last = [event for event in batches[-1].events if isinstance(event, Marker)]
    assert last and last[-1].kind == STOP_MARKER_KIND
