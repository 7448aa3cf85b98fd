"""The uploader's progress record on its own: what a burst, a record sent in chunks and the end leave."""

from __future__ import annotations

import datetime

from demotrace.device.upload_progress import UploadProgress


def test_a_burst_counts_records_bytes_and_a_large_records_chunks() -> None:
    progress = UploadProgress()
    assert progress.snapshot()["started"] is None  # nothing sent since the recorder started
    progress.burst_started(100.0, records_left=3)
    progress.record_started(500)
    progress.bytes_went(500)
    progress.record_done()
    progress.record_started(8_000_000, already_received=2_000_000)  # resumed where a broken link stopped
    progress.bytes_went(1_000_000)
    snapshot = progress.snapshot()
    assert snapshot == {
        "active": True,
        "started": 100.0,
        "ended": None,
        "records_sent": 1,
        "records_total": 3,
        "bytes_sent": 1_000_500,
        "record_bytes_sent": 3_000_000,
        "record_bytes_total": 8_000_000,
    }
    progress.records_left(4)  # the next page: the recorder spooled more meanwhile
    assert progress.snapshot()["records_total"] == 5
    progress.burst_ended(130.0)
    last = progress.snapshot()
    assert (last["active"], last["ended"], last["records_sent"], last["bytes_sent"]) == (
        False,
        130.0,
        1,
        1_000_500,
    )
    assert last["record_bytes_total"] == 0  # the half-sent record is not shown as under way
    progress.burst_ended(140.0)  # ending twice keeps the first end
    assert progress.snapshot()["ended"] == 130.0


def test_status_draws_the_burst_and_a_large_record_as_bars() -> None:
    from rich.console import Console

    from demotrace.cli.control import upload_progress_row

    progress = {
        "active": True,
        "started": 100.0,
        "ended": None,
        "records_sent": 12,
        "records_total": 50,
        "bytes_sent": 3_400_000,
        "record_bytes_sent": 3_000_000,
        "record_bytes_total": 8_000_000,
    }
    row = upload_progress_row(progress)
    assert row is not None and row[0] == "uploading"
    console = Console(record=True, width=100)
    console.print(row[1])
    shown = " ".join(console.export_text().split())
    assert "12 of 50 records sent (3.4 MB), since" in shown and "this record: 3.0 of 8.0 MB" in shown, shown
    assert "━" in shown  # the bars
    small = {**progress, "record_bytes_sent": 10, "record_bytes_total": 20_000}
    console = Console(record=True, width=100)
    console.print(upload_progress_row(small)[1])  # type: ignore[index]
    assert "this record" not in console.export_text()  # a small record has no bar of its own
    assert upload_progress_row({**progress, "active": False, "ended": 130.0, "records_sent": 1})[1] == (
        "1 record, 3.4 MB, ended at " + datetime.datetime.fromtimestamp(130.0).strftime("%H:%M:%S")
    )
    assert upload_progress_row({"started": None}) is None
