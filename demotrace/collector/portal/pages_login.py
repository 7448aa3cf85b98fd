"""Sign-in and sign-out, the portal's home (each role's first page), and the shell every page shares:
static files, the redirect to /login, the 403 page and the security headers."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from demotrace.collector.accounts import Account
from demotrace.collector.guards import client_address
from demotrace.collector.portal.auth import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    LoginRequired,
    PageForbidden,
    Portal,
    checked_form,
    current_account,
    login_redirect,
    portal_of,
    read_form,
    safe_next,
    session_id_of,
)
from demotrace.collector.portal.render import NAVIGATION, STATIC_DIR, render
from demotrace.collector.portal.security import SecurityHeaders
from demotrace.collector.web_sessions import csrf_matches, csrf_token

LOGIN_FORM_LIFETIME_S = 3600


def _cookie_options(request: Request) -> dict[str, object]:
    return {"httponly": True, "samesite": "strict", "secure": request.url.scheme == "https", "path": "/"}


def _home_of(account: Account) -> str:
    return NAVIGATION[account.role][0][0]


def add_portal_shell(app: FastAPI, portal: Portal) -> None:
    """/login, /logout, /, /static and the handlers and middleware every page relies on."""
    app.state.portal = portal
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    async def to_login(request: Request, error: Exception) -> Response:
        assert isinstance(error, LoginRequired)
        return RedirectResponse(login_redirect(error.next_path), status_code=303)

    async def forbidden(request: Request, error: Exception) -> Response:
        account = getattr(request.state, "account", None)
        message = str(error)
        return render(request, "error.html", account, status_code=403, title="Not allowed", message=message)

    app.add_exception_handler(LoginRequired, to_login)
    app.add_exception_handler(PageForbidden, forbidden)

    def login_page(request: Request, next_path: str, error: str | None = None, status: int = 200) -> Response:
        secret = secrets.token_urlsafe(32)
        response = render(
            request,
            "login.html",
            None,
            status_code=status,
            csrf_token=csrf_token(secret),
            next_path=safe_next(next_path),
            error=error,
        )
        response.set_cookie(LOGIN_COOKIE, secret, max_age=LOGIN_FORM_LIFETIME_S, **_cookie_options(request))  # type: ignore[arg-type]
        return response

    @app.get("/login", include_in_schema=False)
    async def login_form(request: Request, next: str = "/") -> Response:
        return login_page(request, next)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await read_form(request)
        next_path = safe_next(form.get("next"))
        if not csrf_matches(request.cookies.get(LOGIN_COOKIE), form.get(CSRF_FIELD)):
            return login_page(request, next_path, "The sign-in form expired: please try again.", 400)
        name, password = form.get("name", "").strip(), form.get("password", "")
        address = client_address(request)
        wait = portal.throttle.wait_needed(name, address)
        if wait > 0:
            minutes = int(wait // 60) + 1
            return login_page(
                request, next_path, f"Too many failed sign-ins: try again in {minutes} min.", 429
            )
        account = await run_in_threadpool(portal.accounts.authenticate, name, password)
        if account is None:
            portal.throttle.failed(name, address)
            return login_page(request, next_path, "Wrong account name or password.", 401)
        session_id = await run_in_threadpool(portal.sessions.start, account)
        target = next_path if next_path != "/" else _home_of(account)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, session_id, **_cookie_options(request))  # type: ignore[arg-type]
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        await checked_form(request)
        await run_in_threadpool(portal_of(request).sessions.end, session_id_of(request))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/", include_in_schema=False)
    async def home(account: Annotated[Account, Depends(current_account)]) -> Response:
        return RedirectResponse(_home_of(account), status_code=303)
