"""Monthly statements: what a user owes per UTC month, a line per model, and the total.

Pure: rows of (period, model, counts) in, statements out. Money stays integer nanodollars
(``cost_nanos``) from the records to the total; ``usd`` writes it as an exact decimal
string, never through a float. A period is a UTC calendar month, ``YYYY-MM``, matching the
days of ``core.days`` (a month's statement holds exactly the records whose UTC day is in it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime

__all__ = [
    "COUNT_FIELDS",
    "Statement",
    "StatementLine",
    "Totals",
    "build",
    "month_bounds",
    "parse_period",
    "period_days",
    "usd",
]

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_nanos: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(getattr(self, n) + getattr(other, n) for n in COUNT_FIELDS))


COUNT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Totals))


@dataclass(frozen=True, slots=True)
class StatementLine:
    model: str
    totals: Totals


@dataclass(frozen=True, slots=True)
class Statement:
    """One subject's month: ``lines`` sorted by model, ``total`` their sum."""

    subject: str
    period: str
    lines: tuple[StatementLine, ...]
    total: Totals

    @property
    def start_day(self) -> str:
        return period_days(self.period)[0]

    @property
    def end_day(self) -> str:
        """The first day after the period (exclusive end)."""
        return period_days(self.period)[1]


def parse_period(value: str) -> str:
    """``YYYY-MM`` or a ``ValueError`` saying so."""
    if not _PERIOD.match(value):
        raise ValueError(f"a period is a month as YYYY-MM, got {value!r}")
    return value


def period_days(period: str) -> tuple[str, str]:
    """The period's first day and the next period's first day, as ``YYYY-MM-DD``."""
    year, month = int(parse_period(period)[:4]), int(period[5:])
    year_after, month_after = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{period}-01", f"{year_after:04d}-{month_after:02d}-01"


def month_bounds(period: str) -> tuple[float, float]:
    """Unix seconds of the period's first instant and of the next period's."""
    year, month = int(parse_period(period)[:4]), int(period[5:])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start.timestamp(), end.timestamp()


def build(subject: str, rows: Iterable[Sequence[object]]) -> list[Statement]:
    """Statements from rows ``(period, model, requests, prompt_tokens, completion_tokens,
    cached_tokens, cache_write_tokens, reasoning_tokens, cost_nanos)``; rows of one (period,
    model) are added together. Oldest period first."""
    periods: dict[str, dict[str, Totals]] = {}
    for row in rows:
        period, model = str(row[0]), str(row[1])
        counts = Totals(*(_int(v) for v in row[2 : 2 + len(COUNT_FIELDS)]))
        models = periods.setdefault(period, {})
        models[model] = models.get(model, Totals()) + counts
    out = []
    for period in sorted(periods):
        lines = tuple(StatementLine(m, t) for m, t in sorted(periods[period].items()))
        total = sum((line.totals for line in lines), Totals())
        out.append(Statement(subject, period, lines, total))
    return out


def usd(nanos: int) -> str:
    """Integer nanodollars as an exact decimal string with nine places: ``1.500000000``."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), 10**9)
    return f"{sign}{whole}.{frac:09d}"


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"statement counts are integers, got {value!r}")
    return value
