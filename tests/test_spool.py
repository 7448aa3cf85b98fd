from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from demotrace.capture.sink import RecordDropped
from demotrace.device.spool import Spool, SpoolError, load_or_create_key
from demotrace.model import Batch, Frame, Key

SECRET = "hunter2-correct-horse"


def typed_batch(batch_id: str, text: str, seq: int = 0) -> Batch:
    events: list[Key | object] = []
    for index, char in enumerate(text):
        events.append(Key(t=float(index), wall=1e9 + index, down=True, key=char, keysym=ord(char), char=char))
    return Batch(batch_id=batch_id, session_id="s1", device_id="d1", seq=seq, events=events)  # type: ignore[arg-type]


def all_spool_bytes(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file())


def test_records_round_trip(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", os.urandom(32))
    frame = Frame("f1", "s1", "d1", 1.0, 2.0, 0, 0, 4, 4, "image/png", b"\x89PNG....")
    spool.append([typed_batch("b1", "abc"), frame])
    records = list(spool.iter_records())
    assert records == [typed_batch("b1", "abc"), frame]
    assert spool.load_frame("f1") == frame
    assert spool.load_frame("missing") is None


def test_typed_text_is_not_on_disk_in_plaintext(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir, os.urandom(32))
    spool.append([typed_batch("b1", SECRET)])
    # Look at the files while the WAL still holds the commit, and again after a checkpoint.
    raw_before = all_spool_bytes(spool_dir)
    spool.close()
    raw_after = all_spool_bytes(spool_dir)
    for raw in (raw_before, raw_after):
        assert SECRET.encode() not in raw
        assert b"hunter2" not in raw
        assert "hunter2".encode("utf-16-le") not in raw


def test_wrong_key_is_a_clear_error(tmp_path: Path) -> None:
    Spool(tmp_path / "spool", os.urandom(32)).append([typed_batch("b1", "abc")])
    other = Spool(tmp_path / "spool", os.urandom(32))
    with pytest.raises(SpoolError, match="wrong key"):
        list(other.iter_records())


def test_duplicate_record_is_stored_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", os.urandom(32))
    spool.append([typed_batch("b1", "abc")])
    spool.append([typed_batch("b1", "abc")])
    assert spool.stats()["records"] == 1


def test_pending_and_mark_uploaded(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", os.urandom(32))
    spool.append([typed_batch(f"b{i}", "xy", seq=i) for i in range(5)])
    pending = spool.pending(limit=3)
    assert [record.record_id for record in pending] == ["b0", "b1", "b2"]
    spool.mark_uploaded(["b0", "b1"])
    assert [record.record_id for record in spool.pending()] == ["b2", "b3", "b4"]
    assert spool.delete_unsent() == 3
    assert spool.pending_count() == 0
    assert spool.stats()["records"] == 0  # uploaded ones are deleted once acknowledged


def test_key_file_is_private_and_stable(tmp_path: Path) -> None:
    key_path = tmp_path / "config" / "spool.key"
    key = load_or_create_key(key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert load_or_create_key(key_path) == key
    key_path.write_bytes(b"short")
    with pytest.raises(SpoolError, match="expected 32"):
        load_or_create_key(key_path)


def test_corrupt_spool_file_is_a_clear_error(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "spool.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(SpoolError, match="cannot open spool"):
        Spool(spool_dir, os.urandom(32))


def noise_frame(frame_id: str, size: int = 48 * 1024, base: str | None = None) -> Frame:
    """A frame of incompressible bytes, so the spool fills as fast as its data says."""
    return Frame(frame_id, "s1", "d1", 1.0, 2.0, 0, 0, 4, 4, "image/png", os.urandom(size), base)


def test_uploaded_records_are_deleted_from_the_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", os.urandom(32))
    spool.append([typed_batch("b1", SECRET), noise_frame("f1")])
    spool.mark_uploaded(["b1", "f1"])
    assert spool.stats()["records"] == 0
    assert spool.load_frame("f1") is None


def test_the_quota_drops_the_oldest_unsent_frames_and_never_events(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", os.urandom(32), quota_bytes=400 * 1024)
    frames = []
    for index in range(20):
        spool.append([typed_batch(f"b{index}", "some typing", seq=index)])
        # Every other frame is a delta on the one before: a dropped base takes its delta along.
        base = f"f{index - 1}" if index % 2 else None
        try:
            spool.append([noise_frame(f"f{index}", base=base)])
            frames.append(f"f{index}")
        except RecordDropped:
            pytest.fail("a frame was refused while older frames could be given up")
    assert [batch.batch_id for batch in spool.batches()] == [f"b{index}" for index in range(20)]
    kept = [frame_id for frame_id in frames if spool.load_frame(frame_id) is not None]
    assert kept and kept == frames[-len(kept) :]  # the newest ones stayed
    assert not (len(kept) % 2) and kept[0].endswith(("0", "2", "4", "6", "8"))  # never a delta alone
    drops = spool.drops()
    assert drops.quota == 20 - len(kept) and drops.disk_full == 0
    assert spool.stats()["sealed_bytes"] <= 400 * 1024
    # Only events left and still over the quota: frames are refused, events still written.
    spool.mark_uploaded(kept)
    with pytest.raises(RecordDropped):
        spool.append([noise_frame("huge", size=450 * 1024)])
    spool.append([typed_batch("b-last", "still written", seq=99)])
    assert spool.drops().quota == drops.quota + 1
    assert spool.room()["frames_dropped"] == drops.quota + 1


def test_a_full_disk_drops_frames_keeps_every_event_and_recovers(tiny_disk: Path) -> None:
    key = os.urandom(32)
    spool = Spool(tiny_disk / "spool", key)
    assert (tiny_disk / "spool" / "spool.reserve").exists()
    ballast = tiny_disk / "ballast"  # something the user deletes to make room later
    with contextlib.suppress(OSError), ballast.open("wb") as handle:
        handle.write(os.urandom(1024 * 1024))
    batches, frames, dropped = [], [], 0
    for index in range(80):  # ~4 MiB of frames into what is left of 2 MiB
        batch = typed_batch(f"b{index}", "typing goes on", seq=index)
        spool.append([batch])  # never raises: events are never dropped
        batches.append(batch.batch_id)
        try:
            spool.append([noise_frame(f"f{index}")])
            frames.append(f"f{index}")
        except RecordDropped:
            dropped += 1
    room = spool.room()
    assert room["frames_dropped_disk_full"] > 0, room
    assert spool.drops().disk_full >= dropped
    # Space comes back (the user deletes something; uploads would do the same): the spool recovers.
    ballast.unlink(missing_ok=True)
    spool.append([typed_batch("after", "room again", seq=100)])
    assert not spool.disk_full and spool.room()["events_waiting_for_room"] == 0
    spool.append([noise_frame("f-after")])
    assert (tiny_disk / "spool" / "spool.reserve").exists()  # made again
    spool.close()
    reopened = Spool(tiny_disk / "spool", key)
    assert [batch.batch_id for batch in reopened.batches()] == [*batches, "after"]  # every event
    assert reopened.load_frame("f-after") is not None
    survivors = [frame_id for frame_id in frames if reopened.load_frame(frame_id) is not None]
    assert survivors == frames[len(frames) - len(survivors) :]  # the oldest went first
    assert reopened.drops().disk_full == room["frames_dropped_disk_full"]  # counted on disk, kept


def test_held_frames_are_not_offered_for_upload_until_released(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", os.urandom(32))
    raw = Frame("f1", "s1", "d1", 1.0, 2.0, 0, 0, 4, 4, "image/png", b"unscrubbed")
    spool.append([typed_batch("b1", "abc")])
    spool.append([raw], held=True)
    assert [record.record_id for record in spool.pending()] == ["b1"]
    assert spool.held() == [raw]
    scrubbed = Frame("f1", "s1", "d1", 1.0, 2.0, 0, 0, 4, 4, "image/png", b"scrubbed")
    spool.replace_held(scrubbed)
    assert spool.held() == []
    assert [record.record_id for record in spool.pending()] == ["b1", "f1"]
    assert spool.load_frame("f1") == scrubbed


def test_threads_write_and_read_at_once_and_every_record_stays_whole(tmp_path: Path) -> None:
    # The recorder appends frames (encode thread) and batches (processing thread) while the uploader
    # reads: a (de)compressor shared between threads crashed the process or corrupted records.
    spool = Spool(tmp_path / "spool", os.urandom(32))
    written: dict[str, bytes] = {}
    failures: list[BaseException] = []

    def frames_thread() -> None:
        for index in range(300):
            frame = Frame(f"f{index}", "s1", "d1", 1.0, 2.0, 0, 0, 4, 4, "image/png",
                          os.urandom(4096) + bytes(60_000))  # fmt: skip
            spool.append([frame])
            written[frame.frame_id] = frame.data

    def batches_thread() -> None:
        for index in range(300):
            spool.append([typed_batch(f"b{index}", "some typing " * 40, seq=index)])

    def reader_thread() -> None:
        for _ in range(60):
            spool.pending(limit=50)

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as error:
                failures.append(error)

        return run

    threads = [
        threading.Thread(target=guarded(work)) for work in (frames_thread, batches_thread, reader_thread)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(spool.pending(limit=1000)) == 600
    for frame_id, data in written.items():
        stored = spool.load_frame(frame_id)
        assert stored is not None and stored.data == data
    spool.close()
