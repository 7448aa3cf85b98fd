"""What the served OpenAPI schema says about request bodies and refusals, so clients and fuzzers
(schemathesis) see every body a route reads and every status it may answer."""

from __future__ import annotations

from typing import Any

import msgspec

from demotrace.protocol import ErrorBody

_STATUS_DESCRIPTIONS = {
    400: "Malformed request or body",
    401: "Missing or wrong token (or enrolment secret)",
    403: "The device is exempt from recording",
    404: "No such resource",
    408: "The body arrived slower than the minimum rate",
    409: "Conflict with what is stored",
    413: "Body or record too large",
    415: "Wrong Content-Type",
    416: "Chunk does not start where the upload stands",
    429: "This client passed its rate or concurrency limit (see Retry-After)",
    503: "The collector is at capacity (see Retry-After)",
}


def _inlined(node: Any, components: dict[str, Any]) -> Any:
    """``node`` with every reference to a component replaced by the component itself (a body of
    structs inside structs, such as a list of events, then needs no components section)."""
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            return _inlined(components[node["$ref"]], components)
        return {key: _inlined(value, components) for key, value in node.items()}
    if isinstance(node, list):
        return [_inlined(item, components) for item in node]
    return node


def _inline_schema(struct: type) -> dict[str, Any]:
    (schema,), components = msgspec.json.schema_components([struct], ref_template="{name}")
    inlined: dict[str, Any] = _inlined(schema, components)
    return inlined


def json_body(struct: type) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads a JSON body shaped like ``struct``."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline_schema(struct)}},
        }
    }


def raw_body(media_type: str, *, text: bool = False) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads a raw body of ``media_type``."""
    schema = {"type": "string"} if text else {"type": "string", "format": "binary"}
    return {"requestBody": {"required": True, "content": {media_type: {"schema": schema}}}}


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses`` for a route's refusals, each with the error body's schema."""
    schema = _inline_schema(ErrorBody)
    return {
        status: {
            "description": _STATUS_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": schema}},
        }
        for status in statuses
    }
