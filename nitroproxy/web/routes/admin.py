"""The admin API under ``/admin/`` (an admin key), described by ``nitroproxy/reports/openapi.py``:
users, keys, usage, the audit log, exports, closure and erasure; plus the accounts component.

Every write goes through ``AccountStore`` (one transaction with its audit entry) and is then
applied to this process's key table at once. Every audit entry names the admin key's holder
(``admin:<name>``); exports, statements and erasures are audited too.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from typing import Any

from aiohttp import web

from nitroproxy.core.errors import InvalidRequest
from nitroproxy.core.limits import INTEGER_LIMITS, LIMIT_FIELDS
from nitroproxy.reports import openapi
from nitroproxy.reports.usage import row_dict
from nitroproxy.store import billing, end_users, keys, preferences, users
from nitroproxy.store.accounts import AccountStore
from nitroproxy.store.keys import IssuedKey, KeySpec
from nitroproxy.store.pg.rights import remote_records
from nitroproxy.store.rights import erase_user, export_user
from nitroproxy.store.usage import GROUP_BY_OPTIONS, list_records, query_usage
from nitroproxy.web import params
from nitroproxy.web.appkeys import (
    ACCOUNTS,
    AUTH,
    CACHE,
    GATEWAY,
    PG_REPORTS,
    SETTINGS,
    STORE,
    WRITER,
)
from nitroproxy.web.auth import actor_of
from nitroproxy.web.documents import ExportForm, StatementForm
from nitroproxy.web.session import require_admin

USER_STATUSES = ("active", "suspended", "erased")
_USER_FIELDS = ("name", "email", "tier", "status", "analytics", "cache")
_ACTOR = web.RequestKey("actor", str)
_KEY_FIELDS = ("name", "user_id", "models", *LIMIT_FIELDS, "expires_at", "cache")


def _limit_params(body: dict[str, Any]) -> dict[str, Any]:
    return {
        name: params.integer(body, name, minimum=1)
        if name in INTEGER_LIMITS
        else params.number(body, name)
        for name in LIMIT_FIELDS
    }


async def accounts_context(app: web.Application) -> AsyncIterator[None]:
    """Open the accounts store (refusing to start on a wrong or missing data key, with a
    ``DataKeyError``), load its keys into the authenticator and keep them fresh."""
    settings = app[SETTINGS]
    if not settings.storage.enabled:
        yield
        return
    store = await AccountStore.open(
        settings.storage.path, env=os.environ, tiers=settings.tiers, models=settings.models
    )
    store.remote_records = remote_records(settings.storage)
    app[ACCOUNTS] = store
    try:
        await app[AUTH].attach(store)
        yield
    finally:
        await app[AUTH].detach()
        await store.close()


def admin_store(request: web.Request) -> AccountStore:
    """The accounts store, once the caller is shown to hold an admin key (whose name is
    then this request's audit actor, :func:`actor`)."""
    request[_ACTOR] = actor_of(require_admin(request))
    return request.app[ACCOUNTS]


def actor(request: web.Request) -> str:
    """``admin:<name>`` of the admin key that authenticated this request."""
    return request[_ACTOR]


async def _changed(request: web.Request) -> None:
    await request.app[AUTH].refresh()


def _page(items: Sequence[Any], limit: int) -> dict[str, Any]:
    return {
        "data": [i.to_json() for i in items[:limit]],
        "has_more": len(items) > limit,
    }


# -- users --------------------------------------------------------------------------------


async def create_user(request: web.Request) -> web.Response:
    store = admin_store(request)
    body = await params.body_object(request, ("name", "email", "tier"))
    user = await users.create_user(
        store,
        actor=actor(request),
        name=params.text(body, "name", max_length=200),
        email=params.text(body, "email", max_length=254),
        tier=params.text(body, "tier", max_length=100, required="tier" in body) or "default",
    )
    await _changed(request)
    return web.json_response(user.to_json(), status=201)


async def list_users(request: web.Request) -> web.Response:
    store = admin_store(request)
    limit = params.query_limit(request)
    found_users = await users.list_users(
        store,
        status=params.query_choice(request, "status", USER_STATUSES),
        email=params.query_text(request, "email", max_length=254),
        after=params.query_text(request, "after"),
        limit=limit + 1,
    )
    return web.json_response(_page(found_users, limit))


async def get_user(request: web.Request) -> web.Response:
    user = await users.get_user(admin_store(request), request.match_info["user_id"])
    return web.json_response(user.to_json())


async def update_user(request: web.Request) -> web.Response:
    store = admin_store(request)
    body = await params.body_object(request, _USER_FIELDS)
    changes: dict[str, Any] = {}
    for name, max_length in (("name", 200), ("email", 254)):
        if name in body:  # present and null clears the field
            changes[name] = params.text(body, name, max_length=max_length)
    if "tier" in body:
        changes["tier"] = params.text(body, "tier", max_length=100, required=True)
    if "status" in body:
        changes["status"] = params.choice(body, "status", ("active", "suspended"), required=True)
    user_id = request.match_info["user_id"]
    chosen = params.flags(body, ("analytics", "cache"))
    if changes or not chosen:
        await users.update_user(store, user_id, actor=actor(request), **changes)
    if chosen:  # objection and opt-out: the person's privacy choices
        await preferences.set_preferences(
            store, user_id, actor=actor(request), require_user=True, **chosen
        )
        if chosen.get("cache") is False:
            await purge_cache(request.app, user_id)
    await _changed(request)
    return web.json_response((await users.get_user(store, user_id)).to_json())


async def close_user(request: web.Request) -> web.Response:
    """Close an account: keys stop at once; erased after ``retention.closed_accounts``."""
    store = admin_store(request)
    user = await users.close_user(store, request.match_info["user_id"], actor=actor(request))
    await _changed(request)
    return web.json_response(user.to_json())


async def purge_cache(app: web.Application, subject: str) -> None:
    """Remove the response-cache entries of a subject (a user, or a key without one)."""
    cache = app.get(CACHE)
    if cache is not None:
        await cache.purge_user(subject)
        await cache.purge_key(subject)


async def erase(request: web.Request) -> web.Response:
    store = admin_store(request)

    async def settle() -> None:
        # Stop the keys here first, then let queued records of this user reach the
        # database, so the erase removes them too.
        await _changed(request)
        await _drain_writer(request.app)

    user_id = request.match_info["user_id"]
    result = await erase_user(store, user_id, actor=actor(request), settle=settle)
    cache = request.app.get(CACHE)
    if cache is not None:  # cached answers are prompt-derived data of this user
        await cache.purge_user(user_id)
    return web.json_response(result.to_json())


async def export(request: web.Request) -> web.Response:
    store = admin_store(request)
    form = ExportForm.of(request)
    return form.response(
        await export_user(store, request.match_info["user_id"], actor=actor(request))
    )


async def statements(request: web.Request) -> web.Response:
    """Monthly statements from the billing lines; also for an erased user (under its
    billing pseudonyms) and for a pseudonym itself. Audited."""
    store = admin_store(request)
    form = StatementForm.of(request)
    user_id = request.match_info["user_id"]
    found = await billing.user_statements(store, user_id, actor=actor(request), period=form.period)
    return form.response(user_id, found)


async def _drain_writer(app: web.Application, within: float = 2.0) -> None:
    writer = app.get(WRITER)
    if writer is None:
        return
    await writer.flush(timeout=within)


# -- keys ---------------------------------------------------------------------------------


def _issued(issued: IssuedKey) -> dict[str, Any]:
    return {**issued.key.to_json(), "secret": issued.secret}


async def create_key(request: web.Request) -> web.Response:
    store = admin_store(request)
    body = await params.body_object(request, _KEY_FIELDS)
    spec = KeySpec(
        name=params.text(body, "name", max_length=200, required=True) or "",
        user_id=params.text(body, "user_id", max_length=100),
        models=params.names(body, "models"),
        **_limit_params(body),
        expires_at=params.integer(body, "expires_at", minimum=0),
        cache=params.flag(body, "cache"),
    )
    issued = await keys.create_key(store, spec, actor=actor(request))
    await _changed(request)
    return web.json_response(_issued(issued), status=201)


async def list_keys(request: web.Request) -> web.Response:
    store = admin_store(request)
    limit = params.query_limit(request)
    found = await keys.list_keys(
        store,
        user_id=params.query_text(request, "user_id"),
        include_revoked=params.query_flag(request, "include_revoked", True),
        after=params.query_text(request, "after"),
        limit=limit + 1,
    )
    return web.json_response(_page(found, limit))


async def get_key(request: web.Request) -> web.Response:
    key = await keys.get_key(admin_store(request), request.match_info["key_id"])
    return web.json_response(key.to_json())


async def revoke_key(request: web.Request) -> web.Response:
    store = admin_store(request)
    key = await keys.revoke_key(store, request.match_info["key_id"], actor=actor(request))
    await _changed(request)
    cache = request.app.get(CACHE)
    if cache is not None:
        await cache.purge_key(key.id)
    return web.json_response(key.to_json())


async def rotate_key(request: web.Request) -> web.Response:
    store = admin_store(request)
    issued = await keys.rotate_key(store, request.match_info["key_id"], actor=actor(request))
    await _changed(request)
    return web.json_response(_issued(issued))


# -- usage, audit, status -----------------------------------------------------------------


async def usage(request: web.Request) -> web.Response:
    admin_store(request)
    return web.json_response(
        await usage_report(
            request,
            key_id=params.query_text(request, "key_id"),
            user_id=params.query_text(request, "user_id"),
        )
    )


async def usage_report(
    request: web.Request, *, key_id: str | None, user_id: str | None
) -> dict[str, Any]:
    """Totals over ``[from, to)`` grouped by ``group_by`` (also serves ``/v1/me/usage``)."""
    start = params.query_time(request, "from")
    end = params.query_time(request, "to")
    group_by = params.query_choice(request, "group_by", GROUP_BY_OPTIONS, "day") or "day"
    filters: dict[str, Any] = {"start": start, "end": end, "group_by": group_by, "key_id": key_id}
    pg = request.app.get(PG_REPORTS)  # records kept in PostgreSQL
    if pg is not None:
        rows = await pg.query_usage(**filters, user_id=user_id)
    else:
        rows = await query_usage(request.app[STORE], **filters, user_id=user_id)
    return {"group_by": group_by, "from": start, "to": end, "rows": [row_dict(r) for r in rows]}


async def usage_records(request: web.Request) -> web.Response:
    admin_store(request)
    limit = params.query_limit(request)
    filters: dict[str, Any] = {
        "key_id": params.query_text(request, "key_id"),
        "user_id": params.query_text(request, "user_id"),
        "start": params.query_time(request, "from"),
        "end": params.query_time(request, "to"),
        "limit": limit + 1,
    }
    pg = request.app.get(PG_REPORTS)
    if pg is not None:
        records = await pg.list_records(**filters)
    else:
        records = await list_records(request.app[STORE], **filters)
    return web.json_response(
        {"data": [asdict(r) for r in records[:limit]], "has_more": len(records) > limit}
    )


async def _end_user(request: web.Request) -> tuple[AccountStore, str | None]:
    """The store and the end user a request names, as records keep it (None: the mode
    keeps no end users, so there is nothing to find)."""
    store = admin_store(request)
    body = await params.body_object(request, ("end_user",))
    value = params.text(body, "end_user", max_length=256, required=True) or ""
    return store, request.app[GATEWAY].end_users.recorded(value)


async def export_end_user(request: web.Request) -> web.Response:
    store, recorded = await _end_user(request)
    if recorded is None:
        doc = {"format": end_users.EXPORT_FORMAT, "exported_at": store.clock(), "end_user": None}
        return web.json_response({**doc, "usage_records": []})
    await _drain_writer(request.app)
    document = await end_users.export_end_user(store, recorded)
    await store.note(  # exports are audited; the end user is named nowhere (it may be personal)
        actor=actor(request),
        action="end_user.export",
        target=None,
        detail={"usage_records": len(document["usage_records"])},
    )
    return web.json_response(document)


async def erase_end_user(request: web.Request) -> web.Response:
    store, recorded = await _end_user(request)
    if recorded is None:
        return web.json_response({"usage_records_cleared": 0, "wal_truncated": True})
    await _drain_writer(request.app)  # records on their way in are cleared too
    return web.json_response(await end_users.erase_end_user(store, recorded, actor=actor(request)))


async def audit_log(request: web.Request) -> web.Response:
    store = admin_store(request)
    limit = params.query_limit(request)
    before = params.query_text(request, "before", max_length=18)
    if before is not None and not (before.isascii() and before.isdigit()):
        raise InvalidRequest("'before' must be an audit entry's seq", param="before")
    entries = await store.audit_entries(
        target=params.query_text(request, "target"),
        user_id=params.query_text(request, "user_id"),
        actor=params.query_text(request, "actor"),
        action=params.query_text(request, "action"),
        before=int(before) if before is not None else None,
        limit=limit + 1,
    )
    return web.json_response(_page(entries, limit))


async def document(request: web.Request) -> web.Response:
    require_admin(request)
    return web.json_response(openapi.document())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/admin/openapi.json", document)
    if not app[SETTINGS].storage.enabled:
        return
    r.add_post("/admin/users", create_user)
    r.add_get("/admin/users", list_users)
    r.add_get("/admin/users/{user_id}", get_user)
    r.add_patch("/admin/users/{user_id}", update_user)
    r.add_delete("/admin/users/{user_id}", erase)
    r.add_get("/admin/users/{user_id}/export", export)
    r.add_post("/admin/users/{user_id}/close", close_user)
    r.add_get("/admin/users/{user_id}/statements", statements)
    r.add_post("/admin/keys", create_key)
    r.add_get("/admin/keys", list_keys)
    r.add_get("/admin/keys/{key_id}", get_key)
    r.add_post("/admin/keys/{key_id}/revoke", revoke_key)
    r.add_post("/admin/keys/{key_id}/rotate", rotate_key)
    r.add_get("/admin/usage", usage)
    r.add_get("/admin/usage/records", usage_records)
    r.add_get("/admin/audit", audit_log)
    r.add_post("/admin/end-users/export", export_end_user)
    r.add_post("/admin/end-users/erase", erase_end_user)
