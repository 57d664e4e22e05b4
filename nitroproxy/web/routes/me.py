"""What a key holder may read about itself: ``/v1/me/usage``, ``/v1/me/export``,
``/v1/me/statements``, and ``/v1/usage`` (the admin key sees everyone's usage there; any
other key only its own); and what it may choose: ``/v1/me/preferences``.

"Its own" means the calling key's: its metadata, records, aggregates and billing lines. A
user-bound key does not see its user's profile or the user's other keys, since a key may be
handed to a script or a colleague; the user's full export is an admin action. Privacy
choices are the person's, though (the key's user, or the key itself without one): objecting
to analytics or opting out of the cache through any of a user's keys applies to all of them.
Exports, statements and choices are audited with the actor ``key:<id>``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from nitroproxy.core.errors import PermissionDenied
from nitroproxy.core.principal import Principal
from nitroproxy.store import billing, preferences
from nitroproxy.store.rights import export_key
from nitroproxy.web import params
from nitroproxy.web.appkeys import ACCOUNTS, AUTH, SETTINGS
from nitroproxy.web.auth import actor_of
from nitroproxy.web.documents import ExportForm, StatementForm
from nitroproxy.web.routes.admin import purge_cache, usage_report


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
    form = ExportForm.of(request)
    document = await export_key(
        request.app[ACCOUNTS],
        principal.key_id,
        actor=actor_of(principal),
        key=key,
        subject=principal.subject,
    )
    return form.response(document)


async def my_statements(request: web.Request) -> web.Response:
    """Monthly statements of this key's usage (raw records and billing lines)."""
    principal = _own_key(request)
    assert principal.key_id is not None
    form = StatementForm.of(request)
    found = await billing.key_statements(
        request.app[ACCOUNTS], principal.key_id, actor=actor_of(principal), period=form.period
    )
    return form.response(principal.key_id, found)


async def my_preferences(request: web.Request) -> web.Response:
    principal = _own_key(request)
    assert principal.subject is not None
    choices = await preferences.get_preferences(request.app[ACCOUNTS], principal.subject)
    return web.json_response({"subject": principal.subject, **choices.to_json()})


async def set_my_preferences(request: web.Request) -> web.Response:
    """Object to analytics (``analytics: false``) or opt out of the response cache
    (``cache: false``), or take either back; applies at once to every key of the person."""
    principal = _own_key(request)
    subject = principal.subject
    assert subject is not None
    body = await params.body_object(request, ("analytics", "cache"))
    chosen = params.flags(body, ("analytics", "cache"))
    # A store key's user must still exist (an erase may have raced this request); a config
    # key's user is only a name in the config file.
    store_user = principal.user_id is not None and (principal.key_id or "").startswith("key_")
    choices = await preferences.set_preferences(
        request.app[ACCOUNTS],
        subject,
        actor=actor_of(principal),
        require_user=store_user,
        **chosen,
    )
    await request.app[AUTH].refresh()
    if chosen.get("cache") is False:
        await purge_cache(request.app, subject)
    return web.json_response({"subject": subject, **choices.to_json()})


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
    app.router.add_get("/v1/me/statements", my_statements)
    app.router.add_get("/v1/me/preferences", my_preferences)
    app.router.add_patch("/v1/me/preferences", set_my_preferences)
    app.router.add_get("/v1/usage", usage)
