"""Spend and reservations per scope (a key, or one end user of a key) by UTC day, in
nano-USD, for budget checks without a database read on the hot path.

A request in flight holds a reservation (its worst case) on the day it was admitted; when it
settles, the reservation is released and the actual cost added on the same day. Budgets are
checked against spent + reserved, so concurrent requests cannot all pass a check that only
the first of them should.
"""

from __future__ import annotations

from collections import defaultdict

from nitroproxy.core.days import day_of, month_of

_KEEP_DAYS = 40


class SpendBook:
    """Running totals in nano-USD per scope and UTC day; a month is the sum of its days."""

    def __init__(self) -> None:
        self._days: defaultdict[str, dict[str, int]] = defaultdict(dict)
        self._reserved: dict[str, dict[str, int]] = {}

    def add(self, key: str, ts: float, nanos: int) -> None:
        if nanos <= 0:
            return
        days = self._days[key]
        day = day_of(ts)
        days[day] = days.get(day, 0) + nanos
        if len(days) > _KEEP_DAYS:
            for old in sorted(days)[: len(days) - _KEEP_DAYS]:
                del days[old]

    def reserve(self, key: str, ts: float, nanos: int) -> None:
        if nanos <= 0:
            return
        days = self._reserved.setdefault(key, {})
        day = day_of(ts)
        days[day] = days.get(day, 0) + nanos

    def release(self, key: str, ts: float, nanos: int) -> None:
        """Give back a reservation made with :meth:`reserve` at the same ``ts``."""
        days = self._reserved.get(key)
        if nanos <= 0 or days is None:
            return
        day = day_of(ts)
        left = days.get(day, 0) - nanos
        if left > 0:
            days[day] = left
        else:
            days.pop(day, None)
            if not days:
                del self._reserved[key]

    def seed(self, key: str, day: str, nanos: int) -> None:
        """Set a day's total from the store at start-up (replaces, so seeding is idempotent)."""
        self._days[key][day] = nanos

    def totals(self, key: str, now: float) -> tuple[float, float]:
        """Spent (today, this month) in USD, for the UTC day and month that contain ``now``."""
        day, month = self._sums(self._days.get(key), now)
        return day / 1e9, month / 1e9

    def committed(self, key: str, now: float) -> tuple[float, float]:
        """Spent plus reserved (today, this month) in USD: what budgets are checked against."""
        day, month = self._sums(self._days.get(key), now)
        held_day, held_month = self._sums(self._reserved.get(key), now)
        return (day + held_day) / 1e9, (month + held_month) / 1e9

    def reserved_nanos(self, key: str) -> int:
        return sum((self._reserved.get(key) or {}).values())

    @staticmethod
    def _sums(days: dict[str, int] | None, now: float) -> tuple[int, int]:
        if not days:
            return 0, 0
        today, month = day_of(now), month_of(now)
        return days.get(today, 0), sum(n for d, n in days.items() if d.startswith(month))
