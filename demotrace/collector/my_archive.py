"""Everything the collector holds about a person, as one zip streamed to them: JSON for devices,
pauses, exemptions and each session's events and actions, and every frame as a PNG.

Streamed with bounded memory: the zip is written to a sink that hands its bytes on after each member,
and a session's frames are rebuilt one at a time (a delta frame from the kept screen before it), so the
largest thing held is one frame and one session's events, whatever the total.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import msgspec
from PIL import Image

from demotrace.collector.my_data import MyData
from demotrace.collector.store.metadata import StoredRecord
from demotrace.dataset.reduce import reduce_events
from demotrace.dataset.sessions import session_events
from demotrace.frames.resolver import FrameResolver
from demotrace.model import Batch, Frame

README = """\
This archive holds everything the demotrace collector kept about you when you downloaded it.

devices.json      your devices, and whether each was recording, paused or exempt
pauses.json       your pauses: asked on the portal, and made or ended on your devices (times only)
exemptions.json   your exemption requests and their decisions
sessions/DEVICE/SESSION/events.json   what the recorder captured, event by event (after redaction)
sessions/DEVICE/SESSION/actions.json  the same as the steps a dataset is built from
sessions/DEVICE/SESSION/frames/*.png  the screenshots, with redactions already painted black

Times are seconds since 1970-01-01 UTC.
"""

PNG_MEDIA_TYPE = "image/png"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name)[:128] or "_"


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream: zipfile then writes data descriptors and never seeks back."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _json(value: object) -> bytes:
    return json.dumps(msgspec.to_builtins(value), indent=1, ensure_ascii=False).encode()


def archive_name(person_id: str) -> str:
    return f"demotrace-my-data-{_safe(person_id)}.zip"


def stream_archive(data: MyData, person_id: str) -> Iterator[bytes]:
    """The zip of everything about the person, in pieces of about one member each."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", README)
        archive.writestr("devices.json", _json(data.devices(person_id)))
        names = {str(device["device_id"]): str(device["name"]) for device in data.devices(person_id)}
        archive.writestr("pauses.json", _json(data.pauses.history(person_id, names)))
        archive.writestr("exemptions.json", _json(data.exemptions(person_id)))
        yield sink.take()
        session_rows: list[StoredRecord] = []
        for row in data.session_rows_for_archive(person_id):
            if session_rows and (row.device_id, row.session_id) != (
                session_rows[0].device_id,
                session_rows[0].session_id,
            ):
                yield from _session(archive, sink, data, session_rows)
                session_rows = []
            session_rows.append(row)
        if session_rows:
            yield from _session(archive, sink, data, session_rows)
    yield sink.take()


def _session(
    archive: zipfile.ZipFile, sink: _Sink, data: MyData, rows: list[StoredRecord]
) -> Iterator[bytes]:
    first = rows[0]
    folder = f"sessions/{_safe(first.device_id)}/{_safe(first.session_id)}"
    batches = [record for row in rows if row.kind == "batch" and isinstance(record := data.load(row), Batch)]
    events = session_events(first.session_id, batches)
    archive.writestr(f"{folder}/events.json", _json(events.events if events else []))
    actions = reduce_events(events.header, events.events) if events else []
    archive.writestr(f"{folder}/actions.json", _json(actions))
    yield sink.take()
    frame_rows = {row.record_id: row for row in rows if row.kind == "frame"}

    def load_frame(frame_id: str) -> Frame | None:
        row = frame_rows.get(frame_id)
        record = data.load(row) if row is not None else None
        return record if isinstance(record, Frame) else None

    resolver = FrameResolver(load_frame, cache_size=1)  # deltas come back as PNG
    for frame_id in sorted(frame_rows, key=lambda key: frame_rows[key].wall or 0.0):
        frame = resolver.resolve(frame_id)
        if frame is None:
            continue
        # Stored, not deflated: a PNG is compressed already (deflating it again took 4x the time).
        taken = time.gmtime(max(frame.wall, 315_532_800))  # a zip cannot date anything before 1980
        info = zipfile.ZipInfo(f"{folder}/frames/{_safe(frame_id)}.png", date_time=taken[:6])
        info.compress_type = zipfile.ZIP_STORED
        with archive.open(info, "w") as member:
            if frame.media_type == PNG_MEDIA_TYPE:
                member.write(frame.data)
            else:
                with Image.open(io.BytesIO(frame.data)) as image:
                    image.save(member, format="PNG")
        yield sink.take()
