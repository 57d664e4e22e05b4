"""The dashboard at ``/ui/``: its static files, sign-in and sign-out, and the JSON and SSE its
pages read. Metadata only, like everything else: the pages show what the admin API and the
usage records hold, never a prompt or a completion.

The files are plain HTML, CSS and JavaScript inside the package (``web/static``), read once
at start-up and served from memory; the pages load nothing from any other host, and the
Content-Security-Policy says so to the browser too. The admin pages do not get an API of
their own: every ``/admin/...`` route is also served under ``/ui/api/admin/...`` by the same
handler, authorised by an admin session (cookie + CSRF token) instead of the key header.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import mimetypes
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from nitroproxy import __version__
from nitroproxy.core import sse
from nitroproxy.core.errors import InvalidRequest, PermissionDenied, ProxyError, Unauthenticated
from nitroproxy.core.principal import Principal
from nitroproxy.reports.usage import COLUMNS, row_dict
from nitroproxy.security.crypto import key_digest
from nitroproxy.store.timeline import Rows, query_timeline, step_for, usage_by_deployment
from nitroproxy.store.usage import GROUP_BY_OPTIONS
from nitroproxy.web import params
from nitroproxy.web.appkeys import AUTH, FEED, GATEWAY, PG_REPORTS, SETTINGS, STORE
from nitroproxy.web.routes.admin import usage_report
from nitroproxy.web.session import (
    COOKIE,
    SESSIONS,
    authorise,
    check_origin,
    clear_cookie,
    set_cookie,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HEARTBEAT_S = 15.0
DEFAULT_RANGE_S = 86400.0
SECURITY_HEADERS = {
    # Nothing but this origin, no inline script or style, no framing.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


# The usage tables group as the admin API does, and also by deployment (raw rows only).
GROUPS: tuple[str, ...] = tuple(dict.fromkeys((*GROUP_BY_OPTIONS, "deployment")))


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


ASSETS = web.AppKey("ui_assets", dict[str, Asset])


def load_assets() -> dict[str, Asset]:
    """Every file of ``nitroproxy/web/static`` by name (the directory is flat; it is a package
    only so that setuptools ships it as package data without a warning)."""
    out: dict[str, Asset] = {}
    for item in resources.files("nitroproxy.web").joinpath("static").iterdir():
        if not item.is_file() or item.name.startswith(".") or item.name.endswith((".py", ".pyc")):
            continue  # the package's own __init__.py is not an asset
        body = item.read_bytes()
        content_type = mimetypes.guess_type(item.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type.endswith("javascript"):
            content_type += "; charset=utf-8"
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        out[item.name] = Asset(body, content_type, etag)
    return out


async def assets_context(app: web.Application) -> AsyncIterator[None]:
    app[ASSETS] = await asyncio.get_running_loop().run_in_executor(None, load_assets)
    yield


def _secured(response: web.StreamResponse, *, store: bool = False) -> web.StreamResponse:
    response.headers.update(SECURITY_HEADERS)
    if not store:
        response.headers["Cache-Control"] = "no-store"
    return response


def _asset(request: web.Request, name: str) -> web.Response:
    asset = request.app[ASSETS].get(name)
    if asset is None:
        raise web.HTTPNotFound()
    if request.headers.get("If-None-Match") == asset.etag:
        response = web.Response(status=304)
    else:
        response = web.Response(body=asset.body)
        response.headers["Content-Type"] = asset.content_type
    response.headers["ETag"] = asset.etag
    response.headers["Cache-Control"] = "no-cache"  # revalidate: a new release shows at once
    _secured(response, store=True)
    return response


async def index(request: web.Request) -> web.Response:
    return _asset(request, "index.html")


async def static_file(request: web.Request) -> web.Response:
    return _asset(request, request.match_info["name"])


async def to_index(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


def _json(data: Any, status: int = 200) -> web.StreamResponse:
    response = web.Response(body=orjson.dumps(data), status=status)
    response.content_type = "application/json"
    return _secured(response)


# -- the session ----------------------------------------------------------------------------


def _whoami(request: web.Request, principal: Principal, csrf: str) -> dict[str, Any]:
    settings = request.app[SETTINGS]
    storage = settings.storage.enabled
    return {
        "role": "admin" if principal.admin else "key",
        "name": principal.name,
        "key_id": None if principal.admin else principal.key_id,
        "csrf": csrf,
        "version": __version__,
        "storage": storage,
        "group_by": list(GROUPS) if storage else [],
        "models": sorted(n for n in settings.models if principal.admin or principal.may_use(n)),
        "deployments": [
            {"name": d.name, "model": m.name, "provider": d.provider, "upstream": d.upstream_model}
            for m in settings.models.values()
            for d in m.deployments
        ]
        if principal.admin
        else [],
    }


async def sign_in(request: web.Request) -> web.StreamResponse:
    check_origin(request)
    body = await params.body_object(request, ("key",))
    secret = params.text(body, "key", max_length=1024, required=True) or ""
    digest = key_digest(secret)
    try:
        principal = request.app[AUTH].authenticate_digest(digest)
    except Unauthenticated:
        raise Unauthenticated("this key is not valid here") from None
    token, session = request.app[SESSIONS].open(digest)
    response = _json(_whoami(request, principal, session.csrf), status=201)
    set_cookie(response, request, token, request.app[SETTINGS].ui.session_ttl)
    return response


async def current(request: web.Request) -> web.StreamResponse:
    session, principal = authorise(request)
    return _json(_whoami(request, principal, session.csrf))


async def sign_out(request: web.Request) -> web.StreamResponse:
    authorise(request)  # a CSRF token is needed: another site cannot sign anyone out
    token = request.cookies.get(COOKIE)
    if token is not None:
        request.app[SESSIONS].close(token)
    response = _secured(web.Response(status=204))
    clear_cookie(response, request)
    return response


# -- what the pages read --------------------------------------------------------------------


def _scope(request: web.Request, principal: Principal) -> tuple[str | None, str | None]:
    """(key_id, user_id) the caller may see: an admin any (from the query), a key its own."""
    if principal.admin:
        return params.query_text(request, "key_id"), params.query_text(request, "user_id")
    return principal.key_id, None


def _range(request: web.Request) -> tuple[float, float]:
    end = params.query_time(request, "to") or request.app[GATEWAY].clock.wall()
    start = params.query_time(request, "from")
    if start is None:
        start = end - DEFAULT_RANGE_S
    if start >= end:
        raise InvalidRequest("'from' must be before 'to'", param="from")
    return start, end


def _rows(request: web.Request) -> Rows:
    """Where the raw records are: PostgreSQL (``storage.backend: postgres``) or SQLite."""
    pg = request.app.get(PG_REPORTS)
    return pg.queries if pg is not None else request.app[STORE]


async def overview(request: web.Request) -> web.StreamResponse:
    _, principal = authorise(request)
    start, end = _range(request)
    key_id, _ = _scope(request, principal)
    step = step_for(start, end)
    points = await query_timeline(_rows(request), start=start, end=end, step=step, key_id=key_id)
    return _json({"from": start, "to": end, "step": step, "points": [p.to_json() for p in points]})


async def _usage_report(request: web.Request, principal: Principal) -> dict[str, Any]:
    """The admin API's usage report; by deployment from the raw rows, which alone keep it."""
    key_id, user_id = _scope(request, principal)
    if request.query.get("group_by") != "deployment" or "deployment" in GROUP_BY_OPTIONS:
        return await usage_report(request, key_id=key_id, user_id=user_id)
    start, end = params.query_time(request, "from"), params.query_time(request, "to")
    rows = await usage_by_deployment(
        _rows(request), start=start, end=end, key_id=key_id, user_id=user_id
    )
    return {"group_by": "deployment", "from": start, "to": end, "rows": [row_dict(r) for r in rows]}


async def usage(request: web.Request) -> web.StreamResponse:
    _, principal = authorise(request)
    return _json(await _usage_report(request, principal))


async def usage_csv(request: web.Request) -> web.StreamResponse:
    _, principal = authorise(request)
    report = await _usage_report(request, principal)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(report["rows"])
    response = web.Response(text=out.getvalue(), content_type="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="nitroproxy-usage-by-{report["group_by"]}.csv"'
    )
    return _secured(response)


async def feed(request: web.Request) -> web.StreamResponse:
    """The live feed over SSE: ``call`` events (one per finished call, metadata only), a
    ``missed`` event when a slow reader lost some, and a comment every few seconds."""
    _, principal = authorise(request)
    token = request.cookies.get(COOKIE, "")
    async with request.app[FEED].subscribe(None if principal.admin else principal.key_id) as sub:
        response = web.StreamResponse(headers=sse.HEADERS)
        _secured(response, store=True)
        await response.prepare(request)
        await response.write(sse.comment("connected"))
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT_S):
                    item = await sub.next()
            except TimeoutError:
                if not _still_signed_in(request, token):
                    break
                await response.write(sse.comment())
                continue
            if item is None:
                break
            data, missed = item
            if missed:
                await response.write(sse.encode(b'{"missed":%d}' % missed, event="missed"))
            await response.write(sse.encode(data, event="call"))
    return response


def _still_signed_in(request: web.Request, token: str) -> bool:
    session = request.app[SESSIONS].get(token)
    if session is None:
        return False
    try:
        request.app[AUTH].authenticate_digest(session.key_digest)
    except ProxyError:
        return False
    return True


# -- the admin API, under a session ---------------------------------------------------------


def _as_admin(handler: Handler) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        _, principal = authorise(request)
        if not principal.admin:
            raise PermissionDenied("this page needs a session of the admin key")
        return _secured(await handler(request))

    return handle


def _twin_admin_routes(app: web.Application) -> None:
    for route in list(app.router.routes()):
        resource = route.resource
        path = resource.canonical if resource is not None else ""
        if path.startswith("/admin/") and route.method != "HEAD":
            app.router.add_route(route.method, "/ui/api" + path, _as_admin(route.handler))


def add_routes(app: web.Application) -> None:
    """After every other route: the admin routes registered by then get their twins."""
    settings = app[SETTINGS]
    if not settings.ui.enabled:
        return
    app.cleanup_ctx.append(assets_context)
    r = app.router
    r.add_get("/ui", to_index)
    r.add_get("/ui/", index)
    r.add_get("/ui/assets/{name}", static_file)
    r.add_post("/ui/api/session", sign_in)
    r.add_get("/ui/api/session", current)
    r.add_delete("/ui/api/session", sign_out)
    r.add_get("/ui/api/feed", feed)
    if settings.storage.enabled:
        r.add_get("/ui/api/overview", overview)
        r.add_get("/ui/api/usage", usage)
        r.add_get("/ui/api/usage.csv", usage_csv)
    _twin_admin_routes(app)
