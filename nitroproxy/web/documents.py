"""Exports and statements as the response the caller asked for: JSON, or CSV.

Each form is read from the query string before the work runs, so a bad value is a 400 and
nothing is exported (or audited)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from nitroproxy.core.errors import InvalidRequest
from nitroproxy.core.statements import Statement, parse_period
from nitroproxy.reports.export import CSV_PARTS, export_csv
from nitroproxy.reports.statements import statements_csv, statements_json
from nitroproxy.web import params

FORMATS = ("json", "csv")


@dataclass(frozen=True, slots=True)
class ExportForm:
    """``?format=json`` (default) or ``?format=csv&part=usage_records|daily_aggregates|
    billing_lines``. Read before the export runs, so a bad value is a 400 and no export."""

    format: str
    part: str

    @classmethod
    def of(cls, request: web.Request) -> ExportForm:
        fmt = params.query_choice(request, "format", FORMATS, "json") or "json"
        part = params.query_choice(request, "part", tuple(CSV_PARTS), "usage_records")
        return cls(fmt, part or "usage_records")

    def response(self, document: dict[str, Any]) -> web.Response:
        if self.format == "csv":
            return web.Response(
                text=export_csv(document, self.part),
                content_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{self.part}.csv"'},
            )
        return web.json_response(document)


@dataclass(frozen=True, slots=True)
class StatementForm:
    """``?period=YYYY-MM`` (one month; default every month held) and ``?format=json|csv``."""

    period: str | None
    format: str

    @classmethod
    def of(cls, request: web.Request) -> StatementForm:
        period = params.query_text(request, "period", max_length=7)
        if period is not None:
            try:
                parse_period(period)
            except ValueError as exc:
                raise InvalidRequest(str(exc), param="period") from None
        return cls(period, params.query_choice(request, "format", FORMATS, "json") or "json")

    def response(self, subject: str, found: list[Statement]) -> web.Response:
        if self.format == "csv":
            return web.Response(
                text=statements_csv(found),
                content_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="statements.csv"'},
            )
        return web.json_response(statements_json(subject, found))
