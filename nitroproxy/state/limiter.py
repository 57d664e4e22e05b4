"""``RedisLimiter``: the :class:`~nitroproxy.proxy.limiter.Limiter` shared by every process
that names the same Redis and prefix.

One ``reserve`` is one script (``state.scripts.RESERVE``): it prunes, checks every scope's
requests/min, tokens/min, concurrency and budgets and, only if all pass, counts the request
in all of them, atomically on the server. One ``settle`` is one script too. So the bound is
the one ``InMemoryLimiter`` promises, across processes and machines: requests/min and
tokens/min are never passed (a sliding 60 s window on the server's clock), concurrency is
never passed, and a budget is never passed by more than what admitted requests were not made
to reserve (zero with ``max_tokens`` sent and the provider's own prompt count).

The verdict's reason, message and headers come from ``core.limits.verdict`` over the figures
the script read, so a refusal reads the same whichever backend made it.

Slots and reservations are leases (``state.lease``): a process renews those of its calls in
flight every third of a lease, so a process that dies frees its slots and reservations
within one lease instead of holding them forever.

When Redis is unreachable (``RedisLink``), ``reserve`` applies the failure policy of every
limit kind the call is subject to: any ``closed`` kind refuses with a 503 at once; when all
are ``open`` the call is admitted by this process's own memory (each process then enforces
the limits alone). Settlements that cannot be sent wait in a bounded queue and are replayed,
idempotently, when Redis answers again: no spend is lost and none is counted twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import os
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from redis.commands.core import AsyncScript as Script
from redis.exceptions import NoScriptError

from nitroproxy.config import FailPolicy
from nitroproxy.core.days import day_of, month_of
from nitroproxy.core.errors import Overloaded
from nitroproxy.core.limits import Admission, verdict
from nitroproxy.proxy.clock import Clock
from nitroproxy.proxy.limiter import InMemoryLimiter, Reservation, Ticket
from nitroproxy.state.figures import FIGURES, budgeted, figures, kinds, scope_args
from nitroproxy.state.link import RedisLink, StateUnavailable, as_text
from nitroproxy.state.scripts import RENEW, RESERVE, SEED, SETTLE, SPEND
from nitroproxy.telemetry import logs

__all__ = ["LimitsUnavailable", "RedisLimiter"]

MAX_PENDING = 100_000
SETTLE_DELAY_S = 0.002


class LimitsUnavailable(Overloaded):
    default_code = "limits_unavailable"


class _Settlement:
    __slots__ = ("args",)

    def __init__(self, args: list[str | int]) -> None:
        self.args = args


class RedisLimiter:
    def __init__(self, link: RedisLink, clock: Clock, policy: FailPolicy) -> None:
        self._link = link
        self._clock = clock
        self._policy = policy
        self._local = InMemoryLimiter(clock.now)
        self._local_tickets: dict[str, Ticket] = {}
        self._open: dict[str, tuple[str, ...]] = {}
        self._pending: collections.deque[_Settlement] = collections.deque()
        self._outbox: list[_Settlement] = []
        self._flusher: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._seeds: list[tuple[str, str, int]] = []
        self._totals: dict[str, tuple[float, float]] = {}
        self._token = os.urandom(6).hex()
        self._ids = itertools.count(1)
        self._lease_ms = int(link.settings.lease * 1000)
        client = link.client
        self._reserve = client.register_script(RESERVE)
        self._settle = client.register_script(SETTLE)
        self._renew = client.register_script(RENEW)
        self._seed = client.register_script(SEED)
        self._spend = client.register_script(SPEND)
        self._renewer: asyncio.Task[None] | None = None
        self._log = logs.get_logger("nitroproxy.state")
        self.dropped = 0
        link.on_up(self.replay)
        link.add_gauge(self._gauges)

    # -- lifetime -------------------------------------------------------------------------

    def start(self) -> None:
        self._renewer = asyncio.get_running_loop().create_task(
            self._renew_leases(), name="nitroproxy-state-leases"
        )

    async def close(self) -> None:
        task, self._renewer = self._renewer, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        await self.flush()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        with contextlib.suppress(StateUnavailable):
            await self.replay()
        if self._pending:
            # Their records are in the database; the shared budgets miss this spend until
            # Redis is next seeded from it (a fresh or restarted Redis).
            self._log.error(
                "settlements not sent to the shared state at shutdown",
                count=len(self._pending),
                cost_nanos=sum(int(s.args[3]) for s in self._pending),
            )

    # -- the Limiter protocol -----------------------------------------------------------------

    async def reserve(self, reservation: Reservation) -> Ticket:
        r = reservation
        ticket_id = f"{self._token}:{next(self._ids)}"
        args: list[str | int] = [
            self._link.prefix,
            ticket_id,
            r.tokens,
            r.cost_nanos,
            day_of(r.wall),
            month_of(r.wall),
            self._lease_ms,
        ]
        for scope in r.scopes:
            args.extend(scope_args(scope))
        outbox, self._outbox = self._outbox, []
        try:
            reply = await self._link.run(lambda: self._send_reserve(outbox, args))
        except StateUnavailable:
            for settlement in outbox:
                self._hold(settlement)
            return await self._fallback(r)
        at = self._clock.now()
        ticket = Ticket(id=ticket_id, reservation=r, admission=self._verdict(r, reply), at=at)
        if ticket.allowed:
            self._open[ticket_id] = tuple(s.id for s in r.scopes)
        return ticket

    async def settle(self, ticket: Ticket, *, tokens: int, cost_nanos: int) -> None:
        local = self._local_tickets.pop(ticket.id, None)
        if local is not None:
            await self._local.settle(local, tokens=tokens, cost_nanos=cost_nanos)
        if not ticket.claim_settle():
            return
        self._open.pop(ticket.id, None)
        r = ticket.reservation
        args: list[str | int] = [
            self._link.prefix,
            ticket.id,
            tokens - r.tokens,
            cost_nanos,
            day_of(r.wall),
            month_of(r.wall),
            *(s.id for s in r.scopes),
        ]
        # Sent with the next reservation, in its round trip, or within SETTLE_DELAY_S when
        # none comes: until then the slot and the reservation stay held, which can only
        # refuse early, never admit past a limit.
        if not self._link.up:
            self._hold(_Settlement(args))
            return
        self._outbox.append(_Settlement(args))
        if self._flusher is None:
            loop = asyncio.get_running_loop()
            self._flusher = loop.call_later(SETTLE_DELAY_S, self._flush_soon)

    async def _send_reserve(self, outbox: list[_Settlement], args: list[str | int]) -> Any:
        if not outbox:
            return await self._reserve(args=args)
        calls = [(self._settle, s.args) for s in outbox]
        calls.append((self._reserve, args))
        return (await self._pipeline(calls))[-1]

    async def _pipeline(self, calls: Sequence[tuple[Script, Sequence[str | int]]]) -> list[Any]:
        """Several scripts in one round trip. By EVALSHA on our own: redis-py's script
        support in pipelines asks SCRIPT EXISTS first, a second round trip each time."""
        for attempt in (1, 2):
            pipe = self._link.client.pipeline(transaction=False)
            for script, args in calls:
                pipe.evalsha(script.sha, 0, *args)
            try:
                return list(await pipe.execute())
            except NoScriptError:
                if attempt == 2:
                    raise
                # Redis restarted and forgot them: load each once, then send again.
                for script, _ in calls:
                    await self._link.client.script_load(script.script)
        raise AssertionError("unreachable")

    def _flush_soon(self) -> None:
        self._flusher = None
        if self._outbox:
            task = asyncio.get_running_loop().create_task(self.flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def flush(self) -> None:
        """Send the settlements waiting for a reservation to travel with, now."""
        outbox, self._outbox = self._outbox, []
        if not outbox:
            return
        try:
            await self._link.run(lambda: self._send(outbox))
        except StateUnavailable:
            for settlement in outbox:
                self._hold(settlement)

    def seed_spend(self, scope_id: str, day: str, nanos: int) -> None:
        """Collected, then sent by :meth:`flush_seeds` in one script: the first process to
        start on a fresh Redis loads the recorded spend, every later one finds it there."""
        self._seeds.append((scope_id, day, nanos))
        self._local.seed_spend(scope_id, day, nanos)

    async def flush_seeds(self) -> bool:
        """True when this process's seeds were the ones loaded."""
        seeds, self._seeds = self._seeds, []
        args: list[str | int] = [self._link.prefix, self._token]
        for scope_id, day, nanos in seeds:
            args.extend((scope_id, day[:7], day, nanos))
        loaded = await self._link.background(lambda: self._seed(args=args))
        return bool(loaded)

    async def needs_seed(self) -> bool:
        """True when Redis has lost its data (restarted) since spend was loaded."""
        key = self._link.key("seeded")
        return not await self._link.background(lambda: self._link.client.exists(key))

    def spent(self, scope_id: str, wall: float) -> tuple[float, float]:
        """The last figures Redis reported for ``scope_id`` (see :meth:`fetch_spent`)."""
        return self._totals.get(scope_id, self._local.spent(scope_id, wall))

    async def fetch_spent(self, scope_id: str, wall: float) -> tuple[float, float]:
        """Spent today and this month in USD, read from Redis."""
        await self.flush()
        args = [self._link.prefix, scope_id, month_of(wall)]
        flat = await self._link.background(lambda: self._spend(args=args))
        day, month = day_of(wall), 0
        today = 0
        for name, value in zip(flat[::2], flat[1::2], strict=True):
            month += int(value)
            if as_text(name) == day:
                today = int(value)
        self._totals[scope_id] = (today / 1e9, month / 1e9)
        return self._totals[scope_id]

    # -- while Redis is down --------------------------------------------------------------

    async def _fallback(self, r: Reservation) -> Ticket:
        closed = [kind for kind in kinds(r.scopes) if getattr(self._policy, kind) == "closed"]
        if closed:
            self._link.fell_back("closed")
            raise LimitsUnavailable(
                f"limits are unavailable: the shared state is unreachable and the {closed[0]} "
                "limit fails closed; retry shortly",
                retry_after=max(1.0, self._link.settings.retry_interval),
            )
        self._link.fell_back("open")
        local = await self._local.reserve(r)
        ticket = Ticket(
            id=f"{self._token}:{next(self._ids)}",
            reservation=r,
            admission=local.admission,
            at=local.at,
        )
        if ticket.allowed:
            # Settled here and replayed into Redis, so the spend reaches the shared budget.
            self._local_tickets[ticket.id] = local
        return ticket

    def _hold(self, settlement: _Settlement) -> None:
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            self._log.error("state settlement queue full; a settlement was dropped")
            return
        self._pending.append(settlement)

    async def replay(self) -> None:
        """Send the settlements held while Redis was down, in order, each once."""
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(500, len(self._pending)))]

            async def send(batch: Sequence[_Settlement] = batch) -> None:
                await self._send(batch)

            try:
                await self._link.background(send)
            except StateUnavailable:
                self._pending.extendleft(reversed(batch))
                raise

    async def _send(self, batch: Sequence[_Settlement]) -> None:
        await self._pipeline([(self._settle, s.args) for s in batch])

    @property
    def pending(self) -> int:
        """Settlements held while Redis was down (not those waiting to travel)."""
        return len(self._pending)

    # -- leases ---------------------------------------------------------------------------

    async def _renew_leases(self) -> None:
        period = max(0.05, self._lease_ms / 3000)
        while True:
            await asyncio.sleep(period)
            pairs: list[str | int] = []
            for ticket_id, scopes in list(self._open.items()):
                for scope_id in scopes:
                    pairs.extend((scope_id, ticket_id))
            if not pairs or not self._link.up:
                continue
            args: list[str | int] = [self._link.prefix, self._lease_ms, *pairs]

            async def renew(args: list[str | int] = args) -> None:
                await self._renew(args=args)

            with contextlib.suppress(StateUnavailable):
                await self._link.background(renew)

    # -- verdicts -------------------------------------------------------------------------

    def _verdict(self, r: Reservation, reply: list[int]) -> Admission:
        allowed = reply[0] == 1
        cost_usd = r.cost_nanos / 1e9
        first = None
        for i, scope in enumerate(r.scopes):
            f = figures(reply[2 + i * FIGURES : 2 + (i + 1) * FIGURES])
            if budgeted(scope.limits):
                self._totals[scope.id] = (f.spent_day_usd, f.spent_month_usd)
            adm = verdict(
                scope.limits,
                f,
                tokens=r.tokens,
                cost_usd=cost_usd if budgeted(scope.limits) else 0.0,
            )
            if first is None:
                first = adm
            if not allowed and not adm.allowed:
                return adm
        assert first is not None
        if not allowed:
            # Only possible if a float drew the line differently here than in the script.
            return dataclasses.replace(first, allowed=False, reason="requests", message=None)
        if first.allowed:
            return first
        return dataclasses.replace(first, allowed=True, reason=None, retry_after=None, message=None)

    def _gauges(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "nitroproxy_state_pending_settlements",
            "Settlements waiting for the shared state to answer again.",
            len(self._pending),
        )
