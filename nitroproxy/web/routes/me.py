"""What a key holder may read about itself: ``/v1/me/usage``, ``/v1/me/export``, and
``/v1/usage`` (the admin key sees everyone's usage there; any other key only its own).

"Its own" means the calling key's: its metadata, records and aggregates. A user-bound key
does not see its user's profile or the user's other keys, since a key may be handed to a
script or a colleague; the user's full export is an admin action.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from nitroproxy.core.errors import PermissionDenied
from nitroproxy.core.principal import Principal
from nitroproxy.store.rights import export_key
from nitroproxy.web import params
from nitroproxy.web.appkeys import ACCOUNTS, AUTH, SETTINGS
from nitroproxy.web.routes.admin import usage_report


def _own_key(request: web.Request) -> Principal:
    principal = request.app[AUTH].authenticate_key(request.headers)
    if principal.admin:
        raise PermissionDenied(
            "the admin key has no usage of its own; use /admin/usage and /admin/users/{id}/export"
        )
    return principal


async def my_usage(request: web.Request) -> web.Response:
    principal = _own_key(request)
    return web.json_response(await usage_report(request, key_id=principal.key_id, user_id=None))


async def my_export(request: web.Request) -> web.Response:
    principal = _own_key(request)
    assert principal.key_id is not None  # authenticate_key refuses anonymous callers
    key: dict[str, Any] | None = None
    if not principal.key_id.startswith("key_"):  # a key from the config file
        key = {
            "id": principal.key_id,
            "name": principal.name,
            "user_id": principal.user_id,
            "models": sorted(principal.models) if principal.models is not None else None,
            "source": "config",
        }
    return web.json_response(await export_key(request.app[ACCOUNTS], principal.key_id, key=key))


async def usage(request: web.Request) -> web.Response:
    principal = request.app[AUTH].authenticate_key(request.headers)
    if principal.admin:
        report = await usage_report(
            request,
            key_id=params.query_text(request, "key_id"),
            user_id=params.query_text(request, "user_id"),
        )
    else:
        report = await usage_report(request, key_id=principal.key_id, user_id=None)
    return web.json_response(report)


def add_routes(app: web.Application) -> None:
    if not app[SETTINGS].storage.enabled:
        return
    app.router.add_get("/v1/me/usage", my_usage)
    app.router.add_get("/v1/me/export", my_export)
    app.router.add_get("/v1/usage", usage)
