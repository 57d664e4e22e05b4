"""The OpenAPI 3.1 document of the admin API, served at ``/admin/openapi.json``.

Written by hand next to the handlers (``web/admin_routes.py``, ``web/params.py``) and kept
honest by a schemathesis run against the real server (``tests/test_admin_fuzz.py``): every
response must match it, and inputs it calls invalid must be refused with a 4xx.
"""

from __future__ import annotations

import functools
from dataclasses import fields
from typing import Any

from nitroproxy import __version__
from nitroproxy.core.limits import INTEGER_LIMITS, LIMIT_FIELDS
from nitroproxy.core.types import UsageRecord
from nitroproxy.reports import openapi_rights
from nitroproxy.reports.openapi_parts import (
    BOOL,
    INT,
    NUM,
    STR,
    TOKENS,
    body,
    null,
    obj,
    op,
    page,
    path,
    query,
    ref,
    responses,
)
from nitroproxy.reports.usage import COLUMNS as USAGE_COLUMNS
from nitroproxy.store.rights import EXPORT_FORMAT
from nitroproxy.store.usage import GROUP_BY_OPTIONS

__all__ = ["document"]

_MAX_INT = 2**53
_TEXT = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"}
_EMAIL = {"type": "string", "maxLength": 254, "pattern": r"^[^@\s]+@[^@\s]+$"}
_TIER = {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"\S"}


_LIMIT_SCHEMA = {
    True: {"type": "integer", "minimum": 1, "maximum": _MAX_INT},
    False: {"type": "number", "minimum": 0, "maximum": 1e12},
}
_KEY_PROPS: dict[str, Any] = {
    "id": STR,
    "prefix": STR,
    "name": STR,
    "user_id": null(STR),
    "models": null({"type": "array", "items": STR}),
    **{name: null(INT if name in INTEGER_LIMITS else NUM) for name in LIMIT_FIELDS},
    "expires_at": null(INT),
    "cache": {"type": "boolean"},
    "revoked": {"type": "boolean"},
    "created": INT,
    "updated": INT,
}
_PY_TYPES = {"str": STR, "int": INT, "float": NUM, "bool": {"type": "boolean"}}


def _record_schema() -> dict[str, Any]:
    props: dict[str, Any] = {}
    for f in fields(UsageRecord):
        kind = str(f.type).replace(" ", "")
        base = kind.removesuffix("|None")
        schema = _PY_TYPES[base]
        props[f.name] = null(schema) if kind.endswith("|None") else schema
    return obj(props)


def _schemas() -> dict[str, Any]:
    counts = {c: INT for c in USAGE_COLUMNS if c not in ("group", "cost_usd")}
    daily = {
        "day": STR,
        "user_id": STR,
        "key_id": STR,
        "model": STR,
        "provider": STR,
    }
    return {
        "Error": obj(
            {
                "error": obj(
                    {
                        "message": STR,
                        "type": STR,
                        "param": null(STR),
                        "code": null(STR),
                    }
                )
            }
        ),
        "User": obj(
            {
                "id": STR,
                "name": null(STR),
                "email": null(STR),
                "tier": STR,
                "status": {"enum": ["active", "suspended", "erased"]},
                "created": INT,
                "updated": INT,
                "closed_at": null(INT),
                "analytics": BOOL,
                "cache": BOOL,
            }
        ),
        "UserCreate": obj({"name": null(_TEXT), "email": null(_EMAIL), "tier": _TIER}, required=[]),
        "UserUpdate": obj(
            {
                "name": null(_TEXT),
                "email": null(_EMAIL),
                "tier": _TIER,
                "status": {"enum": ["active", "suspended"]},
                "analytics": null(BOOL),
                "cache": null(BOOL),
            },
            required=[],
        ),
        "Key": obj(_KEY_PROPS),
        "IssuedKey": obj({**_KEY_PROPS, "secret": STR}),
        "KeyCreate": obj(
            {
                "name": _TEXT,
                "user_id": null({**_TEXT, "maxLength": 100}),
                "models": null({"type": "array", "items": _TEXT, "minItems": 1, "maxItems": 100}),
                **{name: null(_LIMIT_SCHEMA[name in INTEGER_LIMITS]) for name in LIMIT_FIELDS},
                "expires_at": null({"type": "integer", "minimum": 0, "maximum": _MAX_INT}),
                "cache": {"type": "boolean"},
            },
            required=["name"],
        ),
        "UserPage": page("User"),
        "KeyPage": page("Key"),
        "AuditPage": page("AuditEntry"),
        "UsageRecord": _record_schema(),
        "UsageRecordPage": page("UsageRecord"),
        "UsageRow": obj({"group": STR, **counts, "cost_usd": NUM}),
        "UsageReport": obj(
            {
                "group_by": {"enum": list(GROUP_BY_OPTIONS)},
                "from": null(NUM),
                "to": null(NUM),
                "rows": {"type": "array", "items": ref("UsageRow")},
            }
        ),
        "DailyAggregate": obj(
            {
                **daily,
                **{c: INT for c in ("requests", "errors", *TOKENS, "cost_nanos")},
            }
        ),
        "AuditEntry": obj(
            {
                "seq": INT,
                "ts": NUM,
                "actor": STR,
                "action": STR,
                "target": null(STR),
                "user_id": null(STR),
                "detail": {"type": "object"},
            }
        ),
        "UserExport": obj(
            {
                "format": {"const": EXPORT_FORMAT},
                "exported_at": NUM,
                "user": ref("User"),
                "preferences": ref("Preferences"),
                "keys": {"type": "array", "items": ref("Key")},
                "usage_records": {"type": "array", "items": ref("UsageRecord")},
                "daily_aggregates": {"type": "array", "items": ref("DailyAggregate")},
                "billing_lines": {"type": "array", "items": ref("BillingLine")},
                "audit": {"type": "array", "items": ref("AuditEntry")},
            }
        ),
        "EndUserRef": obj(
            {"end_user": {"type": "string", "minLength": 1, "maxLength": 256}},
            required=["end_user"],
        ),
        "EndUserExport": obj(
            {
                "format": {"const": "nitroproxy.end_user_export.v1"},
                "exported_at": NUM,
                "end_user": null(STR),
                "usage_records": {"type": "array", "items": ref("UsageRecord")},
            }
        ),
        "EndUserEraseResult": obj(
            {"usage_records_cleared": INT, "wal_truncated": {"type": "boolean"}}
        ),
        "EraseResult": obj(
            {
                "user_id": STR,
                "keys_deleted": INT,
                "usage_records_deleted": INT,
                "daily_aggregates_pseudonymized": INT,
                "wal_truncated": BOOL,
                "billing_pseudonym": STR,
                "billing_lines_pseudonymized": INT,
            }
        ),
        **openapi_rights.schemas(),
    }


_ID = {"type": "string", "minLength": 1, "maxLength": 200}
_LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size (100)")
_AFTER = query("after", _ID, "the last id of the previous page")
_TIME = {"type": "string", "minLength": 1}
_RANGE = [
    query("from", _TIME, "ISO date or datetime (UTC), inclusive"),
    query("to", _TIME, "ISO date or datetime (UTC), exclusive"),
]
_WHO = [
    query("user_id", _ID, "only this user"),
    query("key_id", _ID, "only this key"),
]


def _paths() -> dict[str, Any]:
    user, key = [path("user_id")], [path("key_id")]
    return {
        "/admin/users": {
            "post": op(
                "createUser",
                "Create a user (name and email need NITROPROXY_DATA_KEY)",
                responses("201", "User", "400"),
                requestBody=body("UserCreate"),
            ),
            "get": op(
                "listUsers",
                "List users, oldest first",
                responses("200", "UserPage", "400"),
                parameters=[
                    query("status", {"enum": ["active", "suspended", "erased"]}, "filter"),
                    query(
                        "email",
                        {"type": "string", "minLength": 1, "maxLength": 254},
                        "exact",
                    ),
                    _AFTER,
                    _LIMIT,
                ],
            ),
        },
        "/admin/users/{user_id}": {
            "get": op(
                "getUser",
                "Read a user",
                responses("200", "User", "404"),
                parameters=user,
            ),
            "patch": op(
                "updateUser",
                "Rectify name or email (null clears), change tier, suspend or reactivate",
                responses("200", "User", "400", "404"),
                parameters=user,
                requestBody=body("UserUpdate"),
            ),
            "delete": op(
                "eraseUser",
                "Erase: wipe profile, delete keys and records, pseudonymize aggregates",
                responses("200", "EraseResult", "404"),
                parameters=user,
            ),
        },
        "/admin/users/{user_id}/export": {
            "get": op(
                "exportUser",
                "Everything held about the user, as one JSON document (schema: "
                "/privacy/export.schema.json), or one of its usage tables as CSV",
                responses("200", "UserExport", "400", "404", csv=True),
                parameters=[
                    *user,
                    query("format", {"enum": ["json", "csv"]}, "default json"),
                    query(
                        "part",
                        {
                            "enum": [
                                "usage_records",
                                "daily_aggregates",
                                "billing_lines",
                            ]
                        },
                        "the table a CSV export holds (default usage_records)",
                    ),
                ],
            )
        },
        "/admin/keys": {
            "post": op(
                "createKey",
                "Create a key; the response holds its secret, shown this once",
                responses("201", "IssuedKey", "400"),
                requestBody=body("KeyCreate"),
            ),
            "get": op(
                "listKeys",
                "List keys (metadata only), oldest first",
                responses("200", "KeyPage", "400"),
                parameters=[
                    query("user_id", _ID, "only this user's keys"),
                    query("include_revoked", {"type": "boolean"}, "default true"),
                    _AFTER,
                    _LIMIT,
                ],
            ),
        },
        "/admin/keys/{key_id}": {
            "get": op(
                "getKey",
                "Read a key's metadata",
                responses("200", "Key", "404"),
                parameters=key,
            )
        },
        "/admin/keys/{key_id}/revoke": {
            "post": op(
                "revokeKey",
                "Revoke a key",
                responses("200", "Key", "404"),
                parameters=key,
            )
        },
        "/admin/keys/{key_id}/rotate": {
            "post": op(
                "rotateKey",
                "New secret for the same key; the old one stops working at once",
                responses("200", "IssuedKey", "400", "404"),
                parameters=key,
            )
        },
        "/admin/usage": {
            "get": op(
                "usage",
                "Usage totals per group",
                responses("200", "UsageReport", "400"),
                parameters=[
                    *_RANGE,
                    query("group_by", {"enum": list(GROUP_BY_OPTIONS)}, "default day"),
                    *_WHO,
                ],
            )
        },
        "/admin/usage/records": {
            "get": op(
                "usageRecords",
                "Raw usage records, oldest first",
                responses("200", "UsageRecordPage", "400"),
                parameters=[*_RANGE, *_WHO, _LIMIT],
            )
        },
        "/admin/end-users/export": {
            "post": op(
                "exportEndUser",
                "The usage records of one end user of your clients (OpenAI `user`, "
                "Anthropic `metadata.user_id`), as the client sent it",
                responses("200", "EndUserExport", "400"),
                requestBody=body("EndUserRef"),
            )
        },
        "/admin/end-users/erase": {
            "post": op(
                "eraseEndUser",
                "Remove one end user from every record; the records stay, so billing "
                "totals do not change",
                responses("200", "EndUserEraseResult", "400"),
                requestBody=body("EndUserRef"),
            )
        },
        "/admin/audit": {
            "get": op(
                "auditLog",
                "The audit log, newest first",
                responses("200", "AuditPage", "400"),
                parameters=[
                    query("target", _ID, "a user or key id"),
                    query("user_id", _ID, "entries about this user"),
                    query("actor", _ID, "admin:<name>, cli:<account>, key:<id>, retention"),
                    query("action", _ID, "e.g. user.erase"),
                    query(
                        "before",
                        {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
                        "page backwards from this seq",
                    ),
                    _LIMIT,
                ],
            )
        },
        "/admin/openapi.json": {"get": op("openapi", "This document", responses("200", None))},
        **openapi_rights.paths(),
    }


@functools.cache
def _cached() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "NitroProxy admin API",
            "version": __version__,
            "description": "Users, keys, usage, statements, the audit log and users' data "
            "rights. Every route takes an admin key (NITROPROXY_ADMIN_KEY, one named in "
            "auth.admin_keys, or one made by `nitroproxy admins create NAME`) as "
            "'Authorization: Bearer <key>' or 'x-api-key: <key>'; the key's name is the actor "
            "of every audit entry the call causes.",
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": _paths(),
    }


def document() -> dict[str, Any]:
    """The document (a shared, cached dict: do not mutate)."""
    return _cached()
