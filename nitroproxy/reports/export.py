"""The export document in portable forms: its usage tables as CSV, and its JSON Schema.

``GET .../export`` answers JSON (the whole document, ``nitroproxy.export.v2``) or, with
``format=csv``, one of its tables as CSV (``part``: ``usage_records``, the default,
``daily_aggregates`` or ``billing_lines``): one header row of column names, one row per
entry, empty cells for nulls. The JSON Schema (draft 2020-12) describes both documents an
export can be (a user's, a key's); it is served at ``/privacy/export.schema.json`` and
printed by ``nitroproxy export-schema``, and the tests validate real exports against it.
"""

from __future__ import annotations

import copy
import csv
import functools
import io
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from nitroproxy.core.types import UsageRecord
from nitroproxy.reports import openapi
from nitroproxy.store.billing import BILLING_COLUMNS
from nitroproxy.store.rights import EXPORT_FORMAT

__all__ = ["CSV_PARTS", "export_csv", "schema"]

SCHEMA_ID = f"urn:nitroproxy:{EXPORT_FORMAT}"
_DAILY = (
    "day",
    "user_id",
    "key_id",
    "model",
    "provider",
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nanos",
)
CSV_PARTS: Mapping[str, tuple[str, ...]] = {
    "usage_records": tuple(f.name for f in fields(UsageRecord)),
    "daily_aggregates": _DAILY,
    "billing_lines": BILLING_COLUMNS,
}


def export_csv(document: Mapping[str, Any], part: str = "usage_records") -> str:
    """One table of an export document as CSV (booleans as true/false, nulls empty)."""
    columns: Sequence[str] = CSV_PARTS[part]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in document[part]:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _rewrite(node: Any) -> Any:
    """OpenAPI component references become references into this schema's ``$defs``."""
    if isinstance(node, dict):
        return {
            k: v.replace("#/components/schemas/", "#/$defs/") if k == "$ref" else _rewrite(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


@functools.cache
def _schema() -> dict[str, Any]:
    components = copy.deepcopy(openapi.document()["components"]["schemas"])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"NitroProxy data export ({EXPORT_FORMAT})",
        "description": "Everything NitroProxy holds about one user (GET /admin/users/{id}/"
        "export, `nitroproxy users export ID`) or about one API key (GET /v1/me/export). "
        "Times are Unix seconds (UTC) unless named `day` (YYYY-MM-DD, a UTC day); money is "
        "integer nanodollars (`cost_nanos`, 1e-9 USD). `usage_records` are the raw records "
        "still held (the last retention.requests); older usage is in `daily_aggregates` "
        "(analytics, absent for people who object) and `billing_lines` (what is owed, kept "
        "for tax). `audit` lists the admin actions about the subject, oldest first.",
        "oneOf": [{"$ref": "#/$defs/UserExport"}, {"$ref": "#/$defs/KeyExport"}],
        "$defs": _rewrite(components),
    }


def schema() -> dict[str, Any]:
    """The JSON Schema of the export document (a shared, cached dict: do not mutate)."""
    return _schema()
