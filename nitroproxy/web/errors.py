"""The one renderer of error responses: a ``ProxyError`` as JSON in the route family's shape
(``core.error_shapes`` holds the shapes, and the in-band stream event ``proxy`` writes)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import orjson
from aiohttp import web
from multidict import CIMultiDict

from nitroproxy.core.error_shapes import error_payload
from nitroproxy.core.errors import ProxyError, UpstreamStatusError, status_of
from nitroproxy.core.types import ApiFormat


def family_of(path: str, headers: Mapping[str, str] | None = None) -> ApiFormat:
    """Whose error shape a route answers in. /v1/models serves both APIs: an Anthropic
    client says so with ``anthropic-version`` (its SDK always sends it)."""
    if path.startswith("/v1/messages"):
        return ApiFormat.ANTHROPIC
    if path.startswith("/v1/models") and headers is not None and "anthropic-version" in headers:
        return ApiFormat.ANTHROPIC
    return ApiFormat.OPENAI


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
