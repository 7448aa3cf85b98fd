"""A method a path does not take: 405 with every method the path does take in ``Allow``.

Starlette answers 405 with the methods of the first route whose path matches, so a path served by two
routes (``GET`` and ``PUT /v1/admin/policy``) advertised only one of them; and OPTIONS, which no route
takes, got the same half answer. Here the answer lists the methods of every route on the path.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, Route

from demotrace.protocol import error_body

METHOD_NOT_ALLOWED = 405


def allowed_methods(routes: list[BaseRoute], request: Request) -> list[str]:
    """Every method some route takes on the request's path, sorted (HEAD comes with GET)."""
    methods: set[str] = set()
    for route in routes:
        if not isinstance(route, Route) or not route.methods:
            continue
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= route.methods
    return sorted(methods)


def add_method_not_allowed_handler(app: FastAPI) -> None:
    """Answer 405 with the right ``Allow`` and the collector's error body; other HTTP errors as before."""

    async def handler(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if error.status_code != METHOD_NOT_ALLOWED:
            return await http_exception_handler(request, error)
        allow = allowed_methods(app.router.routes, request)
        detail = f"{request.method} is not allowed on this path; allowed: {', '.join(allow)}"
        return JSONResponse(
            error_body("method_not_allowed", detail),
            status_code=METHOD_NOT_ALLOWED,
            headers={"Allow": ", ".join(allow)},
        )

    app.add_exception_handler(HTTPException, handler)
