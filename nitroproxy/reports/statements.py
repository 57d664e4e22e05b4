"""Statements rendered: the JSON document of ``/statements`` routes and CLI, and CSV.

Money appears twice on every line: ``cost_nanos`` (integer nanodollars, exact) and
``cost_usd`` (the same amount as an exact decimal string). Nothing goes through a float.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from nitroproxy.core.statements import COUNT_FIELDS, Statement, Totals, usd

__all__ = ["CSV_COLUMNS", "statement_json", "statements_csv", "statements_json"]

CURRENCY = "USD"
CSV_COLUMNS: tuple[str, ...] = (
    "subject",
    "period",
    "line",
    "model",
    *COUNT_FIELDS,
    "cost_usd",
)


def _totals(totals: Totals) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(totals, name) for name in COUNT_FIELDS}
    values["cost_usd"] = usd(totals.cost_nanos)
    return values


def statement_json(statement: Statement) -> dict[str, Any]:
    return {
        "object": "statement",
        "subject": statement.subject,
        "period": statement.period,
        "start": statement.start_day,
        "end": statement.end_day,
        "currency": CURRENCY,
        "lines": [{"model": line.model, **_totals(line.totals)} for line in statement.lines],
        "total": _totals(statement.total),
    }


def statements_json(subject: str, found: Sequence[Statement]) -> dict[str, Any]:
    """The list document: every month with usage, oldest first."""
    return {
        "object": "list",
        "subject": subject,
        "currency": CURRENCY,
        "data": [statement_json(s) for s in found],
    }


def statements_csv(found: Sequence[Statement]) -> str:
    """One row per model line and one ``total`` row per period (its ``model`` is empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in found:
        for line in s.lines:
            writer.writerow([s.subject, s.period, "model", line.model, *_row(line.totals)])
        writer.writerow([s.subject, s.period, "total", "", *_row(s.total)])
    return out.getvalue()


def _row(totals: Totals) -> list[Any]:
    return [*(getattr(totals, name) for name in COUNT_FIELDS), usd(totals.cost_nanos)]
