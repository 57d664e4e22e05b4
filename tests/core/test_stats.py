"""Public statistics arithmetic: quantiles, windows, counted outcomes, small-bucket suppression."""

from __future__ import annotations

import pytest

from nitroproxy.core.stats import (
    Bucket,
    Sample,
    Spread,
    bucket_json,
    quantile,
    summarize,
)

NOW = 1_000_000.0
PAIR = ("gpt", "openai")


def sample(
    ago: float = 10.0,
    outcome: str = "ok",
    ttft: float | None = 100.0,
    tps: float | None = 50.0,
    pair: tuple[str, str] = PAIR,
) -> Sample:
    return Sample(pair[0], pair[1], NOW - ago, outcome, ttft, tps)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 0.5, 5.0),
        ([5.0], 0.9, 5.0),
        ([1.0, 2.0], 0.5, 1.5),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
        ([1.0, 2.0, 3.0], 0.5, 2.0),
        ([float(i) for i in range(1, 11)], 0.9, 9.1),
        ([float(i) for i in range(1, 12)], 0.9, 10.0),
        ([1.0, 2.0, 3.0], 0.0, 1.0),
        ([1.0, 2.0, 3.0], 1.0, 3.0),
    ],
)
def test_quantile_interpolates_between_closest_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert quantile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize(("values", "q"), [([], 0.5), ([1.0], 1.5), ([1.0], -0.1)])
def test_quantile_rejects_bad_input(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        quantile(values, q)


def test_a_bucket_below_min_bucket_shows_no_numbers() -> None:
    out = summarize([PAIR], [sample()] * 9, now=NOW, min_bucket=10)
    (bucket,) = out["1h"]
    assert bucket == Bucket("gpt", "openai", None)
    assert bucket_json(bucket) == {
        "model": "gpt",
        "provider": "openai",
        "suppressed": True,
    }


def test_a_bucket_at_min_bucket_shows_its_numbers() -> None:
    samples = [sample(ttft=float(i), tps=float(10 * i)) for i in range(1, 11)]
    (bucket,) = summarize([PAIR], samples, now=NOW, min_bucket=10)["1h"]
    assert bucket.requests == 10
    assert bucket.success_rate == 1.0
    assert bucket.ttft_ms == Spread(median=5.5, p90=9.1, samples=10)
    assert bucket.output_tps == Spread(median=55.0, p90=91.0, samples=10)


def test_success_rate_counts_provider_failures_and_ignores_client_side_outcomes() -> None:
    samples = (
        [sample()] * 8
        + [sample(outcome="upstream_error", ttft=None, tps=None)]
        + [sample(outcome="timeout", ttft=None, tps=None)]
        + [sample(outcome=o) for o in ("client_error", "client_disconnected", "cache_hit")] * 5
    )
    (bucket,) = summarize([PAIR], samples, now=NOW, min_bucket=1)["1h"]
    assert bucket.requests == 10
    assert bucket.success_rate == pytest.approx(0.8)


def test_speed_figures_come_from_successful_requests_only() -> None:
    samples = [sample(ttft=100.0)] * 5 + [sample(outcome="stream_error", ttft=9999.0)] * 5
    (bucket,) = summarize([PAIR], samples, now=NOW, min_bucket=1)["1h"]
    assert bucket.ttft_ms is not None and bucket.ttft_ms.p90 == 100.0
    assert bucket.ttft_ms.samples == 5


def test_a_speed_figure_needs_min_bucket_measurements_of_its_own() -> None:
    samples = [sample(ttft=None, tps=None)] * 7 + [sample()] * 3
    (bucket,) = summarize([PAIR], samples, now=NOW, min_bucket=10)["1h"]
    assert bucket.requests == 10
    assert bucket.ttft_ms is None and bucket.output_tps is None
    assert bucket_json(bucket)["ttft_ms"] is None


def test_windows_are_one_hour_and_one_day_back_from_now() -> None:
    samples = [sample(ago=60.0)] * 2 + [sample(ago=7200.0)] * 3 + [sample(ago=90000.0)] * 4
    out = summarize([PAIR], [*samples, sample(ago=-5.0)], now=NOW, min_bucket=1)
    assert out["1h"][0].requests == 2
    assert out["24h"][0].requests == 5


def test_rows_are_the_configured_pairs_in_order_whatever_the_traffic() -> None:
    other = ("claude", "anthropic")
    samples = [sample(pair=other)] * 3 + [sample(pair=("gone", "old"))] * 50
    out = summarize([other, PAIR, other], samples, now=NOW, min_bucket=3)
    assert [(b.model, b.provider, b.requests) for b in out["24h"]] == [
        ("claude", "anthropic", 3),
        ("gpt", "openai", None),
    ]


def test_non_finite_measurements_are_ignored() -> None:
    samples = [sample(ttft=float("nan"), tps=float("inf"))] + [sample()] * 2
    (bucket,) = summarize([PAIR], samples, now=NOW, min_bucket=1)["1h"]
    assert bucket.ttft_ms is not None and bucket.ttft_ms.samples == 2
    assert bucket.output_tps is not None and bucket.output_tps.samples == 2


def test_bucket_json_has_only_names_and_numbers() -> None:
    (bucket,) = summarize([PAIR], [sample(ttft=123.456, tps=7.891)] * 3, now=NOW, min_bucket=1)[
        "1h"
    ]
    assert bucket_json(bucket) == {
        "model": "gpt",
        "provider": "openai",
        "suppressed": False,
        "requests": 3,
        "success_rate": 1.0,
        "ttft_ms": {"median": 123.5, "p90": 123.5, "samples": 3},
        "output_tokens_per_s": {"median": 7.9, "p90": 7.9, "samples": 3},
    }


def test_min_bucket_must_be_positive() -> None:
    with pytest.raises(ValueError):
        summarize([PAIR], [], now=NOW, min_bucket=0)


def _people(n: int, each: int = 2) -> list[Sample]:
    return [
        Sample(PAIR[0], PAIR[1], NOW - 10.0, "ok", 100.0 + p, 50.0, person=p)
        for p in range(n)
        for _ in range(each)
    ]


@pytest.mark.parametrize(
    ("k", "people", "shown"), [(10, 9, False), (10, 10, True), (15, 14, False)]
)
def test_a_bucket_needs_min_users_distinct_people(k, people, shown):
    [got] = summarize([PAIR], _people(people), now=NOW, min_bucket=1, min_users=k)["1h"]
    assert got.suppressed is not shown
    if shown:
        assert got.requests == 2 * people and got.ttft_ms is not None


def test_a_speed_figure_needs_min_users_people_of_its_own():
    # Ten people succeed, but only one of them reports time to first token.
    samples = [
        Sample(
            PAIR[0],
            PAIR[1],
            NOW - 10.0,
            "ok",
            100.0 if p == 0 else None,
            50.0,
            person=p,
        )
        for p in range(10)
        for _ in range(5)
    ]
    [got] = summarize([PAIR], samples, now=NOW, min_bucket=3, min_users=10)["1h"]
    assert got.requests == 50 and got.output_tps is not None
    assert got.ttft_ms is None  # five measurements, all from one person
