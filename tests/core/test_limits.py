from __future__ import annotations

import pytest

from nitroproxy.core.errors import QuotaExceeded, RateLimited
from nitroproxy.core.limits import (
    Admission,
    KeyLimits,
    RateLimits,
    check_budget,
    format_duration,
    ratelimit_headers,
    to_error,
)

T0 = 1000.0


def test_requests_exact_at_the_boundary() -> None:
    rl = RateLimits()
    limits = KeyLimits(rpm=3)
    for i, t in enumerate((T0, T0 + 10, T0 + 20)):
        adm = rl.admit("k", limits, tokens=0, now=t, concurrent=False)
        assert adm.allowed
        assert adm.remaining_requests == 2 - i
    denied = rl.admit("k", limits, tokens=0, now=T0 + 30, concurrent=False)
    assert not denied.allowed
    assert denied.reason == "requests"
    assert denied.retry_after == 30.0  # the first request leaves the window at T0 + 60
    assert ratelimit_headers(denied) == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "50s",  # the last one leaves at T0 + 80
        "retry-after": "30",
    }
    err = to_error(denied)
    assert type(err) is RateLimited
    assert err.status == 429
    assert err.retry_after == 30.0
    assert "3 requests per min" in err.message
    assert err.headers["retry-after"] == "30"
    # just before the first request is 60 s old: still refused; at 60 s: allowed
    assert not rl.admit("k", limits, tokens=0, now=T0 + 59.999, concurrent=False).allowed
    again = rl.admit("k", limits, tokens=0, now=T0 + 60, concurrent=False)
    assert again.allowed
    assert again.remaining_requests == 0
    assert not rl.admit("k", limits, tokens=0, now=T0 + 60, concurrent=False).allowed


def test_denied_requests_do_not_count() -> None:
    rl = RateLimits()
    limits = KeyLimits(rpm=1)
    assert rl.admit("k", limits, tokens=0, now=T0).allowed
    for t in range(1, 50):
        assert not rl.admit("k", limits, tokens=0, now=T0 + t).allowed
    assert rl.admit("k", limits, tokens=0, now=T0 + 60).allowed


def test_keys_are_independent() -> None:
    rl = RateLimits()
    limits = KeyLimits(rpm=1)
    assert rl.admit("a", limits, tokens=0, now=T0).allowed
    assert rl.admit("b", limits, tokens=0, now=T0).allowed
    assert not rl.admit("a", limits, tokens=0, now=T0).allowed


def test_tokens_per_minute_window() -> None:
    rl = RateLimits()
    limits = KeyLimits(tpm=1000)
    assert rl.admit("k", limits, tokens=600, now=T0, concurrent=False).allowed
    adm = rl.admit("k", limits, tokens=400, now=T0 + 5, concurrent=False)
    assert adm.allowed
    assert adm.remaining_tokens == 0
    assert adm.reset_tokens == 60.0
    denied = rl.admit("k", limits, tokens=1, now=T0 + 10, concurrent=False)
    assert (denied.allowed, denied.reason, denied.retry_after) == (
        False,
        "tokens",
        50.0,
    )
    assert ratelimit_headers(denied) == {
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "55s",
        "retry-after": "50",
    }
    # 700 tokens need both entries gone: wait until T0 + 65
    assert rl.admit("k", limits, tokens=700, now=T0 + 60, concurrent=False).retry_after == 5.0
    assert rl.admit("k", limits, tokens=600, now=T0 + 60, concurrent=False).allowed


def test_a_request_larger_than_the_token_limit_can_never_pass() -> None:
    rl = RateLimits()
    adm = rl.admit("k", KeyLimits(tpm=100), tokens=101, now=T0)
    assert (adm.allowed, adm.reason, adm.retry_after) == (False, "tokens", None)
    err = to_error(adm)
    assert "Request too large" in err.message
    assert "retry-after" not in err.headers
    assert len(rl) == 0


def test_settle_corrects_the_estimate_at_its_own_timestamp() -> None:
    rl = RateLimits()
    limits = KeyLimits(tpm=1000)
    assert rl.admit("k", limits, tokens=100, now=T0).allowed
    rl.settle("k", admitted_tokens=100, actual_tokens=900, at=T0, now=T0 + 20)
    denied = rl.admit("k", limits, tokens=200, now=T0 + 30)
    assert (denied.allowed, denied.remaining_tokens, denied.retry_after) == (
        False,
        100,
        30.0,
    )
    # correcting downwards frees the room again
    rl.settle("k", admitted_tokens=900, actual_tokens=50, at=T0, now=T0 + 31)
    assert rl.admit("k", limits, tokens=200, now=T0 + 31).remaining_tokens == 750
    # the corrected entry still expires with the original admission
    assert rl.admit("k", limits, tokens=800, now=T0 + 60).remaining_tokens == 0


def test_settle_after_the_window_or_for_unknown_keys_is_a_no_op() -> None:
    rl = RateLimits()
    limits = KeyLimits(tpm=1000)
    assert rl.admit("k", limits, tokens=100, now=T0, concurrent=False).allowed
    rl.settle("k", admitted_tokens=100, actual_tokens=5000, at=T0, now=T0 + 61)
    rl.settle("nobody", admitted_tokens=1, actual_tokens=2, at=T0, now=T0)
    assert rl.admit("k", limits, tokens=1000, now=T0 + 61, concurrent=False).allowed


def test_same_instant_admissions_coalesce_and_settle_each() -> None:
    rl = RateLimits()
    limits = KeyLimits(rpm=10, tpm=1000)
    for _ in range(3):
        assert rl.admit("k", limits, tokens=100, now=T0, concurrent=False).allowed
    rl.settle("k", admitted_tokens=100, actual_tokens=10, at=T0, now=T0 + 1)
    adm = rl.admit("k", limits, tokens=0, now=T0 + 1, concurrent=False)
    assert (adm.remaining_requests, adm.remaining_tokens) == (6, 790)


def test_concurrency_slots() -> None:
    rl = RateLimits()
    limits = KeyLimits(max_concurrent=2)
    assert rl.admit("k", limits, tokens=0, now=T0).allowed
    assert rl.admit("k", limits, tokens=0, now=T0).allowed
    denied = rl.admit("k", limits, tokens=0, now=T0)
    assert (denied.allowed, denied.reason, denied.retry_after) == (
        False,
        "concurrency",
        1.0,
    )
    assert ratelimit_headers(denied) == {"retry-after": "1"}
    assert "2 concurrent" in to_error(denied).message
    # requests that don't take a slot are not limited by it
    assert rl.admit("k", limits, tokens=0, now=T0, concurrent=False).allowed
    rl.release("k", T0 + 1)
    assert rl.active("k") == 1
    assert rl.admit("k", limits, tokens=0, now=T0 + 1).allowed


def test_refusal_waits_for_every_exceeded_limit() -> None:
    rl = RateLimits()
    limits = KeyLimits(rpm=1, tpm=100, max_concurrent=1)
    assert rl.admit("k", limits, tokens=100, now=T0).allowed
    adm = rl.admit("k", limits, tokens=10, now=T0 + 15)
    assert (adm.reason, adm.retry_after) == ("concurrency", 45.0)


def test_budget_cut_off() -> None:
    limits = KeyLimits(budget_day_usd=5.0, budget_month_usd=100.0)
    assert check_budget(limits, 4.99, 50.0) is None
    day = check_budget(limits, 5.0, 50.0)
    assert isinstance(day, QuotaExceeded)
    assert (day.status, day.code, day.openai_type) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
    )
    assert "daily budget of $5.00" in day.message
    month = check_budget(limits, 0.0, 100.01)
    assert month is not None
    assert "monthly" in month.message
    assert check_budget(KeyLimits(), 1e9, 1e9) is None


def test_budget_is_checked_in_admit_and_counts_nothing() -> None:
    rl = RateLimits()
    limits = KeyLimits(rpm=5, budget_month_usd=10.0)
    adm = rl.admit("k", limits, tokens=0, now=T0, spent_month_usd=10.0)
    assert (adm.allowed, adm.reason, adm.retry_after) == (False, "budget", None)
    assert adm.remaining_requests == 5
    err = to_error(adm)
    assert isinstance(err, QuotaExceeded)
    assert err.code == "insufficient_quota"
    assert err.headers["x-ratelimit-remaining-requests"] == "5"
    assert "retry-after" not in err.headers
    assert rl.active("k") == 0


def test_idle_keys_are_forgotten() -> None:
    rl = RateLimits()
    limits = KeyLimits(rpm=10, tpm=1000)
    for i in range(100):
        rl.admit(f"k{i}", limits, tokens=5, now=T0, concurrent=False)
    assert len(rl) == 100
    rl.admit("held", KeyLimits(), tokens=0, now=T0 + 1)  # holds a slot, no windows
    rl.admit("fresh", limits, tokens=5, now=T0 + 60, concurrent=False)  # sweeps
    assert len(rl) == 2
    rl.release("held", T0 + 61)
    assert len(rl) == 1
    rl.sweep(T0 + 120)
    assert len(rl) == 0


def test_unlimited_keys_leave_no_state_and_no_headers() -> None:
    rl = RateLimits()
    adm = rl.admit("k", KeyLimits(), tokens=10_000, now=T0, concurrent=False)
    assert adm.allowed
    assert ratelimit_headers(adm) == {}
    assert len(rl) == 0


def test_window_log_stays_bounded_under_steady_traffic() -> None:
    rl = RateLimits()
    limits = KeyLimits(rpm=1000, tpm=10**9)
    for i in range(10_000):
        assert rl.admit("k", limits, tokens=1, now=T0 + i * 0.5, concurrent=False).allowed
    state = rl._keys["k"]
    assert len(state.requests.stamps) <= 2 * 120 + 1
    assert state.requests.total == 120


def test_allowed_admission_headers() -> None:
    rl = RateLimits()
    adm = rl.admit("k", KeyLimits(rpm=60, tpm=150_000), tokens=16, now=T0)
    assert ratelimit_headers(adm) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-tokens": "149984",
        "x-ratelimit-reset-tokens": "1m0s",
    }


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, "0s"),
        (-1.0, "0s"),
        (0.0004, "1ms"),
        (0.012, "12ms"),
        (0.02, "20ms"),
        (0.999, "999ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (8.64, "8.64s"),
        (59.9999, "1m0s"),
        (60.0, "1m0s"),
        (61.25, "1m1.25s"),
        (360.0, "6m0s"),
        (3600.0, "1h0m0s"),
        (3723.004, "1h2m3.004s"),
    ],
)
def test_format_duration_matches_openai_style(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected


@pytest.mark.parametrize(("retry_after", "header"), [(0.001, "1"), (1.0, "1"), (1.2, "2")])
def test_retry_after_is_whole_seconds_rounded_up(retry_after: float, header: str) -> None:
    adm = Admission(allowed=False, reason="requests", retry_after=retry_after)
    assert ratelimit_headers(adm)["retry-after"] == header
