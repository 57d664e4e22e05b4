"""A ``ProxyError`` in each API's own JSON shape, and as the in-band event a stream ends with
once its status line is gone. Pure: ``web`` renders responses with it and ``proxy`` writes
the in-band event, so both say the same thing."""

from __future__ import annotations

from typing import Any

import orjson

from nitroproxy.core import anthropic_wire, openai_wire, responses_wire, sse
from nitroproxy.core.errors import ProxyError, anthropic_type_of, openai_type_of
from nitroproxy.core.types import ApiFormat


def error_payload(error: ProxyError, family: ApiFormat) -> dict[str, Any]:
    if family is ApiFormat.ANTHROPIC:
        return anthropic_wire.anthropic_error_body(anthropic_type_of(error), error.message)
    return openai_wire.error_body(
        error.message, openai_type_of(error), param=error.param, code=error.code
    )


def stream_error_event(error: ProxyError, family: ApiFormat) -> bytes:
    """After the headers are sent the status cannot change: the error travels in the stream,
    in the shape each official SDK raises on."""
    payload = orjson.dumps(error_payload(error, family))
    if family is ApiFormat.ANTHROPIC:
        return sse.encode(payload, "error")
    return sse.encode(payload)


def responses_failed_event(error: ProxyError, response_id: str) -> bytes:
    """A Responses stream that fails before any event of it was sent (only keep-alive
    comments were): ``response.failed`` as its first and last event. Once events have gone
    out, the stream transform writes this itself, numbered after them."""
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "status": "failed",
        "output": [],
        "error": responses_wire.failure_error(error.status, error.message),
        "usage": None,
    }
    data = {"type": "response.failed", "response": response, "sequence_number": 0}
    return sse.encode(orjson.dumps(data), "response.failed")
