"""Spend and reservations per scope (a key, or one end user of a key) by UTC day, in
nano-USD, for budget checks without a database read on the hot path.

A request in flight holds a reservation (its worst case) on the day it was admitted; when it
settles, the reservation is released and the actual cost added on the same day. Budgets are
checked against spent + reserved, so concurrent requests cannot all pass a check that only
the first of them should. Month totals are kept as they change, so a check costs two
dictionary reads, not a walk over the month's days.
"""

from __future__ import annotations

from nitroproxy.core.days import day_of

_KEEP_DAYS = 40


class _Ledger:
    """Nano-USD per UTC day (``YYYY-MM-DD``) and per month (``YYYY-MM``)."""

    __slots__ = ("days", "months")

    def __init__(self) -> None:
        self.days: dict[str, int] = {}
        self.months: dict[str, int] = {}

    def change(self, day: str, delta: int) -> None:
        self.days[day] = self.days.get(day, 0) + delta
        month = day[:7]
        self.months[month] = self.months.get(month, 0) + delta

    def sums(self, day: str) -> tuple[int, int]:
        return self.days.get(day, 0), self.months.get(day[:7], 0)

    def forget_old(self) -> None:
        if len(self.days) > _KEEP_DAYS:
            for old in sorted(self.days)[: len(self.days) - _KEEP_DAYS]:
                self.change(old, -self.days[old])
                del self.days[old]
            for month in [m for m, n in self.months.items() if n == 0]:
                del self.months[month]


class SpendBook:
    """Running totals in nano-USD per scope and UTC day; a month is the sum of its days."""

    def __init__(self) -> None:
        self._spent: dict[str, _Ledger] = {}
        self._reserved: dict[str, _Ledger] = {}

    def add(self, key: str, ts: float, nanos: int) -> None:
        if nanos <= 0:
            return
        ledger = self._spent.get(key)
        if ledger is None:
            ledger = self._spent[key] = _Ledger()
        ledger.change(day_of(ts), nanos)
        ledger.forget_old()

    def reserve(self, key: str, ts: float, nanos: int) -> None:
        if nanos <= 0:
            return
        ledger = self._reserved.get(key)
        if ledger is None:
            ledger = self._reserved[key] = _Ledger()
        ledger.change(day_of(ts), nanos)

    def release(self, key: str, ts: float, nanos: int) -> None:
        """Give back a reservation made with :meth:`reserve` at the same ``ts``."""
        ledger = self._reserved.get(key)
        if nanos <= 0 or ledger is None:
            return
        day = day_of(ts)
        ledger.change(day, -min(nanos, ledger.days.get(day, 0)))
        if ledger.days.get(day) == 0:
            del ledger.days[day]
            if not ledger.days:
                del self._reserved[key]

    def seed(self, key: str, day: str, nanos: int) -> None:
        """Set a day's total from the store at start-up (replaces, so seeding is idempotent)."""
        ledger = self._spent.get(key)
        if ledger is None:
            ledger = self._spent[key] = _Ledger()
        ledger.change(day, nanos - ledger.days.get(day, 0))

    def totals(self, key: str, now: float) -> tuple[float, float]:
        """Spent (today, this month) in USD, for the UTC day and month that contain ``now``."""
        ledger = self._spent.get(key)
        if ledger is None:
            return 0.0, 0.0
        day, month = ledger.sums(day_of(now))
        return day / 1e9, month / 1e9

    def committed(self, key: str, now: float) -> tuple[float, float]:
        """Spent plus reserved (today, this month) in USD: what budgets are checked against."""
        today = day_of(now)
        spent, held = self._spent.get(key), self._reserved.get(key)
        day, month = spent.sums(today) if spent is not None else (0, 0)
        if held is not None:
            held_day, held_month = held.sums(today)
            day, month = day + held_day, month + held_month
        return day / 1e9, month / 1e9

    def reserved_nanos(self, key: str) -> int:
        held = self._reserved.get(key)
        return sum(held.days.values()) if held is not None else 0
