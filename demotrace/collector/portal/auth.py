"""Who is asking, for the portal's pages: the FastAPI dependencies ``current_account`` and
``require_role``, the session cookie, and the CSRF check every form POST goes through.

A page asked for without a live session redirects to ``/login`` (and back afterwards); a signed-in
account without the role a page needs gets a 403 page. Form bodies are read with the collector's
bounded, paced body reader and parsed here (application/x-www-form-urlencoded only).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from demotrace.collector.accounts import Account, LocalAccounts, Role
from demotrace.collector.bodies import BodyPace, read_body
from demotrace.collector.web_sessions import LoginThrottle, WebSessions, csrf_matches, csrf_token

SESSION_COOKIE = "demotrace_session"
# Before sign-in there is no session: the login form's CSRF token is bound to this random cookie.
LOGIN_COOKIE = "demotrace_login"
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 256 * 1024


@dataclass(frozen=True)
class Portal:
    """What the pages are built over (kept on ``app.state.portal``)."""

    accounts: LocalAccounts
    sessions: WebSessions
    throttle: LoginThrottle
    pace: BodyPace


class LoginRequired(Exception):
    """No live session: the page answers with a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageForbidden(Exception):
    """Signed in, but this page is not for this account's role (or this form's CSRF token is wrong)."""


class FormRefused(PageForbidden):
    """A form POST without the right CSRF token."""


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def session_id_of(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE)


async def current_account(request: Request) -> Account:
    """The signed-in account (FastAPI dependency); LoginRequired (a redirect to /login) otherwise."""
    cached: Account | None = getattr(request.state, "account", None)
    if cached is not None:
        return cached
    account = await run_in_threadpool(portal_of(request).sessions.account_of, session_id_of(request))
    if account is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    request.state.account = account
    return account


def require_role(*roles: Role) -> Callable[[Request], Awaitable[Account]]:
    """A dependency that lets in only these roles (403 page for the others, /login for nobody)."""
    allowed = frozenset(roles)

    async def dependency(request: Request) -> Account:
        account = await current_account(request)
        if account.role not in allowed:
            names = " or ".join(sorted(role.value.replace("_", " ") for role in allowed))
            raise PageForbidden(f"This page is for {names} accounts.")
        return account

    return dependency


def form_token(request: Request) -> str:
    """The CSRF token to put in this page's forms."""
    secret = session_id_of(request) or request.cookies.get(LOGIN_COOKIE) or ""
    return csrf_token(secret) if secret else ""


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded form POST (the last value of a repeated name)."""
    body = await read_body(request, MAX_FORM_BYTES, portal_of(request).pace)
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200))
    except (UnicodeDecodeError, ValueError) as error:
        raise FormRefused("The form could not be read.") from error


async def checked_form(request: Request) -> dict[str, str]:
    """A form POST's fields once its CSRF token is checked against the session (FormRefused if not)."""
    form = await read_form(request)
    if not csrf_matches(session_id_of(request), form.get(CSRF_FIELD)):
        raise FormRefused("This form has expired or did not come from this site: reload the page and retry.")
    return form


def login_redirect(next_path: str) -> str:
    return "/login?next=" + quote(next_path, safe="/")


def safe_next(next_path: str | None) -> str:
    """Only a path on this site (never //host or a scheme) may be the page after sign-in."""
    if next_path and next_path.startswith("/") and not next_path.startswith("//") and "\\" not in next_path:
        return next_path
    return "/"
