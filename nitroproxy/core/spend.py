"""Spend per key by UTC day, for budget checks without a database read on the hot path."""

from __future__ import annotations

from collections import defaultdict

from nitroproxy.core.days import day_of, month_of

_KEEP_DAYS = 40


class SpendBook:
    """Running totals in nano-USD per key and UTC day; a month is the sum of its days."""

    def __init__(self) -> None:
        self._days: defaultdict[str, dict[str, int]] = defaultdict(dict)

    def add(self, key: str, ts: float, nanos: int) -> None:
        if nanos <= 0:
            return
        days = self._days[key]
        day = day_of(ts)
        days[day] = days.get(day, 0) + nanos
        if len(days) > _KEEP_DAYS:
            for old in sorted(days)[: len(days) - _KEEP_DAYS]:
                del days[old]

    def seed(self, key: str, day: str, nanos: int) -> None:
        """Set a day's total from the store at start-up (replaces, so seeding is idempotent)."""
        self._days[key][day] = nanos

    def totals(self, key: str, now: float) -> tuple[float, float]:
        """(today, this month) in USD, for the UTC day and month that contain ``now``."""
        days = self._days.get(key)
        if not days:
            return 0.0, 0.0
        today = day_of(now)
        month = month_of(now)
        month_nanos = sum(n for d, n in days.items() if d.startswith(month))
        return days.get(today, 0) / 1e9, month_nanos / 1e9
