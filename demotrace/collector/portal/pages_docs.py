"""The interactive API docs (Swagger UI) for admins only, with every asset served by the collector
itself: Swagger UI's files come from the swagger-ui-py package (its static/ folder), the start-up
script is ours (/static/docs.js), so the page loads nothing from the internet and runs no inline
script. The machine-readable schema (/openapi.json) stays public: it holds no secret, and tools read it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from demotrace.collector.portal.pages_admin import AdminAccount
from demotrace.collector.portal.render import render
from demotrace.collector.portal.security import CONTENT_SECURITY_POLICY

SWAGGER_PREFIX = "/swagger-ui"  # not under /static: that mount would answer first
# Swagger UI sets style attributes as it renders: styles (never scripts) may be inline on this page.
DOCS_CSP = CONTENT_SECURITY_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


def swagger_ui_files() -> Path:
    """The folder of Swagger UI's files in the swagger-ui-py package, found without importing it."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is missing: run scripts/setup.sh")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def add_docs_page(app: FastAPI) -> None:
    app.mount(SWAGGER_PREFIX, StaticFiles(directory=str(swagger_ui_files())), name="swagger")

    @app.get("/docs", include_in_schema=False)
    async def api_docs(request: Request, account: AdminAccount) -> Response:
        response = render(request, "docs.html", account, title="API", swagger=SWAGGER_PREFIX)
        response.headers["Content-Security-Policy"] = DOCS_CSP
        return response
