from __future__ import annotations

import asyncio

from nitroproxy.core.limits import KeyLimits, ratelimit_headers
from nitroproxy.proxy.limiter import InMemoryLimiter, Limiter


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_n_requests_pass_and_n_plus_one_gets_429_until_the_window_slides() -> None:
    clock = FakeClock()
    limiter: Limiter = InMemoryLimiter(clock)
    limits = KeyLimits(rpm=5, tpm=10_000)
    for _ in range(5):
        ticket = await limiter.admit("key", limits, tokens=10)
        assert ticket.allowed
        await limiter.release(ticket)
        clock.now += 1
    denied = await limiter.admit("key", limits, tokens=10)
    assert not denied.allowed
    headers = ratelimit_headers(denied.admission)
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["retry-after"] == "55"
    assert headers["x-ratelimit-remaining-tokens"] == "9950"
    clock.now = 1060.0
    assert (await limiter.admit("key", limits, tokens=10)).allowed


async def test_settle_and_release_are_idempotent() -> None:
    clock = FakeClock()
    limiter = InMemoryLimiter(clock)
    limits = KeyLimits(tpm=1000, max_concurrent=1)
    ticket = await limiter.admit("key", limits, tokens=100)
    assert not (await limiter.admit("key", limits, tokens=1)).allowed
    await limiter.release(ticket)
    await limiter.release(ticket)
    await limiter.settle(ticket, actual_tokens=600)
    await limiter.settle(ticket, actual_tokens=600)
    second = await limiter.admit("key", limits, tokens=1)
    assert second.allowed
    assert second.admission.remaining_tokens == 399
    # a second release of the first ticket must not free the slot the second one holds
    await limiter.release(ticket)
    assert not (await limiter.admit("key", limits, tokens=1)).allowed


async def test_denied_tickets_need_no_cleanup() -> None:
    limiter = InMemoryLimiter(FakeClock())
    limits = KeyLimits(max_concurrent=1)
    held = await limiter.admit("key", limits, tokens=0)
    denied = await limiter.admit("key", limits, tokens=0)
    assert not denied.allowed
    await limiter.release(denied)
    await limiter.settle(denied, actual_tokens=50)
    assert not (await limiter.admit("key", limits, tokens=0)).allowed
    await limiter.release(held)
    assert limiter.tracked_keys == 0


async def test_concurrent_admissions_never_exceed_the_limit() -> None:
    limiter = InMemoryLimiter(FakeClock())
    limits = KeyLimits(rpm=1000, max_concurrent=3)
    tickets = await asyncio.gather(*(limiter.admit("key", limits, tokens=1) for _ in range(20)))
    assert sum(t.allowed for t in tickets) == 3
    for t in tickets:
        await limiter.release(t)
    assert (await limiter.admit("key", limits, tokens=1)).allowed


async def test_budget_passes_through() -> None:
    limiter = InMemoryLimiter(FakeClock())
    ticket = await limiter.admit("key", KeyLimits(budget_day_usd=1.0), tokens=0, spent_day_usd=1.0)
    assert ticket.admission.reason == "budget"


def test_default_clock_is_monotonic() -> None:
    limiter = InMemoryLimiter()
    assert limiter.tracked_keys == 0
