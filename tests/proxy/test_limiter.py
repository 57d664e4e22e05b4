"""The limiter seam: one reserve and one settle per call, atomic over every scope."""

from __future__ import annotations

import asyncio

from nitroproxy.core.limits import KeyLimits, ratelimit_headers
from nitroproxy.proxy.limiter import InMemoryLimiter, Limiter, Reservation, Scope

DAY = 1_710_028_800.0  # 2024-03-10T00:00:00Z


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def one(limits: KeyLimits, *, tokens: int = 0, cost: int = 0, scope: str = "key:k") -> Reservation:
    return Reservation((Scope(scope, limits),), tokens=tokens, cost_nanos=cost, wall=DAY)


async def test_n_requests_pass_and_n_plus_one_gets_429_until_the_window_slides() -> None:
    clock = FakeClock()
    limiter: Limiter = InMemoryLimiter(clock)
    limits = KeyLimits(rpm=5, tpm=10_000)
    for _ in range(5):
        ticket = await limiter.reserve(one(limits, tokens=10))
        assert ticket.allowed
        await limiter.settle(ticket, tokens=10, cost_nanos=0)
        clock.now += 1
    denied = await limiter.reserve(one(limits, tokens=10))
    assert not denied.allowed
    headers = ratelimit_headers(denied.admission)
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["retry-after"] == "55"
    assert headers["x-ratelimit-remaining-tokens"] == "9950"
    clock.now = 1060.0
    assert (await limiter.reserve(one(limits, tokens=10))).allowed


async def test_settle_replaces_the_reservation_frees_the_slot_and_is_idempotent() -> None:
    limiter = InMemoryLimiter(FakeClock())
    limits = KeyLimits(tpm=1000, max_concurrent=1)
    ticket = await limiter.reserve(one(limits, tokens=100))
    assert not (await limiter.reserve(one(limits, tokens=1))).allowed  # the slot is held
    await limiter.settle(ticket, tokens=600, cost_nanos=0)
    await limiter.settle(ticket, tokens=600, cost_nanos=0)
    second = await limiter.reserve(one(limits, tokens=1))
    assert second.allowed
    assert second.admission.remaining_tokens == 399
    # settling the first ticket again must not free the slot the second one holds
    await limiter.settle(ticket, tokens=600, cost_nanos=0)
    assert not (await limiter.reserve(one(limits, tokens=1))).allowed


async def test_denied_tickets_need_no_cleanup() -> None:
    limiter = InMemoryLimiter(FakeClock())
    limits = KeyLimits(max_concurrent=1)
    held = await limiter.reserve(one(limits))
    denied = await limiter.reserve(one(limits))
    assert not denied.allowed
    await limiter.settle(denied, tokens=50, cost_nanos=50)
    assert not (await limiter.reserve(one(limits))).allowed
    await limiter.settle(held, tokens=0, cost_nanos=0)
    assert limiter.tracked_keys == 0


async def test_concurrent_reservations_never_exceed_the_limit() -> None:
    limiter = InMemoryLimiter(FakeClock())
    limits = KeyLimits(rpm=1000, max_concurrent=3)
    tickets = await asyncio.gather(*(limiter.reserve(one(limits, tokens=1)) for _ in range(20)))
    assert sum(t.allowed for t in tickets) == 3
    for t in tickets:
        await limiter.settle(t, tokens=1, cost_nanos=0)
    assert (await limiter.reserve(one(limits, tokens=1))).allowed


async def test_budgets_count_what_is_reserved_so_concurrent_calls_cannot_all_pass() -> None:
    limiter = InMemoryLimiter(FakeClock())
    limits = KeyLimits(budget_day_usd=0.01)  # 10,000,000 nano-USD
    cost = 2_010_000  # each call may cost this much
    tickets = [await limiter.reserve(one(limits, cost=cost)) for _ in range(50)]
    admitted = [t for t in tickets if t.allowed]
    assert len(admitted) == 4  # 4 x 2.01 M <= 10 M < 5 x 2.01 M
    assert tickets[4].admission.reason == "budget"
    assert limiter.reserved_nanos("key:k") == 4 * cost
    # They settle below what they reserved: room for more, never past the budget.
    for t in admitted:
        await limiter.settle(t, tokens=0, cost_nanos=1_000_000)
    assert limiter.spent("key:k", DAY) == (0.004, 0.004)
    assert limiter.reserved_nanos("key:k") == 0
    again = [await limiter.reserve(one(limits, cost=cost)) for _ in range(5)]
    assert sum(t.allowed for t in again) == 2  # 4 M spent + 2 x 2.01 M <= 10 M


async def test_a_call_is_admitted_only_if_every_scope_admits_it() -> None:
    limiter = InMemoryLimiter(FakeClock())
    key = Scope("key:k", KeyLimits(rpm=10))
    alice = Scope("end_user:k:alice", KeyLimits(rpm=1))
    bob = Scope("end_user:k:bob", KeyLimits(rpm=1))
    assert (await limiter.reserve(Reservation((key, alice), wall=DAY))).allowed
    refused = await limiter.reserve(Reservation((key, alice), wall=DAY))
    assert not refused.allowed
    # The refusal counted nowhere: the key still has 9 requests left for bob.
    ok = await limiter.reserve(Reservation((key, bob), wall=DAY))
    assert ok.allowed and ok.admission.remaining_requests == 8


async def test_seeded_spend_counts_against_the_budget() -> None:
    limiter = InMemoryLimiter(FakeClock())
    limiter.seed_spend("key:k", "2024-03-10", 9_000_000)
    limits = KeyLimits(budget_day_usd=0.01)
    assert not (await limiter.reserve(one(limits, cost=2_000_000))).allowed
    assert (await limiter.reserve(one(limits, cost=1_000_000))).allowed


def test_default_clock_is_monotonic() -> None:
    limiter = InMemoryLimiter()
    assert limiter.tracked_keys == 0
