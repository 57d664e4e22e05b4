"""Usage reports: totals from the store, rendered as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from nitroproxy.config import Settings
from nitroproxy.core.money import usd
from nitroproxy.store.db import open_db
from nitroproxy.store.pg.reports import PgReports
from nitroproxy.store.usage import UsageRow, query_usage

COLUMNS = (
    "group",
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
)


def parse_time(value: str | None) -> float | None:
    """An ISO date or datetime; naive values are UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO date or datetime: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def row_dict(row: UsageRow) -> dict[str, Any]:
    return {
        name: round(row.cost_usd, 9) if name == "cost_usd" else getattr(row, name)
        for name in COLUMNS
    }


def render(
    rows: Sequence[UsageRow], fmt: str, group_by: str, names: Mapping[str, str] | None = None
) -> str:
    """``names`` labels groups in the table (a key's name for its id); JSON and CSV keep
    the ids, which are what programs join on."""
    dicts = [row_dict(r) for r in rows]
    if fmt == "json":
        return orjson.dumps(
            {"group_by": group_by, "rows": dicts}, option=orjson.OPT_INDENT_2
        ).decode()
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(dicts)
        return out.getvalue().rstrip("\n")
    header = [group_by if c == "group" else c for c in COLUMNS]
    labels = names or {}
    cells = [[_cell(c, d[c], labels) for c in COLUMNS] for d in dicts]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    return "\n".join(lines) if cells else lines[0] + "\n(no usage in this range)"


def _cell(column: str, value: Any, names: Mapping[str, str]) -> str:
    if column == "cost_usd":
        return usd(value)
    if column == "group":
        return names.get(value, value) or "(none)"
    return str(value)


async def _key_names(conn: Any) -> dict[str, str]:
    """Key id -> "name (prefix)" for the table: names need not be unique, prefixes are what
    the key's holder sees. A config-file key's id is already ``cfg:NAME``."""
    async with conn.execute("SELECT id, name, prefix FROM api_keys") as cursor:
        rows = await cursor.fetchall()
    return {str(key_id): f"{name} ({prefix})" for key_id, name, prefix in rows}


async def usage_report(
    settings: Settings, start: str | None, end: str | None, group_by: str, fmt: str
) -> str:
    conn = await open_db(settings.storage.path)
    try:
        filters: dict[str, Any] = {
            "start": parse_time(start),
            "end": parse_time(end),
            "group_by": group_by,
        }
        if settings.storage.backend == "postgres":  # the records are there
            rows = await PgReports(settings.storage.url).query_usage(**filters)
        else:
            rows = await query_usage(conn, **filters)
        names = await _key_names(conn) if group_by == "key" and fmt == "table" else {}
    finally:
        await conn.close()
    return render(rows, fmt, group_by, names)
