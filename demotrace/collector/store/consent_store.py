"""Notice acknowledgements on the MetadataStore's database, each stored with its audit entry."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from demotrace.collector.store.exemption_store import AuditRecord, _audit_entry, _person_of
from demotrace.collector.store.tables import NoticeAckEntry


@dataclass(frozen=True)
class StoredNoticeAck:
    device_id: str
    person_id: str
    digest: str
    notice_version: int
    accepted_at: float
    received_at: float


class ConsentStore:
    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def add_ack(
        self,
        device_id: str,
        digest: str,
        notice_version: int,
        accepted_at: float,
        at: float,
        audit: AuditRecord,
    ) -> StoredNoticeAck:
        """Store an acceptance (for the device's person) and its audit entry in one transaction."""
        with self._sessions.begin() as session:
            person_id = _person_of(session, device_id)
            if person_id is None:
                raise LookupError(f"no device {device_id}")
            session.add(
                NoticeAckEntry(
                    device_id=device_id,
                    person_id=person_id,
                    digest=digest,
                    notice_version=notice_version,
                    accepted_at=accepted_at,
                    received_at=at,
                )
            )
            session.add(_audit_entry(audit))
        return StoredNoticeAck(device_id, person_id, digest, notice_version, accepted_at, at)

    def latest_acks(self) -> list[StoredNoticeAck]:
        """The newest acceptance of every device that has one, by device id."""
        newest: dict[str, StoredNoticeAck] = {}
        with self._sessions() as session:
            for entry in session.scalars(select(NoticeAckEntry).order_by(NoticeAckEntry.id)):
                newest[entry.device_id] = StoredNoticeAck(
                    entry.device_id,
                    entry.person_id,
                    entry.digest,
                    entry.notice_version,
                    entry.accepted_at,
                    entry.received_at,
                )
        return [newest[device_id] for device_id in sorted(newest)]
