"""UTC days and months: the one definition of "which day" for budgets, roll-ups, retention
and reports.

A day is ``floor(ts / 86400)`` in Unix time (UTC, no leap seconds), named ``YYYY-MM-DD``;
a month is the ``YYYY-MM`` prefix of its days' names. SQL that groups by day must agree:
``store.usage.DAY_SQL`` computes the same name from ``ts`` with integer arithmetic.
"""

from __future__ import annotations

import functools
import math
from datetime import date, timedelta

DAY_S = 86_400.0
_EPOCH = date(1970, 1, 1)


def day_number(ts: float) -> int:
    """Days since 1970-01-01 UTC of the day containing ``ts``."""
    return math.floor(ts) // 86_400


def day_start(ts: float) -> float:
    """Start (00:00 UTC) of the day containing ``ts``."""
    return float(day_number(ts) * 86_400)


@functools.lru_cache(maxsize=256)
def _name(number: int) -> str:
    return (_EPOCH + timedelta(days=number)).isoformat()


def day_of(ts: float) -> str:
    """UTC date of ``ts`` as ``YYYY-MM-DD`` (cached: the hot path asks for today often)."""
    return _name(day_number(ts))


def month_of(ts: float) -> str:
    """UTC month of ``ts`` as ``YYYY-MM``."""
    return day_of(ts)[:7]


def day_ceil(ts: float) -> str:
    """UTC date of the first day that starts at or after ``ts``."""
    n = day_number(ts)
    if n * 86_400 < ts:
        n += 1
    return _name(n)
