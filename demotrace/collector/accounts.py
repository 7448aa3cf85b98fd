"""Portal accounts and roles, behind one small interface (Authenticator) so that a single sign-on
provider (OIDC) can stand beside the local accounts later.

Roles: an ``employee`` sees only their own data (their account is tied to the pseudonymous person their
devices are enrolled for); an ``admin`` runs the policy, exemptions, fleet and audit log; a
``data_engineer`` sees datasets and cohort aggregates only, never an identity.

Local accounts keep an argon2id hash of the password (argon2-cffi's defaults: RFC 9106's low-memory
profile). A name that does not exist costs the same hashing as a wrong password, so the time of a
refusal does not tell which names exist.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from demotrace.collector.store.account_store import AccountStore, StoredAccount
from demotrace.collector.upload_guard import audit_record

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
MAX_ACCOUNT_NAME_CHARS = 64
_NAME_CHARACTERS = set(string.ascii_letters + string.digits + "._-@")


class Role(StrEnum):
    EMPLOYEE = "employee"
    ADMIN = "admin"
    DATA_ENGINEER = "data_engineer"


@dataclass(frozen=True)
class Account:
    """Who is signed in: what the pages and the audit log need, never the password hash."""

    account_id: str
    name: str
    role: Role
    person_id: str | None

    @property
    def actor(self) -> str:
        """This account as the audit log names it."""
        return f"account:{self.name}"


class AccountError(ValueError):
    """An account cannot be made or changed as asked; the message says why."""


class Authenticator(Protocol):
    """Checks a sign-in; local accounts now, an OIDC provider could be another."""

    def authenticate(self, name: str, password: str) -> Account | None: ...


def check_account_name(name: str) -> str:
    if not 1 <= len(name) <= MAX_ACCOUNT_NAME_CHARS or not set(name) <= _NAME_CHARACTERS:
        raise AccountError(
            f"an account name has 1 to {MAX_ACCOUNT_NAME_CHARS} characters: letters, digits and . _ - @"
        )
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise AccountError(f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    return password


def _account(stored: StoredAccount) -> Account:
    return Account(stored.account_id, stored.name, Role(stored.role), stored.person_id)


class LocalAccounts:
    """Accounts kept in the collector's database (the Authenticator the portal uses by default)."""

    def __init__(
        self,
        store: AccountStore,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.hasher = hasher or PasswordHasher()
        self.clock = clock
        # Verified against when a name is unknown, so that answer takes as long as a wrong password.
        self._decoy_hash = self.hasher.hash(secrets.token_hex(16))

    def check_new(self, name: str, role: Role, person_id: str | None) -> None:
        """AccountError unless an account of this name, role and person could be made (before a
        password is asked for)."""
        check_account_name(name)
        if role is Role.EMPLOYEE and not person_id:
            raise AccountError("an employee account needs --person (the person id their devices enrol for)")
        if role is not Role.EMPLOYEE and person_id:
            raise AccountError("only an employee account is tied to a person")
        if person_id and not self.store.person_exists(person_id):
            raise AccountError(f"no person {person_id} on this collector (see `demotrace admin people`)")
        if self.store.by_name(name) is not None:
            raise AccountError(f"there is already an account named {name}")

    def add(self, name: str, role: Role, password: str, person_id: str | None, actor: str) -> Account:
        self.check_new(name, role, person_id)
        check_password(password)
        stored = StoredAccount(
            account_id=secrets.token_hex(16),
            name=name,
            role=role.value,
            password_hash=self.hasher.hash(password),
            person_id=person_id,
            disabled=False,
            created_at=self.clock(),
        )
        audit = audit_record(self.clock(), actor, "account_added", None, account=name, role=role.value)
        if not self.store.add(stored, audit):
            raise AccountError(f"there is already an account named {name}")
        return _account(stored)

    def list(self) -> list[tuple[Account, bool]]:
        """Every account, and whether it is disabled."""
        return [(_account(stored), stored.disabled) for stored in self.store.all()]

    def disable(self, name: str, actor: str) -> None:
        """Refuse the account's sign-ins and end its sessions."""
        audit = audit_record(self.clock(), actor, "account_disabled", None, account=name)
        if not self.store.disable(name, audit):
            raise AccountError(f"no account named {name}")

    def authenticate(self, name: str, password: str) -> Account | None:
        stored = self.store.by_name(name) if len(name) <= MAX_ACCOUNT_NAME_CHARS else None
        if len(password) > MAX_PASSWORD_CHARS:
            return None
        try:
            self.hasher.verify(stored.password_hash if stored else self._decoy_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if stored is None or stored.disabled:
            return None
        if self.hasher.check_needs_rehash(stored.password_hash):
            self.store.set_password_hash(stored.account_id, self.hasher.hash(password))
        return _account(stored)

    def by_id(self, account_id: str) -> Account | None:
        stored = self.store.by_id(account_id)
        return _account(stored) if stored is not None and not stored.disabled else None
