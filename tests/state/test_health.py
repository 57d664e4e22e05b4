"""SharedHealth against a real Redis: a breaker opened in one process cools the deployment
down in the others, and speed measurements from all of them fold into one mean."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from nitroproxy.config import StateSettings
from nitroproxy.proxy.clock import Clock
from nitroproxy.state.health import SharedHealth
from nitroproxy.state.link import RedisLink


class Tick:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def books(redis_url: str, prefix: str) -> AsyncIterator[Callable[[Tick], SharedHealth]]:
    links: list[RedisLink] = []

    def make(tick: Tick) -> SharedHealth:
        link = RedisLink(StateSettings(backend="redis", url=redis_url, prefix=prefix, timeout=2))
        links.append(link)
        return SharedHealth(
            link, Clock(tick), ["a", "b"], failure_threshold=1, base_cooldown=5.0, min_samples=1
        )

    yield make
    for link in links:
        await link.close()


async def test_a_cooldown_opened_in_one_process_is_honoured_by_the_others(books) -> None:
    tick_a, tick_b = Tick(), Tick()
    one, other = books(tick_a), books(tick_b)
    one.record_failure("a", tick_a.t)
    assert one.state("a", tick_a.t) == "cooling_down"
    await one.sync()
    await other.sync()
    assert other.state("a", tick_b.t) == "cooling_down"
    assert other.state("b", tick_b.t) == "healthy"
    tick_b.t += 5.5  # the cool-down's length, measured on the server's clock
    assert other.state("a", tick_b.t) == "half_open"
    # Seen once: after a success here, the same shared cool-down is not imposed again.
    other.record_success("a", tick_b.t, latency_s=0.1)
    await other.sync()
    assert other.state("a", tick_b.t) == "healthy"


async def test_measurements_from_every_process_fold_into_one_mean(books) -> None:
    tick = Tick()
    one, other = books(tick), books(tick)
    one.record_success("b", tick.t, ttft_s=1.0, tokens_per_s=100.0, latency_s=2.0)
    await one.sync()
    other.record_success("b", tick.t, ttft_s=2.0, tokens_per_s=50.0, latency_s=4.0)
    await other.sync()
    await one.sync()
    for book in (one, other):
        m = book.measurement("b")
        assert m.samples == 2
        assert m.ttft_s == pytest.approx(0.2 * 2.0 + 0.8 * 1.0)
        assert m.tokens_per_s == pytest.approx(0.2 * 50.0 + 0.8 * 100.0)
