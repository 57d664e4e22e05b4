import pytest

from nitroproxy.core.days import DAY_S, day_ceil, day_of, day_start
from nitroproxy.core.retention import ANALYTICS_MAX_S, Cutoffs, RetentionPolicy, cutoffs

# 2024-03-10 00:00:00 UTC
MAR10 = 1_710_028_800.0


@pytest.mark.parametrize(
    ("ts", "day", "start"),
    [
        (0.0, "1970-01-01", 0.0),
        (86_399.9999999, "1970-01-01", 0.0),
        (86_400.0, "1970-01-02", 86_400.0),
        (MAR10, "2024-03-10", MAR10),
        (MAR10 - 0.001, "2024-03-09", MAR10 - DAY_S),
        (MAR10 + 12 * 3600.5, "2024-03-10", MAR10),
        (951_782_400.0, "2000-02-29", 951_782_400.0),  # leap day
    ],
)
def test_day_of_and_day_start_use_utc_days(ts, day, start):
    assert day_of(ts) == day
    assert day_start(ts) == start


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (MAR10, "2024-03-10"),
        (MAR10 + 0.5, "2024-03-11"),
        (MAR10 - 0.5, "2024-03-10"),
    ],
)
def test_day_ceil_is_first_day_starting_at_or_after(ts, expected):
    assert day_ceil(ts) == expected


def test_default_policy_keeps_requests_90_days_and_billing_7_years():
    policy = RetentionPolicy()
    assert policy.requests_s == 90 * DAY_S
    assert policy.billing_s == 7 * 365 * DAY_S


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_policy_rejects_non_positive_or_non_finite_windows(bad):
    with pytest.raises(ValueError, match="requests_s"):
        RetentionPolicy(requests_s=bad)
    with pytest.raises(ValueError, match="billing_s"):
        RetentionPolicy(billing_s=bad)


def test_raw_cutoff_is_aligned_down_to_a_utc_day_start():
    policy = RetentionPolicy(
        requests_s=2 * DAY_S,
        analytics_s=10 * DAY_S,
        billing_s=20 * DAY_S,
        audit_s=5 * DAY_S,
        closed_accounts_s=DAY_S,
    )
    now = MAR10 + 15 * 3600  # 2024-03-10 15:00 UTC
    # now - 2 days = 2024-03-08 15:00; only days entirely before that instant are rolled up.
    assert cutoffs(policy, now) == Cutoffs(
        raw_before=MAR10 - 2 * DAY_S,
        aggregates_before_day="2024-02-29",
        billing_before_day="2024-02-19",
        audit_before=now - 5 * DAY_S,
        closed_before=now - DAY_S,
    )


def test_default_windows_are_the_promised_ones():
    policy = RetentionPolicy()
    assert policy.analytics_s == ANALYTICS_MAX_S == 730 * DAY_S  # at most two years
    assert policy.audit_s == 730 * DAY_S
    assert policy.closed_accounts_s == 30 * DAY_S


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"analytics_s": ANALYTICS_MAX_S + 1}, "two years"),
        ({"requests_s": 800 * DAY_S}, "requests_s may not exceed analytics_s"),
        ({"requests_s": 20 * DAY_S, "billing_s": 10 * DAY_S}, "requests_s may not exceed"),
        ({"audit_s": 0.0}, "audit_s"),
        ({"closed_accounts_s": float("nan")}, "closed_accounts_s"),
    ],
)
def test_policy_rejects_windows_that_break_a_promise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetentionPolicy(**kwargs)


def test_cutoffs_on_an_exact_day_boundary():
    policy = RetentionPolicy(requests_s=DAY_S, analytics_s=3 * DAY_S, billing_s=3 * DAY_S)
    got = cutoffs(policy, MAR10)
    assert got.raw_before == MAR10 - DAY_S
    # 2024-03-07 ended exactly at the cutoff, so it is the first day kept.
    assert got.aggregates_before_day == got.billing_before_day == "2024-03-07"


def test_raw_cutoff_never_moves_backwards_as_time_passes():
    policy = RetentionPolicy(requests_s=3 * DAY_S)
    previous = -1.0
    for step in range(0, 5 * 24 * 4):
        got = cutoffs(policy, MAR10 + step * 900).raw_before
        assert got >= previous
        assert got % DAY_S == 0
        previous = got
