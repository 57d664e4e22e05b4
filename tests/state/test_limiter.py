"""RedisLimiter against a real Redis: several limiters (several processes' worth of
connections) share one limit exactly; verdicts read like the in-memory backend's;
settling is idempotent; leases free what a dead process held; the failure policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from nitroproxy.config import FailPolicy, StateSettings
from nitroproxy.core.limits import KeyLimits
from nitroproxy.proxy.clock import Clock
from nitroproxy.proxy.limiter import InMemoryLimiter, Reservation, Scope
from nitroproxy.state.limiter import LimitsUnavailable, RedisLimiter
from nitroproxy.state.link import RedisLink

WALL = 1_760_000_000.0


@pytest.fixture
async def limiters(redis_url: str, prefix: str) -> AsyncIterator[Callable[..., RedisLimiter]]:
    made: list[tuple[RedisLink, RedisLimiter]] = []

    def make(url: str = redis_url, policy: FailPolicy | None = None, **kw: Any) -> RedisLimiter:
        kw.setdefault("timeout", 2.0)  # bursts of hundreds queue on a loaded test machine
        link = RedisLink(StateSettings(backend="redis", url=url, prefix=prefix, **kw))
        limiter = RedisLimiter(link, Clock(), policy or FailPolicy())
        made.append((link, limiter))
        return limiter

    yield make
    for link, limiter in made:
        await limiter.close()
        await link.close()


def one(limits: KeyLimits, *, tokens: int = 0, cost: int = 0, scope: str = "key:k") -> Reservation:
    return Reservation((Scope(scope, limits),), tokens=tokens, cost_nanos=cost, wall=WALL)


async def test_four_limiters_admit_exactly_the_rpm_between_them(limiters) -> None:
    group = [limiters() for _ in range(4)]
    reservation = one(KeyLimits(rpm=100))
    tickets = await asyncio.gather(*(group[i % 4].reserve(reservation) for i in range(600)))
    assert sum(t.allowed for t in tickets) == 100
    refused = next(t for t in tickets if not t.allowed)
    assert refused.admission.reason == "requests"
    assert refused.admission.message == "Rate limit reached: 100 requests per min"
    assert 59.0 < (refused.admission.retry_after or 0) <= 60.0


async def test_a_budget_shared_by_four_is_never_passed(limiters) -> None:
    group = [limiters() for _ in range(4)]
    reservation = one(KeyLimits(budget_day_usd=1.0), cost=30_000_000)  # $0.03 worst case

    async def call(i: int) -> int:
        ticket = await group[i % 4].reserve(reservation)
        if not ticket.allowed:
            return 0
        await asyncio.sleep(0.001 * (i % 7))
        used = 30_000_000 if i % 3 else 10_000_000  # some calls cost less than reserved
        await group[i % 4].settle(ticket, tokens=0, cost_nanos=used)
        return used

    spent = sum(await asyncio.gather(*(call(i) for i in range(200))))
    assert spent <= 1_000_000_000
    # Calls refused while others held reservations may now fit: one at a time, until
    # what is left is less than one worst case.
    i = 200
    while (more := await call(i)) or 1_000_000_000 - spent >= 30_000_000:
        spent += more
        i += 1
    assert 1_000_000_000 - 30_000_000 < spent <= 1_000_000_000
    for limiter in group:  # settlements wait up to 2 ms to travel with a reservation
        await limiter.flush()
    day, _ = await group[0].fetch_spent("key:k", WALL)
    assert round(day * 1e9) == spent


async def test_refusals_read_like_the_memory_backend(limiters) -> None:
    shared = limiters()
    memory = InMemoryLimiter()
    limits = KeyLimits(rpm=5, tpm=1000, max_concurrent=3)
    for backend in (shared, memory):
        tickets = [await backend.reserve(one(limits, tokens=300)) for _ in range(4)]
        assert [t.allowed for t in tickets] == [True, True, True, False]
    a = (await shared.reserve(one(limits, tokens=300))).admission
    b = (await memory.reserve(one(limits, tokens=300))).admission
    assert (a.allowed, a.reason, a.message) == (b.allowed, b.reason, b.message)
    assert (a.limit_requests, a.remaining_requests, a.limit_tokens, a.remaining_tokens) == (
        b.limit_requests,
        b.remaining_requests,
        b.limit_tokens,
        b.remaining_tokens,
    )


async def test_settling_frees_the_slot_once_and_corrects_the_tokens(limiters) -> None:
    limiter = limiters()
    limits = KeyLimits(max_concurrent=1, tpm=1000)
    first = await limiter.reserve(one(limits, tokens=900))
    assert first.allowed
    assert not (await limiter.reserve(one(limits, tokens=50))).allowed
    await limiter.settle(first, tokens=100, cost_nanos=0)
    await limiter.settle(first, tokens=100, cost_nanos=0)  # harmless
    second = await limiter.reserve(one(limits, tokens=850))
    assert second.allowed
    assert second.admission.remaining_tokens == 50


async def test_a_dead_process_frees_its_slots_and_reservations_within_a_lease(limiters) -> None:
    dead = limiters(lease=0.3)
    limits = KeyLimits(max_concurrent=1, budget_day_usd=0.001)
    held = await dead.reserve(one(limits, cost=900_000))
    assert held.allowed  # ...and the process dies without settling
    alive = limiters(lease=0.3)
    refused = await alive.reserve(one(limits, cost=900_000))
    assert not refused.allowed
    await asyncio.sleep(0.45)
    assert (await alive.reserve(one(limits, cost=900_000))).allowed


async def test_leases_of_calls_in_flight_are_renewed(limiters) -> None:
    limiter = limiters(lease=0.3)
    limiter.start()
    limits = KeyLimits(max_concurrent=1)
    held = await limiter.reserve(one(limits))
    await asyncio.sleep(0.7)  # over two leases: renewed every 100 ms
    assert not (await limiter.reserve(one(limits))).allowed
    await limiter.settle(held, tokens=0, cost_nanos=0)
    assert (await limiter.reserve(one(limits))).allowed


async def test_end_user_and_key_scopes_are_checked_together(limiters) -> None:
    limiter = limiters()
    key, user = Scope("key:k", KeyLimits(rpm=3)), Scope("end_user:k:u", KeyLimits(rpm=1))
    both = Reservation((key, user), wall=WALL)
    assert (await limiter.reserve(both)).allowed
    refused = await limiter.reserve(both)
    assert not refused.allowed
    # The refusal counted nowhere: the key still has two requests left.
    only_key = await limiter.reserve(Reservation((key,), wall=WALL))
    assert only_key.admission.remaining_requests == 1


async def test_seeds_load_once_per_redis_lifetime(limiters) -> None:
    a, b = limiters(), limiters()
    a.seed_spend("key:k", "2025-10-09", 400_000_000)
    b.seed_spend("key:k", "2025-10-09", 400_000_000)
    assert await a.needs_seed()
    assert await a.flush_seeds()
    assert not await b.flush_seeds()  # already there: not counted twice
    assert not await b.needs_seed()
    day, month = await b.fetch_spent("key:k", WALL)
    assert (round(day * 1e9), round(month * 1e9)) == (400_000_000, 400_000_000)


async def test_redis_down_budget_fails_closed_requests_fail_open_and_resume(
    limiters, private_redis
) -> None:
    limiter = limiters(url=private_redis.url, timeout=0.05, retry_interval=0.1)
    budget = one(KeyLimits(budget_day_usd=5.0), cost=1_000_000, scope="key:b")
    rpm = one(KeyLimits(rpm=2), scope="key:r")
    held = await limiter.reserve(budget)
    assert held.allowed
    private_redis.stop()

    started = time.monotonic()
    with pytest.raises(LimitsUnavailable) as refused:
        await limiter.reserve(budget)
    assert refused.value.status == 503
    assert time.monotonic() - started < 0.5
    # Open: this process alone enforces the limit meanwhile.
    assert [(await limiter.reserve(rpm)).allowed for _ in range(3)] == [True, True, False]
    await limiter.settle(held, tokens=0, cost_nanos=700_000)  # held until Redis returns
    assert limiter.pending == 1

    private_redis.start()
    async with asyncio.timeout(5):
        while True:
            if not limiter.pending and await _try(limiter, budget):
                break
            await asyncio.sleep(0.05)
    day, _ = await limiter.fetch_spent("key:b", WALL)
    assert round(day * 1e9) == 700_000  # the held settlement, replayed exactly once


async def _try(limiter: RedisLimiter, r: Reservation) -> bool:
    try:
        ticket = await limiter.reserve(r)
    except LimitsUnavailable:
        return False
    await limiter.settle(ticket, tokens=0, cost_nanos=0)
    return ticket.allowed
