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
from nitroproxy.core.statements import COUNT_FIELDS
from nitroproxy.core.types import UsageRecord
from nitroproxy.reports.usage import COLUMNS as USAGE_COLUMNS
from nitroproxy.store.rights import EXPORT_FORMAT
from nitroproxy.store.usage import GROUP_BY_OPTIONS

__all__ = ["document"]

_MAX_INT = 2**53
_TEXT = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"}
_EMAIL = {"type": "string", "maxLength": 254, "pattern": r"^[^@\s]+@[^@\s]+$"}
_TIER = {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"\S"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": False,
    }


def _page(item: str) -> dict[str, Any]:
    return _obj(
        {
            "data": {"type": "array", "items": _ref(item)},
            "has_more": {"type": "boolean"},
        }
    )


_INT = {"type": "integer"}
_NUM = {"type": "number"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_PERIOD = r"^\d{4}-(0[1-9]|1[0-2])$"
_STATEMENT_COUNTS: dict[str, Any] = {
    **{name: _INT for name in COUNT_FIELDS},
    "cost_usd": {"type": "string", "pattern": r"^-?\d+\.\d{9}$"},
}
_LIMIT_SCHEMA = {
    True: {"type": "integer", "minimum": 1, "maximum": _MAX_INT},
    False: {"type": "number", "minimum": 0, "maximum": 1e12},
}
_KEY_PROPS: dict[str, Any] = {
    "id": _STR,
    "prefix": _STR,
    "name": _STR,
    "user_id": _null(_STR),
    "models": _null({"type": "array", "items": _STR}),
    **{name: _null(_INT if name in INTEGER_LIMITS else _NUM) for name in LIMIT_FIELDS},
    "expires_at": _null(_INT),
    "cache": {"type": "boolean"},
    "revoked": {"type": "boolean"},
    "created": _INT,
    "updated": _INT,
}
_PY_TYPES = {"str": _STR, "int": _INT, "float": _NUM, "bool": {"type": "boolean"}}


def _record_schema() -> dict[str, Any]:
    props: dict[str, Any] = {}
    for f in fields(UsageRecord):
        kind = str(f.type).replace(" ", "")
        base = kind.removesuffix("|None")
        schema = _PY_TYPES[base]
        props[f.name] = _null(schema) if kind.endswith("|None") else schema
    return _obj(props)


def _schemas() -> dict[str, Any]:
    counts = {c: _INT for c in USAGE_COLUMNS if c not in ("group", "cost_usd")}
    daily = {
        "day": _STR,
        "user_id": _STR,
        "key_id": _STR,
        "model": _STR,
        "provider": _STR,
    }
    return {
        "Error": _obj(
            {
                "error": _obj(
                    {
                        "message": _STR,
                        "type": _STR,
                        "param": _null(_STR),
                        "code": _null(_STR),
                    }
                )
            }
        ),
        "User": _obj(
            {
                "id": _STR,
                "name": _null(_STR),
                "email": _null(_STR),
                "tier": _STR,
                "status": {"enum": ["active", "suspended", "erased"]},
                "created": _INT,
                "updated": _INT,
                "closed_at": _null(_INT),
                "analytics": _BOOL,
                "cache": _BOOL,
            }
        ),
        "UserCreate": _obj(
            {"name": _null(_TEXT), "email": _null(_EMAIL), "tier": _TIER}, required=[]
        ),
        "UserUpdate": _obj(
            {
                "name": _null(_TEXT),
                "email": _null(_EMAIL),
                "tier": _TIER,
                "status": {"enum": ["active", "suspended"]},
                "analytics": _null(_BOOL),
                "cache": _null(_BOOL),
            },
            required=[],
        ),
        "Key": _obj(_KEY_PROPS),
        "IssuedKey": _obj({**_KEY_PROPS, "secret": _STR}),
        "KeyCreate": _obj(
            {
                "name": _TEXT,
                "user_id": _null({**_TEXT, "maxLength": 100}),
                "models": _null({"type": "array", "items": _TEXT, "minItems": 1, "maxItems": 100}),
                **{name: _null(_LIMIT_SCHEMA[name in INTEGER_LIMITS]) for name in LIMIT_FIELDS},
                "expires_at": _null({"type": "integer", "minimum": 0, "maximum": _MAX_INT}),
                "cache": {"type": "boolean"},
            },
            required=["name"],
        ),
        "UserPage": _page("User"),
        "KeyPage": _page("Key"),
        "AuditPage": _page("AuditEntry"),
        "UsageRecord": _record_schema(),
        "UsageRecordPage": _page("UsageRecord"),
        "UsageRow": _obj({"group": _STR, **counts, "cost_usd": _NUM}),
        "UsageReport": _obj(
            {
                "group_by": {"enum": list(GROUP_BY_OPTIONS)},
                "from": _null(_NUM),
                "to": _null(_NUM),
                "rows": {"type": "array", "items": _ref("UsageRow")},
            }
        ),
        "DailyAggregate": _obj(
            {
                **daily,
                **{c: _INT for c in ("requests", "errors", *_TOKENS, "cost_nanos")},
            }
        ),
        "AuditEntry": _obj(
            {
                "seq": _INT,
                "ts": _NUM,
                "actor": _STR,
                "action": _STR,
                "target": _null(_STR),
                "user_id": _null(_STR),
                "detail": {"type": "object"},
            }
        ),
        "BillingLine": _obj(
            {
                "day": _STR,
                "user_id": _STR,
                "key_id": _STR,
                "model": _STR,
                **{c: _INT for c in ("requests", *_TOKENS, "cost_nanos")},
            }
        ),
        "Preferences": _obj(
            {"analytics": _BOOL, "cache": _BOOL},
        ),
        "UserExport": _obj(
            {
                "format": {"const": EXPORT_FORMAT},
                "exported_at": _NUM,
                "user": _ref("User"),
                "preferences": _ref("Preferences"),
                "keys": {"type": "array", "items": _ref("Key")},
                "usage_records": {"type": "array", "items": _ref("UsageRecord")},
                "daily_aggregates": {"type": "array", "items": _ref("DailyAggregate")},
                "billing_lines": {"type": "array", "items": _ref("BillingLine")},
                "audit": {"type": "array", "items": _ref("AuditEntry")},
            }
        ),
        "EndUserRef": _obj(
            {"end_user": {"type": "string", "minLength": 1, "maxLength": 256}},
            required=["end_user"],
        ),
        "EndUserExport": _obj(
            {
                "format": {"const": "nitroproxy.end_user_export.v1"},
                "exported_at": _NUM,
                "end_user": _null(_STR),
                "usage_records": {"type": "array", "items": _ref("UsageRecord")},
            }
        ),
        "EndUserEraseResult": _obj(
            {"usage_records_cleared": _INT, "wal_truncated": {"type": "boolean"}}
        ),
        "KeyExport": _obj(
            {
                "format": {"const": EXPORT_FORMAT},
                "exported_at": _NUM,
                "key": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {"id": _STR},
                },
                "preferences": _ref("Preferences"),
                "usage_records": {"type": "array", "items": _ref("UsageRecord")},
                "daily_aggregates": {"type": "array", "items": _ref("DailyAggregate")},
                "billing_lines": {"type": "array", "items": _ref("BillingLine")},
                "audit": {"type": "array", "items": _ref("AuditEntry")},
            }
        ),
        "StatementTotals": _obj(_STATEMENT_COUNTS),
        "StatementLine": _obj({"model": _STR, **_STATEMENT_COUNTS}),
        "Statement": _obj(
            {
                "object": {"const": "statement"},
                "subject": _STR,
                "period": {"type": "string", "pattern": _PERIOD},
                "start": _STR,
                "end": _STR,
                "currency": {"const": "USD"},
                "lines": {"type": "array", "items": _ref("StatementLine")},
                "total": _ref("StatementTotals"),
            }
        ),
        "StatementList": _obj(
            {
                "object": {"const": "list"},
                "subject": _STR,
                "currency": {"const": "USD"},
                "data": {"type": "array", "items": _ref("Statement")},
            }
        ),
        "EraseResult": _obj(
            {
                "user_id": _STR,
                "keys_deleted": _INT,
                "usage_records_deleted": _INT,
                "daily_aggregates_pseudonymized": _INT,
                "wal_truncated": _BOOL,
                "billing_pseudonym": _STR,
                "billing_lines_pseudonymized": _INT,
            }
        ),
    }


_TOKENS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
_ERRORS = {
    "400": "invalid input; `error.param` names it",
    "401": "no key, or an unknown, revoked or expired key",
    "403": "a valid key that is not the admin key",
    "404": "no such user or key",
}


def _responses(ok: str, schema: str | None, *errors: str, csv: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _ref(schema) if schema else {}}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    out: dict[str, Any] = {ok: {"description": "success", "content": content}}
    for status in ("401", "403", *errors):
        out[status] = {
            "description": _ERRORS[status],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    return out


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def _path(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
    }


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


_ID = {"type": "string", "minLength": 1, "maxLength": 200}
_LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size (100)")
_AFTER = _query("after", _ID, "the last id of the previous page")
_TIME = {"type": "string", "minLength": 1}
_RANGE = [
    _query("from", _TIME, "ISO date or datetime (UTC), inclusive"),
    _query("to", _TIME, "ISO date or datetime (UTC), exclusive"),
]
_WHO = [
    _query("user_id", _ID, "only this user"),
    _query("key_id", _ID, "only this key"),
]


def _op(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"operationId": op_id, "summary": summary, "responses": responses, **extra}


def _paths() -> dict[str, Any]:
    user, key = [_path("user_id")], [_path("key_id")]
    return {
        "/admin/users": {
            "post": _op(
                "createUser",
                "Create a user (name and email need NITROPROXY_DATA_KEY)",
                _responses("201", "User", "400"),
                requestBody=_body("UserCreate"),
            ),
            "get": _op(
                "listUsers",
                "List users, oldest first",
                _responses("200", "UserPage", "400"),
                parameters=[
                    _query("status", {"enum": ["active", "suspended", "erased"]}, "filter"),
                    _query(
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
            "get": _op(
                "getUser",
                "Read a user",
                _responses("200", "User", "404"),
                parameters=user,
            ),
            "patch": _op(
                "updateUser",
                "Rectify name or email (null clears), change tier, suspend or reactivate",
                _responses("200", "User", "400", "404"),
                parameters=user,
                requestBody=_body("UserUpdate"),
            ),
            "delete": _op(
                "eraseUser",
                "Erase: wipe profile, delete keys and records, pseudonymize aggregates",
                _responses("200", "EraseResult", "404"),
                parameters=user,
            ),
        },
        "/admin/users/{user_id}/export": {
            "get": _op(
                "exportUser",
                "Everything held about the user, as one JSON document (schema: "
                "/privacy/export.schema.json), or one of its usage tables as CSV",
                _responses("200", "UserExport", "400", "404", csv=True),
                parameters=[
                    *user,
                    _query("format", {"enum": ["json", "csv"]}, "default json"),
                    _query(
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
        "/admin/users/{user_id}/statements": {
            "get": _op(
                "userStatements",
                "Monthly statements (a line per model, the total) from the billing lines; "
                "an erased user's are found under its billing pseudonyms, and a pseudonym "
                "may be given as the id",
                _responses("200", "StatementList", "400", "404", csv=True),
                parameters=[
                    *user,
                    _query("period", {"type": "string", "pattern": _PERIOD}, "one month"),
                    _query("format", {"enum": ["json", "csv"]}, "default json"),
                ],
            )
        },
        "/admin/users/{user_id}/close": {
            "post": _op(
                "closeUser",
                "Close the account: its keys stop at once; it is erased after "
                "retention.closed_accounts unless reactivated (PATCH status active)",
                _responses("200", "User", "400", "404"),
                parameters=user,
            )
        },
        "/admin/keys": {
            "post": _op(
                "createKey",
                "Create a key; the response holds its secret, shown this once",
                _responses("201", "IssuedKey", "400"),
                requestBody=_body("KeyCreate"),
            ),
            "get": _op(
                "listKeys",
                "List keys (metadata only), oldest first",
                _responses("200", "KeyPage", "400"),
                parameters=[
                    _query("user_id", _ID, "only this user's keys"),
                    _query("include_revoked", {"type": "boolean"}, "default true"),
                    _AFTER,
                    _LIMIT,
                ],
            ),
        },
        "/admin/keys/{key_id}": {
            "get": _op(
                "getKey",
                "Read a key's metadata",
                _responses("200", "Key", "404"),
                parameters=key,
            )
        },
        "/admin/keys/{key_id}/revoke": {
            "post": _op(
                "revokeKey",
                "Revoke a key",
                _responses("200", "Key", "404"),
                parameters=key,
            )
        },
        "/admin/keys/{key_id}/rotate": {
            "post": _op(
                "rotateKey",
                "New secret for the same key; the old one stops working at once",
                _responses("200", "IssuedKey", "400", "404"),
                parameters=key,
            )
        },
        "/admin/usage": {
            "get": _op(
                "usage",
                "Usage totals per group",
                _responses("200", "UsageReport", "400"),
                parameters=[
                    *_RANGE,
                    _query("group_by", {"enum": list(GROUP_BY_OPTIONS)}, "default day"),
                    *_WHO,
                ],
            )
        },
        "/admin/usage/records": {
            "get": _op(
                "usageRecords",
                "Raw usage records, oldest first",
                _responses("200", "UsageRecordPage", "400"),
                parameters=[*_RANGE, *_WHO, _LIMIT],
            )
        },
        "/admin/end-users/export": {
            "post": _op(
                "exportEndUser",
                "The usage records of one end user of your clients (OpenAI `user`, "
                "Anthropic `metadata.user_id`), as the client sent it",
                _responses("200", "EndUserExport", "400"),
                requestBody=_body("EndUserRef"),
            )
        },
        "/admin/end-users/erase": {
            "post": _op(
                "eraseEndUser",
                "Remove one end user from every record; the records stay, so billing "
                "totals do not change",
                _responses("200", "EndUserEraseResult", "400"),
                requestBody=_body("EndUserRef"),
            )
        },
        "/admin/audit": {
            "get": _op(
                "auditLog",
                "The audit log, newest first",
                _responses("200", "AuditPage", "400"),
                parameters=[
                    _query("target", _ID, "a user or key id"),
                    _query("user_id", _ID, "entries about this user"),
                    _query("actor", _ID, "admin:<name>, cli:<account>, key:<id>, retention"),
                    _query("action", _ID, "e.g. user.erase"),
                    _query(
                        "before",
                        {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
                        "page backwards from this seq",
                    ),
                    _LIMIT,
                ],
            )
        },
        "/admin/openapi.json": {"get": _op("openapi", "This document", _responses("200", None))},
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
