"""What the collector holds about one person, for that person: their devices and whether each records,
their sessions with actions and frames, and the deletion of a session or of everything.

Every method takes the person id of the logged-in account and answers only about that person: an id
from a URL (device, session, frame) that is not theirs is answered exactly like one that does not
exist (NotFound), so nobody can learn what ids other people have.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import zstandard
from PIL import Image

from demotrace.collector.errors import BadRequest, Conflict, NotFound
from demotrace.collector.exemptions import delete_blobs
from demotrace.collector.pauses import PauseService
from demotrace.collector.redaction_boxes import redaction_boxes
from demotrace.collector.store import BlobStore, KeyRing, MetadataStore, StoredRecord
from demotrace.collector.store.exemption_store import (
    EXEMPTION_APPROVED,
    EXEMPTION_REQUESTED,
    ExemptionRequest,
    ExemptionStore,
)
from demotrace.collector.store.keyring import DataKeyDestroyed
from demotrace.collector.store.person_store import PersonStore
from demotrace.collector.store.tables import RecordEntry
from demotrace.collector.upload_guard import audit_record
from demotrace.collector.uploads import ResumableUploads
from demotrace.dataset.reduce import reduce_events
from demotrace.dataset.sessions import session_events
from demotrace.frames.resolver import FrameResolver
from demotrace.geometry import Box
from demotrace.model import Action, Batch, Frame, Marker, Record, decode_record

MAX_REASON_CHARS = 2000


@dataclass(frozen=True)
class FrameView:
    frame_id: str
    wall: float
    width: int
    height: int


@dataclass(frozen=True)
class SessionView:
    device_id: str
    device_name: str
    session_id: str
    start: float | None
    actions: list[Action]
    markers: list[Marker]
    frames: list[FrameView]


class MyData:
    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        keyring: KeyRing,
        exemption_store: ExemptionStore,
        pauses: PauseService,
        *,
        partial_uploads: ResumableUploads | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metadata = metadata
        self.people = PersonStore(metadata.engine)
        self.blobs = blobs
        self.keyring = keyring
        self.exemption_store = exemption_store
        self.pauses = pauses
        self.partial_uploads = partial_uploads
        self.clock = clock

    # --- reading --------------------------------------------------------------------------------------

    def load(self, row: StoredRecord) -> Record | None:
        """A stored record decoded; None if its blob or its person's key is gone (being deleted)."""
        blob = self.blobs.get(row.blob_key)
        if blob is None:
            return None
        try:
            plain = self.keyring.open(row.person_id, row.blob_key, blob)
        except DataKeyDestroyed:
            return None
        return decode_record(zstandard.ZstdDecompressor().decompress(plain))

    def _device_names(self, person_id: str) -> dict[str, str]:
        return {device.device_id: device.name for device in self.people.devices(person_id)}

    def devices(self, person_id: str) -> list[dict[str, object]]:
        """Each of the person's devices, and whether it records, is paused (until when), is exempt or
        was revoked; and when the collector last heard from it (an upload or a health report)."""
        exempt = self.is_exempt(person_id)
        answer = []
        for device in self.people.devices(person_id):
            state = self.pauses.device_state(device.device_id, person_id, exempt)
            heard = [at for at in (device.last_upload, device.last_report) if at is not None]
            answer.append(
                {
                    "device_id": device.device_id,
                    "name": device.name,
                    "enrolled_at": device.enrolled_at,
                    "last_upload": device.last_upload,
                    "last_seen": max(heard) if heard else None,
                    # A revoked device may still record into its own spool, but nothing reaches us.
                    "state": "revoked" if device.revoked else state.state,
                    "paused_until": state.paused_until,
                    "waiting_for_device": state.waiting_for_device,
                }
            )
        return answer

    def sessions(self, person_id: str) -> list[dict[str, object]]:
        names = self._device_names(person_id)
        return [
            {
                "device_id": session.device_id,
                "device_name": names.get(session.device_id, session.device_id),
                "session_id": session.session_id,
                "start": session.start,
                "end": session.end,
                "batches": session.batches,
                "frames": session.frames,
                "bytes": session.bytes,
            }
            for session in self.people.sessions(person_id)
        ]

    def _session_rows(self, person_id: str, device_id: str, session_id: str) -> list[StoredRecord]:
        rows = self.people.session_records(person_id, device_id, session_id)
        if not rows:
            raise NotFound("no such session")
        return rows

    def session(self, person_id: str, device_id: str, session_id: str) -> SessionView:
        """The session's actions (as a dataset build reduces them), markers and frames."""
        rows = self._session_rows(person_id, device_id, session_id)
        batches = [
            record for row in rows if row.kind == "batch" and isinstance(record := self.load(row), Batch)
        ]
        frames = [FrameView(row.record_id, row.wall or 0.0, 0, 0) for row in rows if row.kind == "frame"]
        frames.sort(key=lambda frame: frame.wall)
        events = session_events(session_id, batches)
        actions: list[Action] = []
        markers: list[Marker] = []
        start = None
        if events is not None:
            start = events.header.wall
            actions = reduce_events(events.header, events.events)
            markers = [event for event in events.events if isinstance(event, Marker)]
        name = self._device_names(person_id).get(device_id, device_id)
        return SessionView(device_id, name, session_id, start, actions, markers, frames)

    def _person_frames(self, person_id: str) -> Callable[[str], Frame | None]:
        def load_frame(frame_id: str) -> Frame | None:
            row = self.people.record(person_id, frame_id)
            record = self.load(row) if row is not None and row.kind == "frame" else None
            return record if isinstance(record, Frame) else None

        return load_frame

    def frame_image(self, person_id: str, frame_id: str) -> Image.Image:
        """The frame's full image (deltas rebuilt), if it is the person's."""
        resolver = FrameResolver(self._person_frames(person_id), cache_size=1)
        frame = resolver.resolve(frame_id)
        if frame is None:
            raise NotFound("no such frame")
        with Image.open(io.BytesIO(frame.data)) as image:
            image.load()
            return image.copy()

    def frame_png(self, person_id: str, frame_id: str) -> bytes:
        out = io.BytesIO()
        self.frame_image(person_id, frame_id).save(out, format="PNG")
        return out.getvalue()

    def frame_boxes(self, person_id: str, frame_id: str) -> tuple[int, int, list[Box]]:
        """The frame's size and its blacked-out boxes."""
        image = self.frame_image(person_id, frame_id)
        return image.width, image.height, redaction_boxes(image)

    def frames_with_boxes(self, person_id: str, frames: list[FrameView]) -> list[tuple[FrameView, list[Box]]]:
        """These frames (of one session, in time order) with their sizes and blacked-out boxes; one
        resolver for all, so a chain of delta frames is rebuilt once."""
        resolver = FrameResolver(self._person_frames(person_id), cache_size=1)
        answer = []
        for frame in frames:
            image = resolver.image(frame.frame_id)
            if image is None:
                continue
            sized = FrameView(frame.frame_id, frame.wall, image.width, image.height)
            answer.append((sized, redaction_boxes(image)))
        return answer

    # --- deleting -------------------------------------------------------------------------------------

    def delete_session(
        self, person_id: str, device_id: str, session_id: str, actor: str
    ) -> dict[str, object]:
        """Delete the session's rows, then its blobs; from then on neither the portal nor a dataset build
        sees it."""
        self._session_rows(person_id, device_id, session_id)
        deleted = self.metadata.delete_records_where(
            (RecordEntry.person_id == person_id)
            & (RecordEntry.device_id == device_id)
            & (RecordEntry.session_id == session_id)
        )
        blobs = delete_blobs(self.blobs, deleted.blob_keys)
        self.exemption_store.append_audit(
            audit_record(
                self.clock(),
                actor,
                "session_deleted_by_person",
                device_id,
                records=deleted.records,
                blobs=blobs,
            )
        )
        return {"deleted_records": deleted.records, "deleted_blobs": blobs}

    def delete_everything(self, person_id: str, actor: str) -> dict[str, object]:
        """Everything of the person's devices: their data key first (crypto-shredding), rows, unfinished
        uploads, then blobs."""
        blob_keys = self.exemption_store.delete_person_data(
            person_id, audit_record(self.clock(), actor, "person_data_deleted", None, person_id=person_id)
        )
        discarded = 0
        if self.partial_uploads is not None:
            for device in self.exemption_store.devices_of(person_id):
                discarded += self.partial_uploads.discard_device(device)
        blobs = delete_blobs(self.blobs, blob_keys)
        return {"deleted_records": len(blob_keys), "deleted_blobs": blobs, "discarded_uploads": discarded}

    # --- exemptions -----------------------------------------------------------------------------------

    def is_exempt(self, person_id: str) -> bool:
        return any(request.status == EXEMPTION_APPROVED for request in self.exemptions(person_id))

    def exemptions(self, person_id: str) -> list[ExemptionRequest]:
        return self.exemption_store.requests(person_id=person_id)

    def request_exemption(
        self, person_id: str, reason: str, delete_collected: bool, actor: str
    ) -> ExemptionRequest:
        """Ask for an exemption of every device of the person (an admin decides)."""
        reason = reason.strip()
        if not reason or len(reason) > MAX_REASON_CHARS or "\0" in reason:
            raise BadRequest(f"please give a reason of 1 to {MAX_REASON_CHARS} characters")
        history = self.exemptions(person_id)
        if any(request.status == EXEMPTION_APPROVED for request in history):
            raise Conflict("you are already exempt")
        if any(request.status == EXEMPTION_REQUESTED for request in history):
            raise Conflict("your request is already waiting for a decision")
        devices = self.exemption_store.devices_of(person_id)
        if not devices:
            raise Conflict("you have no enrolled device to exempt yet")
        # Requests are stored against a device; the approval covers every device of its person.
        return self.exemption_store.add_request(
            devices[0],
            reason,
            delete_collected,
            self.clock(),
            audit_record(
                self.clock(), actor, "exemption_requested", devices[0], delete_collected=delete_collected
            ),
        )

    def session_rows_for_archive(self, person_id: str) -> Iterator[StoredRecord]:
        """Every row of the person, session by session (for the archive)."""
        for session in self.people.sessions(person_id):
            yield from self.people.session_records(person_id, session.device_id, session.session_id)
