"""The async seam for limits and budgets: one ``reserve`` when a call is admitted and one
``settle`` when it ends, so a shared backend (Redis, for several processes) can replace
:class:`InMemoryLimiter` with one round trip each.

A call counts against one or more *scopes*: its key and, when it names one, the key's end
user. ``reserve`` checks every scope's requests/min, tokens/min, concurrency and budgets and,
only if all pass, counts the request in all of them at once: a slot, the reserved tokens in
the tokens/min window and the reserved cost against the budgets. ``settle`` replaces the
reservation by what the call really used (zero for a call no provider answered) and frees
the slot.

The bound this gives (README, "Budgets"): a budget is never passed by more than what the
admitted requests were not made to reserve. Every request reserves its prompt estimate plus
``max_tokens`` (or the model's ``default_max_tokens`` when it sends none) at the dearest
price any of the model's deployments charges for them, so with ``max_tokens`` sent and a
prompt count that is the provider's (OpenAI models), the overshoot is zero.

Usage, one call::

    ticket = await limiter.reserve(Reservation(scopes, tokens=t, cost_nanos=c, wall=now))
    if not ticket.allowed:
        raise to_error(ticket.admission)
    try:
        ...  # serve; respond with ratelimit_headers(ticket.admission)
    finally:
        await limiter.settle(ticket, tokens=used_tokens, cost_nanos=used_cost)
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nitroproxy.core.limits import Admission, KeyLimits, RateLimits
from nitroproxy.core.spend import SpendBook

__all__ = [
    "InMemoryLimiter",
    "Limiter",
    "Reservation",
    "Scope",
    "Ticket",
    "end_user_scope",
    "key_scope",
]


def key_scope(key_id: str) -> str:
    return f"key:{key_id}"


def end_user_scope(key_id: str, pseudonym: str) -> str:
    """An end user's limits are per key: two applications' "alice" are different people."""
    return f"end_user:{key_id}:{pseudonym}"


@dataclass(frozen=True, slots=True)
class Scope:
    """One party a call counts against: ``key:<id>`` or ``end_user:<key id>:<tag>``."""

    id: str
    limits: KeyLimits


@dataclass(frozen=True, slots=True)
class Reservation:
    scopes: tuple[Scope, ...]
    tokens: int = 0
    """Held in the tokens/min windows until settled."""
    cost_nanos: int = 0
    """Held against the budgets until settled."""
    wall: float = 0.0
    """The moment of admission in epoch seconds: the UTC day the budgets count."""


class Ticket:
    """One admission decision. ``admission`` is the key scope's verdict (its figures are the
    ``x-ratelimit-*`` headers), or the verdict of the scope that refused. Settling twice is
    harmless."""

    __slots__ = ("_settled", "admission", "at", "id", "reservation")

    def __init__(
        self, *, id: str, reservation: Reservation, admission: Admission, at: float
    ) -> None:
        self.id = id
        self.reservation = reservation
        self.admission = admission
        self.at = at
        self._settled = not admission.allowed

    @property
    def allowed(self) -> bool:
        return self.admission.allowed

    def claim_settle(self) -> bool:
        """True exactly once for an allowed ticket: the caller then applies the settlement."""
        first, self._settled = not self._settled, True
        return first

    def __repr__(self) -> str:
        return f"Ticket(id={self.id!r}, allowed={self.allowed})"


class Limiter(Protocol):
    async def reserve(self, reservation: Reservation) -> Ticket:
        """Check every scope atomically and, when all pass, count the request in each."""
        ...

    async def settle(self, ticket: Ticket, *, tokens: int, cost_nanos: int) -> None:
        """Replace the reservation by the real usage and free the slot. Idempotent."""
        ...

    def seed_spend(self, scope_id: str, day: str, nanos: int) -> None:
        """Load a day's recorded spend at start-up (budgets survive restarts)."""
        ...

    def spent(self, scope_id: str, wall: float) -> tuple[float, float]:
        """Spent today and this month, in USD."""
        ...


class InMemoryLimiter:
    """:class:`Limiter` for one process. No method awaits, so each one is atomic on the
    event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._limits = RateLimits()
        self._spend = SpendBook()
        self._ids = itertools.count(1)

    @property
    def tracked_keys(self) -> int:
        return len(self._limits)

    def active(self, scope_id: str) -> int:
        return self._limits.active(scope_id)

    def reserved_nanos(self, scope_id: str) -> int:
        return self._spend.reserved_nanos(scope_id)

    async def reserve(self, reservation: Reservation) -> Ticket:
        now = self._clock()
        r = reservation
        cost_usd = r.cost_nanos / 1e9
        verdicts = []
        for scope in r.scopes:
            day, month = self._spend.committed(scope.id, r.wall)
            admission = self._limits.check(
                scope.id,
                scope.limits,
                tokens=r.tokens,
                now=now,
                spent_day_usd=day,
                spent_month_usd=month,
                cost_usd=cost_usd if _has_budget(scope.limits) else 0.0,
            )
            if not admission.allowed:
                return Ticket(id=self._next_id(), reservation=r, admission=admission, at=now)
            verdicts.append(admission)
        for scope in r.scopes:
            self._limits.apply(scope.id, scope.limits, tokens=r.tokens, now=now)
            if _has_budget(scope.limits):
                self._spend.reserve(scope.id, r.wall, r.cost_nanos)
        return Ticket(id=self._next_id(), reservation=r, admission=verdicts[0], at=now)

    async def settle(self, ticket: Ticket, *, tokens: int, cost_nanos: int) -> None:
        self.settle_now(ticket, tokens=tokens, cost_nanos=cost_nanos)

    def settle_now(self, ticket: Ticket, *, tokens: int, cost_nanos: int) -> None:
        """``settle`` without the await: nothing here waits, so the settler calls it in
        line instead of spawning a task per call."""
        if not ticket.claim_settle():
            return
        now = self._clock()
        r = ticket.reservation
        for scope in r.scopes:
            self._limits.finish(
                scope.id, admitted_tokens=r.tokens, actual_tokens=tokens, at=ticket.at, now=now
            )
            if _has_budget(scope.limits):
                self._spend.release(scope.id, r.wall, r.cost_nanos)
            # Spend is kept for every scope, budgeted or not, so a budget added by a
            # reload (or seen in reports) starts from the truth.
            self._spend.add(scope.id, r.wall, cost_nanos)

    def seed_spend(self, scope_id: str, day: str, nanos: int) -> None:
        self._spend.seed(scope_id, day, nanos)

    def spent(self, scope_id: str, wall: float) -> tuple[float, float]:
        return self._spend.totals(scope_id, wall)

    def _next_id(self) -> str:
        return str(next(self._ids))


def _has_budget(limits: KeyLimits) -> bool:
    return limits.budget_day_usd is not None or limits.budget_month_usd is not None
