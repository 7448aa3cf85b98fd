"""Rendering the portal's Jinja2 templates (autoescaped), with what every page needs: the account, the
CSRF token for its forms, and the navigation for the account's role."""

from __future__ import annotations

import datetime
from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from demotrace.collector.accounts import Account, Role
from demotrace.collector.portal.auth import CSRF_FIELD, form_token
from demotrace.wording import plural

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

# The navigation of each role: (path, label). Other parts of the portal add their pages here.
NAVIGATION: dict[Role, list[tuple[str, str]]] = {
    Role.EMPLOYEE: [("/me", "My data")],
    Role.ADMIN: [
        ("/admin/exemptions", "Exemptions"),
        ("/admin/policy", "Policy"),
        ("/admin/fleet", "Fleet"),
        ("/admin/audit", "Audit log"),
        ("/docs", "API"),
    ],
    Role.DATA_ENGINEER: [("/data", "Datasets")],
}


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.filters["when"] = _when
templates.env.filters["size"] = _size
templates.env.filters["plural"] = plural  # {{ n | plural("session") }} → "1 session", "2 sessions"


def render(
    request: Request, template: str, account: Account | None, status_code: int = 200, **context: object
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        template,
        {
            "account": account,
            "nav": NAVIGATION.get(account.role, []) if account is not None else [],
            "csrf_field": CSRF_FIELD,
            "csrf_token": form_token(request),
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )
