"""What the device tells about its own trouble: dropped frames reach the collector's audit log, and
`demotrace status` says in words why uploads fail and what was dropped."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from test_uploader import make_batch

from demotrace import __version__
from demotrace.capture.sink import RecordDropped
from demotrace.cli.control import health_problems
from demotrace.collector.app import create_app
from demotrace.collector.server import ServerThread
from demotrace.device.enrollment import enroll
from demotrace.device.spool import Spool
from demotrace.device.uploader import Uploader
from demotrace.model import Frame

ADMIN = "admin-token-for-health-tests"


def test_dropped_frames_are_reported_to_the_collector_once(tmp_path: Path) -> None:
    with ServerThread(create_app(tmp_path / "collector", admin_token=ADMIN)) as server:
        device = enroll(server.url, "laptop")
        spool = Spool(tmp_path / "spool", os.urandom(32), quota_bytes=64 * 1024)
        spool.append([make_batch("s", 0)])
        with pytest.raises(RecordDropped):  # larger than the whole quota
            spool.append([Frame("big", "s", "d", 1.0, 1.0, 0, 0, 4, 4, "image/png", os.urandom(100_000))])
        uploader = Uploader(spool, device)
        try:
            assert uploader.upload_pending(timeout=30) == 1
            assert uploader.report_drops()
            assert not uploader.report_drops()  # nothing new: nothing sent
        finally:
            uploader.close()
        audit = httpx.get(
            f"{server.url}/v1/admin/audit", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
        ).json()
        fleet = httpx.get(
            f"{server.url}/v1/admin/devices", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
        ).json()
    # The same report carried the device's health, which the fleet page shows.
    assert [(d["device_id"], d["agent_version"], d["spool_backlog"], d["status"]) for d in fleet] == [
        (device.device_id, __version__, 0, "active")
    ]
    reports = [entry for entry in audit if entry["action"] == "device_report"]
    assert len(reports) == 1 and reports[0]["device_id"] == device.device_id
    assert reports[0]["details"] == {
        "frames_dropped_quota": 1,
        "frames_dropped_disk_full": 0,
        "disk_full": False,
    }
    assert spool.drops().unreported_quota == 0 and spool.drops().quota == 1
    spool.close()


def test_status_says_what_is_wrong_in_words() -> None:
    assert health_problems({"upload_error": None, "frames_dropped": 0, "disk_full": False}) == []
    problems = health_problems(
        {
            "upload_error": "the certificate of collector https://c is not trusted (...): give --ca-bundle",
            "disk_full": True,
            "frames_dropped": 12,
            "frames_dropped_quota": 2,
            "frames_dropped_disk_full": 10,
        }
    )
    assert problems == [
        "uploads failing: the certificate of collector https://c is not trusted (...): give --ca-bundle",
        "the disk is full: frames are being dropped, events are kept",
        "12 frames dropped for room (2 spool quota, 10 full disk)",
    ]
