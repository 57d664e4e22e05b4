"""Request ids, every failure rendered in one place in the API's own shape, and the
bookkeeping around each request: requests in progress (graceful shutdown, the head
deadline of ``web.connections``) and the body bytes it holds (``web.bodies``)."""

from __future__ import annotations

import re

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from nitroproxy.core.errors import (
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ProxyError,
    RequestTimeout,
)
from nitroproxy.security.ids import IdSource
from nitroproxy.web.appkeys import BODIES, TRACKER
from nitroproxy.web.errors import error_response, family_of

REQUEST_ID = web.RequestKey("request_id", str)
_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_log = structlog.get_logger("nitroproxy.web")


_new_id = IdSource()


def request_id_of(request: web.Request) -> str:
    """A client-sent id is honoured if it is short and plain; anything else is replaced, so
    no client text of unknown shape reaches the logs through it."""
    sent = request.headers.get("x-request-id")
    if sent and _SANE_ID.match(sent):
        return sent
    return _new_id()


def _from_http(exc: web.HTTPException) -> ProxyError:
    if isinstance(exc, web.HTTPNotFound):
        return NotFound(f"unknown route: {exc.reason or 'not found'}", code="unknown_url")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(
            f"method {exc.method} is not allowed here (allowed: "
            f"{', '.join(sorted(exc.allowed_methods))})",
            headers={"Allow": ",".join(sorted(exc.allowed_methods))},
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge("the request body is larger than the server's limit")
    err = ProxyError(exc.reason or "request failed")
    err.status = exc.status  # type: ignore[misc]
    return err


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request_id_of(request)
    request[REQUEST_ID] = rid
    app = request.app
    # Both are the main application's (the separate metrics listener has neither).
    tracker, bodies = app.get(TRACKER), app.get(BODIES)
    if tracker is not None:
        tracker.request_started(request)
    response: web.StreamResponse | None = None
    try:
        response = await _answer(request, handler, rid)
    finally:
        if bodies is not None:
            bodies.release(request)  # the body's bytes are no longer held by this request
        if tracker is not None:
            last = response is None or response.keep_alive is False
            tracker.request_ended(request, last=last)
    if not response.prepared:
        response.headers["x-request-id"] = rid
    return response


async def _answer(request: web.Request, handler: Handler, rid: str) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProxyError as exc:
        response = error_response(exc, family_of(request.path, request.headers))
        if isinstance(exc, RequestTimeout):
            # The rest of the body is still on its way: this connection cannot carry
            # another request.
            response.force_close()
            _refused(request, "body_timeout")
        elif exc.code == "too_many_request_bytes":
            _refused(request, "body_bytes")
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = _from_http(exc)
        if isinstance(exc, web.HTTPNotFound):
            error.message = f"unknown route: {request.method} {request.path}"
        return error_response(error, family_of(request.path, request.headers))
    except ConnectionResetError:
        raise  # the client is gone: there is nobody to answer
    except Exception:
        _log.exception("unhandled error", request_id=rid, path=request.path)
        return error_response(
            ProxyError("internal error; the request id identifies it in the server log"),
            family_of(request.path, request.headers),
        )


def _refused(request: web.Request, reason: str) -> None:
    tracker = request.app.get(TRACKER)
    if tracker is not None:
        tracker.refused(reason)
