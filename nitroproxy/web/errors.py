"""The one renderer: a ``ProxyError`` as JSON in the route family's shape, or as the
in-band event a stream ends with once its status line is gone."""

from __future__ import annotations

import math
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from nitroproxy.core import anthropic_wire, openai_wire, sse
from nitroproxy.core.errors import (
    ProxyError,
    UpstreamStatusError,
    anthropic_type_of,
    openai_type_of,
    status_of,
)
from nitroproxy.core.types import ApiFormat


def family_of(path: str) -> ApiFormat:
    return ApiFormat.ANTHROPIC if path.startswith("/v1/messages") else ApiFormat.OPENAI


def error_payload(error: ProxyError, family: ApiFormat) -> dict[str, Any]:
    if family is ApiFormat.ANTHROPIC:
        return anthropic_wire.anthropic_error_body(anthropic_type_of(error), error.message)
    return openai_wire.error_body(
        error.message, openai_type_of(error), param=error.param, code=error.code
    )


def error_response(error: ProxyError, family: ApiFormat) -> web.Response:
    headers = CIMultiDict(error.headers)
    if error.retry_after is not None and "Retry-After" not in headers:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    status = status_of(error)
    if (
        isinstance(error, UpstreamStatusError)
        and error.body is not None
        and error.body_format == family.value
    ):
        # The provider's own error, in the client's own format: pass it through untouched.
        body = error.body
    else:
        body = orjson.dumps(error_payload(error, family))
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def stream_error_event(error: ProxyError, family: ApiFormat) -> bytes:
    """After the headers are sent the status cannot change: the error travels in the stream,
    in the shape each official SDK raises on."""
    payload = orjson.dumps(error_payload(error, family))
    if family is ApiFormat.ANTHROPIC:
        return sse.encode(payload, "error")
    return sse.encode(payload)
