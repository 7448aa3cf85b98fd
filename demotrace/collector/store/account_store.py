"""Portal accounts and browser sessions on the collector's database (the SQL side of accounts.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from demotrace.collector.store.exemption_store import AuditRecord, _audit_entry
from demotrace.collector.store.tables import AccountEntry, PersonEntry, WebSessionEntry


@dataclass(frozen=True)
class StoredAccount:
    account_id: str
    name: str
    role: str
    password_hash: str
    person_id: str | None
    disabled: bool
    created_at: float

    @staticmethod
    def from_entry(entry: AccountEntry) -> StoredAccount:
        return StoredAccount(
            account_id=entry.account_id,
            name=entry.name,
            role=entry.role,
            password_hash=entry.password_hash,
            person_id=entry.person_id,
            disabled=entry.disabled,
            created_at=entry.created_at,
        )


class AccountStore:
    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def add(self, account: StoredAccount, audit: AuditRecord) -> bool:
        """Store a new account; False when its name is taken."""
        try:
            with self._sessions.begin() as session:
                session.add(
                    AccountEntry(
                        account_id=account.account_id,
                        name=account.name,
                        role=account.role,
                        password_hash=account.password_hash,
                        person_id=account.person_id,
                        disabled=account.disabled,
                        created_at=account.created_at,
                    )
                )
                session.add(_audit_entry(audit))
        except IntegrityError:
            return False
        return True

    def person_exists(self, person_id: str) -> bool:
        with self._sessions() as session:
            return session.get(PersonEntry, person_id) is not None

    def by_name(self, name: str) -> StoredAccount | None:
        with self._sessions() as session:
            entry = session.scalars(select(AccountEntry).where(AccountEntry.name == name)).first()
            return StoredAccount.from_entry(entry) if entry is not None else None

    def by_id(self, account_id: str) -> StoredAccount | None:
        with self._sessions() as session:
            entry = session.get(AccountEntry, account_id)
            return StoredAccount.from_entry(entry) if entry is not None else None

    def all(self) -> list[StoredAccount]:
        with self._sessions() as session:
            entries = session.scalars(select(AccountEntry).order_by(AccountEntry.name))
            return [StoredAccount.from_entry(entry) for entry in entries]

    def set_password_hash(self, account_id: str, password_hash: str) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(AccountEntry)
                .where(AccountEntry.account_id == account_id)
                .values(password_hash=password_hash)
            )

    def disable(self, name: str, audit: AuditRecord) -> bool:
        """Disable the account and end its sessions, in one transaction; False if there is none."""
        with self._sessions.begin() as session:
            entry = session.scalars(select(AccountEntry).where(AccountEntry.name == name)).first()
            if entry is None:
                return False
            entry.disabled = True
            session.execute(delete(WebSessionEntry).where(WebSessionEntry.account_id == entry.account_id))
            session.add(_audit_entry(audit))
        return True

    # --- browser sessions ------------------------------------------------------------------------------

    def add_session(
        self, id_sha256: str, account_id: str, created_at: float, expires_at: float, audit: AuditRecord
    ) -> None:
        with self._sessions.begin() as session:
            session.add(
                WebSessionEntry(
                    id_sha256=id_sha256, account_id=account_id, created_at=created_at, expires_at=expires_at
                )
            )
            session.add(_audit_entry(audit))

    def session_account(self, id_sha256: str, now: float) -> StoredAccount | None:
        """The enabled account of a live session, or None."""
        with self._sessions() as session:
            row = session.execute(
                select(AccountEntry)
                .join(WebSessionEntry, WebSessionEntry.account_id == AccountEntry.account_id)
                .where(WebSessionEntry.id_sha256 == id_sha256, WebSessionEntry.expires_at > now)
            ).first()
            if row is None or row[0].disabled:
                return None
            return StoredAccount.from_entry(row[0])

    def end_session(self, id_sha256: str) -> None:
        with self._sessions.begin() as session:
            session.execute(delete(WebSessionEntry).where(WebSessionEntry.id_sha256 == id_sha256))

    def end_expired_sessions(self, now: float) -> int:
        with self._sessions.begin() as session:
            result = session.execute(delete(WebSessionEntry).where(WebSessionEntry.expires_at <= now))
            return int(getattr(result, "rowcount", 0) or 0)
