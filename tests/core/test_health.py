from __future__ import annotations

import pytest

from nitroproxy.core.health import DeploymentHealth, HealthBook
from nitroproxy.core.selection import Measurement

T0 = 1000.0


def fail(book: HealthBook, now: float, times: int = 1) -> None:
    for _ in range(times):
        book.record_failure("d", now)


def test_unknown_deployment_is_healthy_and_unmeasured() -> None:
    book = HealthBook()
    assert book.available("x", T0)
    assert book.state("x", T0) == "healthy"
    assert book.measurement("x") == Measurement(ttft_s=None, tokens_per_s=None, samples=0)
    assert book.snapshot(T0) == {}


def test_seed_is_reported_until_min_samples_then_the_ewma_from_the_seed() -> None:
    book = HealthBook(alpha=0.5, min_samples=3)
    book.seed("d", ttft_s=1.0, tokens_per_s=100.0)
    assert book.measurement("d") == Measurement(ttft_s=1.0, tokens_per_s=100.0, samples=0)
    book.record_success("d", T0, ttft_s=3.0, tokens_per_s=20.0)
    book.record_success("d", T0, ttft_s=3.0, tokens_per_s=20.0)
    # two samples: still the seed
    assert book.measurement("d") == Measurement(ttft_s=1.0, tokens_per_s=100.0, samples=2)
    book.record_success("d", T0, ttft_s=3.0, tokens_per_s=20.0)
    # third sample: EWMA started from the seed: 1 -> 2 -> 2.5 -> 2.75
    m = book.measurement("d")
    assert m.ttft_s == pytest.approx(2.75)
    assert m.tokens_per_s == pytest.approx(30.0)  # 100 -> 60 -> 40 -> 30
    assert m.samples == 3


def test_ewma_without_seed_starts_at_the_first_sample() -> None:
    book = HealthBook(alpha=0.2)
    book.record_success("d", T0, tokens_per_s=50.0)
    assert book.measurement("d").tokens_per_s == 50.0
    book.record_success("d", T0, tokens_per_s=100.0)
    assert book.measurement("d").tokens_per_s == pytest.approx(60.0)
    assert book.measurement("d").ttft_s is None


def test_ewma_moves_toward_observed_values() -> None:
    book = HealthBook(alpha=0.2, min_samples=1)
    book.seed("d", ttft_s=2.0)
    for _ in range(30):
        book.record_success("d", T0, ttft_s=0.5, latency_s=1.0)
    assert book.measurement("d").ttft_s == pytest.approx(0.5, abs=0.01)
    assert book.snapshot(T0)["d"].latency_s == pytest.approx(1.0)


def test_each_metric_counts_its_own_samples_for_the_seed_period() -> None:
    book = HealthBook(min_samples=2)
    book.seed("d", ttft_s=1.0, tokens_per_s=10.0)
    book.record_success("d", T0, ttft_s=0.2)
    book.record_success("d", T0, ttft_s=0.2)
    m = book.measurement("d")
    assert m.ttft_s != 1.0
    assert m.tokens_per_s == 10.0  # no throughput sample yet: still seeded


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    book = HealthBook(failure_threshold=3, base_cooldown=5.0)
    fail(book, T0, 2)
    assert book.available("d", T0)
    book.record_success("d", T0)  # resets the streak
    fail(book, T0, 2)
    assert book.available("d", T0)
    fail(book, T0)
    assert not book.available("d", T0)
    assert book.state("d", T0 + 4.999) == "cooling_down"
    assert book.state("d", T0 + 5.0) == "half_open"
    assert book.available("d", T0 + 5.0)


@pytest.mark.parametrize(
    ("probe_failures", "expected_cooldown"),
    [(0, 5.0), (1, 10.0), (2, 20.0), (3, 40.0), (4, 60.0), (5, 60.0)],
)
def test_cooldown_doubles_per_failed_probe_up_to_max(
    probe_failures: int, expected_cooldown: float
) -> None:
    book = HealthBook(failure_threshold=3, base_cooldown=5.0, max_cooldown=60.0)
    now = T0
    fail(book, now, 3)
    cooldown = 5.0
    for _ in range(probe_failures):
        now += cooldown
        assert book.begin_attempt("d", now)
        fail(book, now)  # a failed probe re-opens at once
        cooldown = book.snapshot(now)["d"].cooldown_remaining_s
    assert cooldown == expected_cooldown
    assert not book.available("d", now + cooldown - 0.001)
    assert book.available("d", now + cooldown)


def test_half_open_admits_one_probe_at_a_time() -> None:
    book = HealthBook(failure_threshold=1, base_cooldown=5.0, probe_timeout=30.0)
    fail(book, T0)
    t = T0 + 5.0
    assert book.available("d", t)
    assert book.begin_attempt("d", t)
    assert not book.available("d", t)
    assert not book.begin_attempt("d", t + 1)
    # a probe that never reports frees the slot after probe_timeout
    assert book.begin_attempt("d", t + 30.0)


def test_successful_probe_closes_the_breaker_and_resets_the_backoff() -> None:
    book = HealthBook(failure_threshold=1, base_cooldown=5.0)
    fail(book, T0)
    assert book.begin_attempt("d", T0 + 5)
    fail(book, T0 + 5)  # 10 s now
    assert book.begin_attempt("d", T0 + 15)
    book.record_success("d", T0 + 16)
    assert book.state("d", T0 + 16) == "healthy"
    assert book.begin_attempt("d", T0 + 16)
    assert book.begin_attempt("d", T0 + 16)  # closed: no probe limit
    fail(book, T0 + 20)
    assert book.snapshot(T0 + 20)["d"].cooldown_remaining_s == 5.0


def test_retry_after_cools_down_for_exactly_that_long() -> None:
    book = HealthBook(failure_threshold=3, base_cooldown=5.0)
    book.record_failure("d", T0, retry_after=17.5)
    assert not book.available("d", T0 + 17.49)
    assert book.available("d", T0 + 17.5)
    snap = book.snapshot(T0)["d"]
    assert snap.cooldown_remaining_s == 17.5
    assert snap.cooldowns == 0  # does not feed the doubling


def test_failures_while_cooling_down_do_not_extend_it() -> None:
    book = HealthBook(failure_threshold=1, base_cooldown=5.0)
    fail(book, T0)
    fail(book, T0 + 4)  # a request that started before the breaker opened
    assert book.available("d", T0 + 5)
    assert book.snapshot(T0 + 4)["d"].failure_streak == 2


def test_snapshot_reports_state_for_admin_status() -> None:
    book = HealthBook(failure_threshold=1, base_cooldown=5.0, min_samples=1)
    book.seed("ok", ttft_s=0.3, tokens_per_s=90.0)
    book.record_success("ok", T0, ttft_s=0.5, tokens_per_s=80.0, latency_s=2.0)
    fail(book, T0)
    snap = book.snapshot(T0 + 2)
    ok = snap["ok"]
    assert ok.ttft_s == pytest.approx(0.34)
    assert ok.tokens_per_s == pytest.approx(88.0)
    assert ok == DeploymentHealth(
        state="healthy",
        cooldown_remaining_s=0.0,
        ttft_s=ok.ttft_s,
        tokens_per_s=ok.tokens_per_s,
        latency_s=2.0,
        samples=1,
        failure_streak=0,
        cooldowns=0,
    )
    assert snap["d"].state == "cooling_down"
    assert snap["d"].cooldown_remaining_s == 3.0
    assert snap["d"].failure_streak == 1
    assert book.snapshot(T0 + 5)["d"].state == "half_open"
    assert book.measurements().keys() == {"ok", "d"}


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="alpha"):
        HealthBook(alpha=0)
    with pytest.raises(ValueError, match="failure_threshold"):
        HealthBook(failure_threshold=0)


def test_an_attempt_that_ends_without_a_verdict_frees_the_probe_slot() -> None:
    from nitroproxy.core.health import HealthBook

    book = HealthBook(failure_threshold=1, base_cooldown=5.0, probe_timeout=60.0)
    book.record_failure("d", 0.0)
    assert not book.available("d", 1.0)
    assert book.begin_attempt("d", 6.0)  # half-open: this request takes the probe
    assert not book.available("d", 6.5)  # nobody else meanwhile
    book.end_attempt("d")  # e.g. the client went away: no verdict either way
    assert book.available("d", 7.0)
