"""Accounts and browser sessions on both databases (SQLite and PostgreSQL): hashes only, sessions that
end on sign-out, expiry or disabling, and a session id that is never stored as it is."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from demotrace.collector.accounts import LocalAccounts, Role
from demotrace.collector.store import MetadataStore
from demotrace.collector.store.account_store import AccountStore
from demotrace.collector.store.exemption_store import ExemptionStore
from demotrace.collector.web_sessions import WebSessions

PASSWORD = "correct horse battery staple"


def test_accounts_and_sessions_keep_only_digests_and_end_when_they_should(
    database_url: str, tmp_path: Path
) -> None:
    metadata = MetadataStore.from_url(database_url)
    now = [1000.0]
    try:
        store = AccountStore(metadata.engine)
        accounts = LocalAccounts(store, clock=lambda: now[0])
        sessions = WebSessions(store, accounts, lifetime_s=3600, clock=lambda: now[0])
        ada = accounts.add("ada", Role.ADMIN, PASSWORD, None, "test")
        assert accounts.authenticate("ada", "wrong password, long enough") is None
        assert accounts.authenticate("nobody", PASSWORD) is None
        assert accounts.authenticate("ada", PASSWORD) == ada

        first = sessions.start(ada)
        assert sessions.account_of(first) == ada
        with metadata.engine.connect() as connection:
            stored = " ".join(
                str(row)
                for table in ("accounts", "web_sessions")
                for row in connection.execute(text(f"SELECT * FROM {table}"))
            )
        assert PASSWORD not in stored and first not in stored and "$argon2id$" in stored
        sessions.end(first)
        assert sessions.account_of(first) is None

        second = sessions.start(ada)
        now[0] += 3601
        assert sessions.account_of(second) is None  # expired
        third = sessions.start(ada)
        accounts.disable("ada", "test")
        assert sessions.account_of(third) is None
        assert accounts.authenticate("ada", PASSWORD) is None
        actions = [entry.action for entry in ExemptionStore(metadata.engine).audit()]
        assert actions == ["account_added", "signed_in", "signed_in", "signed_in", "account_disabled"]
    finally:
        metadata.close()
