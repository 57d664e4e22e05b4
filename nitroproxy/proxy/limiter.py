"""The async seam for per-key limits: callers admit, settle and release through
:class:`Limiter`, so a shared backend (Redis, for several replicas) can replace
:class:`InMemoryLimiter` without touching them.

Usage, one request::

    ticket = await limiter.admit(key_id, limits, tokens=estimate, concurrent=stream)
    if not ticket.allowed:
        raise to_error(ticket.admission)
    try:
        ...  # serve; respond with ratelimit_headers(ticket.admission)
    finally:
        await limiter.release(ticket)
        await limiter.settle(ticket, actual_tokens=usage.total_tokens)
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Protocol

from nitroproxy.core.limits import Admission, KeyLimits, RateLimits

__all__ = ["InMemoryLimiter", "Limiter", "Ticket"]


class Ticket:
    """One admission decision, handed back to :meth:`Limiter.settle` and
    :meth:`Limiter.release`. It carries everything a backend needs to undo or correct the
    admission, and remembers what was done so settling or releasing twice is harmless."""

    __slots__ = (
        "_released",
        "_settled",
        "admission",
        "at",
        "holds_slot",
        "id",
        "key_id",
        "tokens",
    )

    def __init__(
        self,
        *,
        id: str,
        key_id: str,
        admission: Admission,
        tokens: int,
        at: float,
        holds_slot: bool,
    ) -> None:
        self.id = id
        self.key_id = key_id
        self.admission = admission
        self.tokens = tokens
        self.at = at
        self.holds_slot = holds_slot
        self._settled = not admission.allowed
        self._released = not (admission.allowed and holds_slot)

    @property
    def allowed(self) -> bool:
        return self.admission.allowed

    def claim_settle(self) -> bool:
        """True exactly once for an allowed ticket: the caller then applies the settlement."""
        first, self._settled = not self._settled, True
        return first

    def claim_release(self) -> bool:
        """True exactly once for a ticket holding a slot: the caller then frees it."""
        first, self._released = not self._released, True
        return first

    def __repr__(self) -> str:
        return f"Ticket(id={self.id!r}, key_id={self.key_id!r}, allowed={self.allowed})"


class Limiter(Protocol):
    async def admit(
        self,
        key_id: str,
        limits: KeyLimits,
        *,
        tokens: int,
        concurrent: bool = True,
        spent_day_usd: float = 0.0,
        spent_month_usd: float = 0.0,
    ) -> Ticket:
        """Check budget, concurrency, requests/min and tokens/min atomically and, when all
        pass, count the request, its estimated ``tokens`` and (if ``concurrent``) a slot."""
        ...

    async def settle(self, ticket: Ticket, *, actual_tokens: int) -> None:
        """Replace the admitted estimate by the real usage. Idempotent."""
        ...

    async def release(self, ticket: Ticket) -> None:
        """Return the ticket's concurrency slot. Idempotent."""
        ...


class InMemoryLimiter:
    """:class:`Limiter` for one process, over :class:`~nitroproxy.core.limits.RateLimits`.
    No method awaits, so each one is atomic on the event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._limits = RateLimits()
        self._ids = itertools.count(1)

    @property
    def tracked_keys(self) -> int:
        return len(self._limits)

    async def admit(
        self,
        key_id: str,
        limits: KeyLimits,
        *,
        tokens: int,
        concurrent: bool = True,
        spent_day_usd: float = 0.0,
        spent_month_usd: float = 0.0,
    ) -> Ticket:
        now = self._clock()
        admission = self._limits.admit(
            key_id,
            limits,
            tokens=tokens,
            now=now,
            concurrent=concurrent,
            spent_day_usd=spent_day_usd,
            spent_month_usd=spent_month_usd,
        )
        return Ticket(
            id=str(next(self._ids)),
            key_id=key_id,
            admission=admission,
            tokens=tokens,
            at=now,
            holds_slot=concurrent,
        )

    async def settle(self, ticket: Ticket, *, actual_tokens: int) -> None:
        if not ticket.claim_settle():
            return
        self._limits.settle(
            ticket.key_id,
            admitted_tokens=ticket.tokens,
            actual_tokens=actual_tokens,
            at=ticket.at,
            now=self._clock(),
        )

    async def release(self, ticket: Ticket) -> None:
        if not ticket.claim_release():
            return
        self._limits.release(ticket.key_id, self._clock())
