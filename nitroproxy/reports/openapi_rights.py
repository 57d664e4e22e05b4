"""The admin API's document, for the privacy routes: statements, closure, and the schemas
that exports and statements share (``reports/openapi.py`` merges them in; the export's
JSON Schema, ``reports/export.py``, is built from the same components)."""

from __future__ import annotations

from typing import Any

from nitroproxy.core.statements import COUNT_FIELDS
from nitroproxy.reports.openapi_parts import (
    BOOL,
    INT,
    NUM,
    PERIOD,
    STR,
    TOKENS,
    obj,
    op,
    path,
    query,
    ref,
    responses,
)
from nitroproxy.store.rights import EXPORT_FORMAT

__all__ = ["paths", "schemas"]

STATEMENT_COUNTS: dict[str, Any] = {
    **{name: INT for name in COUNT_FIELDS},
    "cost_usd": {"type": "string", "pattern": r"^-?\d+\.\d{9}$"},
}


def schemas() -> dict[str, Any]:
    return {
        "BillingLine": obj(
            {
                "day": STR,
                "user_id": STR,
                "key_id": STR,
                "model": STR,
                **{c: INT for c in ("requests", *TOKENS, "cost_nanos")},
            }
        ),
        "Preferences": obj(
            {"analytics": BOOL, "cache": BOOL},
        ),
        "KeyExport": obj(
            {
                "format": {"const": EXPORT_FORMAT},
                "exported_at": NUM,
                "key": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {"id": STR},
                },
                "preferences": ref("Preferences"),
                "usage_records": {"type": "array", "items": ref("UsageRecord")},
                "daily_aggregates": {"type": "array", "items": ref("DailyAggregate")},
                "billing_lines": {"type": "array", "items": ref("BillingLine")},
                "audit": {"type": "array", "items": ref("AuditEntry")},
            }
        ),
        "StatementTotals": obj(STATEMENT_COUNTS),
        "StatementLine": obj({"model": STR, **STATEMENT_COUNTS}),
        "Statement": obj(
            {
                "object": {"const": "statement"},
                "subject": STR,
                "period": {"type": "string", "pattern": PERIOD},
                "start": STR,
                "end": STR,
                "currency": {"const": "USD"},
                "lines": {"type": "array", "items": ref("StatementLine")},
                "total": ref("StatementTotals"),
            }
        ),
        "StatementList": obj(
            {
                "object": {"const": "list"},
                "subject": STR,
                "currency": {"const": "USD"},
                "data": {"type": "array", "items": ref("Statement")},
            }
        ),
    }


def paths() -> dict[str, Any]:
    user = [path("user_id")]
    return {
        "/admin/users/{user_id}/statements": {
            "get": op(
                "userStatements",
                "Monthly statements (a line per model, the total) from the billing lines; "
                "an erased user's are found under its billing pseudonyms, and a pseudonym "
                "may be given as the id",
                responses("200", "StatementList", "400", "404", csv=True),
                parameters=[
                    *user,
                    query("period", {"type": "string", "pattern": PERIOD}, "one month"),
                    query("format", {"enum": ["json", "csv"]}, "default json"),
                ],
            )
        },
        "/admin/users/{user_id}/close": {
            "post": op(
                "closeUser",
                "Close the account: its keys stop at once; it is erased after "
                "retention.closed_accounts unless reactivated (PATCH status active)",
                responses("200", "User", "400", "404"),
                parameters=user,
            )
        },
    }
