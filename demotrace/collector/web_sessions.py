"""Server-side browser sessions for the portal, their CSRF tokens, and the throttling of failed sign-ins.

A session id is 32 random bytes in an HttpOnly, SameSite=Strict cookie; the database keeps only its
SHA-256, so a copy of the database opens no session. The CSRF token of a form is an HMAC of a fixed
label keyed by the session id: bound to the session, never stored, and useless to anyone who does not
hold the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from demotrace.collector.accounts import Account, LocalAccounts
from demotrace.collector.limits import RateLimiter
from demotrace.collector.store.account_store import AccountStore
from demotrace.collector.upload_guard import audit_record

SESSION_LIFETIME_S = 8 * 3600.0
MAX_SESSION_ID_CHARS = 128
_CSRF_LABEL = b"demotrace portal form"


def session_digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_token(secret: str) -> str:
    """The CSRF token of the forms shown to whoever holds ``secret`` (a session id or a pre-login id)."""
    return hmac.new(secret.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_matches(secret: str | None, token: str | None) -> bool:
    if not secret or not token:
        return False
    return hmac.compare_digest(csrf_token(secret), token)


class WebSessions:
    def __init__(
        self,
        store: AccountStore,
        accounts: LocalAccounts,
        lifetime_s: float = SESSION_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.lifetime_s = lifetime_s
        self.clock = clock

    def start(self, account: Account) -> str:
        """A new session for ``account`` (audited: ``signed_in``); returns the id for the cookie (not
        kept anywhere else)."""
        now = self.clock()
        self.store.end_expired_sessions(now)
        session_id = secrets.token_urlsafe(32)
        audit = audit_record(now, account.actor, "signed_in", None, role=account.role.value)
        self.store.add_session(
            session_digest(session_id), account.account_id, now, now + self.lifetime_s, audit
        )
        return session_id

    def account_of(self, session_id: str | None) -> Account | None:
        """The signed-in account of a live session (None: signed out, expired, or disabled since)."""
        if not session_id or len(session_id) > MAX_SESSION_ID_CHARS:
            return None
        stored = self.store.session_account(session_digest(session_id), self.clock())
        return self.accounts.by_id(stored.account_id) if stored is not None else None

    def end(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= MAX_SESSION_ID_CHARS:
            self.store.end_session(session_digest(session_id))


class LoginThrottle:
    """Failed sign-ins counted per account name and per client address, each a token bucket (bounded in
    memory by RateLimiter). Past ``per_account`` (or ``per_address``) failures within ``window_s``,
    sign-ins are refused, right password or not, until the bucket refills."""

    def __init__(
        self,
        per_account: int = 5,
        per_address: int = 20,
        window_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.by_account = RateLimiter(per_account / window_s, per_account, clock)
        self.by_address = RateLimiter(per_address / window_s, per_address, clock)

    def wait_needed(self, name: str, address: str) -> float:
        """Seconds before this name may try again from this address (0: now)."""
        return max(self.by_account.wait_needed(name.lower()), self.by_address.wait_needed(address))

    def failed(self, name: str, address: str) -> None:
        self.by_account.spend(name.lower())
        self.by_address.spend(address)
