from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    assert spool.stats()["records"] == 2


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


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 512 KiB filesystem (tmpfs), so 'disk full' is the kernel's ENOSPC, not a simulation."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_is_a_clear_error_and_keeps_what_was_committed(tiny_disk: Path) -> None:
    key = os.urandom(32)
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(os.urandom(160 * 1024))  # something the user can delete to make room
    spool = Spool(tiny_disk / "spool", key)
    spool.append([typed_batch("first", "kept")])
    noise = os.urandom(48 * 1024)  # incompressible, so the disk fills fast
    written = []
    with pytest.raises(SpoolError, match="cannot write to spool"):
        for index in range(100):
            spool.append([Frame(f"f{index}", "s1", "d1", 1.0, 2.0, 0, 0, 4, 4, "image/png", noise)])
            written.append(f"f{index}")
    assert written, "the disk filled before any frame was written: make the ballast smaller"
    # Everything committed before the disk filled is intact, and the spool works again once there is room.
    ballast.unlink()
    spool.append([typed_batch("after", "room again", seq=1)])
    spool.close()
    reopened = Spool(tiny_disk / "spool", key)
    assert [batch.batch_id for batch in reopened.batches()] == ["first", "after"]
    assert all(reopened.load_frame(frame_id) is not None for frame_id in written)


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
