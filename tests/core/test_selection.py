from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from nitroproxy.core.errors import InvalidRequest, NoDeploymentAvailable
from nitroproxy.core.selection import (
    Candidate,
    Measurement,
    ProviderPrefs,
    Strategy,
    choose,
    parse_provider_prefs,
    split_model_suffix,
)
from nitroproxy.core.types import Price


def cand(
    name: str,
    position: int,
    *,
    provider: str | None = None,
    weight: float = 1.0,
    price: tuple[float, float] = (1.0, 1.0),
) -> Candidate:
    return Candidate(
        name=name,
        provider=provider or f"prov-{name}",
        upstream_model="m",
        weight=weight,
        price=Price(input=price[0], output=price[1]),
        position=position,
    )


def fixed_rng(*values: float) -> Callable[[], float]:
    it = itertools.cycle(values)
    return lambda: next(it)


def names(
    candidates: Sequence[Candidate],
    strategy: Strategy = Strategy.FALLBACK,
    *,
    prefs: ProviderPrefs | None = None,
    measurements: Mapping[str, Measurement] | None = None,
    available: Callable[[str], bool] | Mapping[str, bool] | None = None,
    prompt_tokens: int = 1000,
    max_output_tokens: int = 100,
    rng: Callable[[], float] | None = None,
) -> list[str]:
    chosen = choose(
        candidates,
        strategy=strategy,
        prefs=prefs or ProviderPrefs(),
        measurements=measurements or {},
        available=available if available is not None else {},
        prompt_tokens=prompt_tokens,
        max_output_tokens=max_output_tokens,
        rng=rng or fixed_rng(0.0),
        model="gpt-x",
    )
    return [c.name for c in chosen]


def meas(ttft: float | None = None, tps: float | None = None) -> Measurement:
    return Measurement(ttft_s=ttft, tokens_per_s=tps, samples=5)


A, B, C = cand("a", 0), cand("b", 1), cand("c", 2)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", ("gpt-4o", None)),
        ("gpt-4o:floor", ("gpt-4o", Strategy.PRICE)),
        ("gpt-4o:nitro", ("gpt-4o", Strategy.THROUGHPUT)),
        ("ft:gpt-4o:org", ("ft:gpt-4o:org", None)),
        ("ft:gpt-4o:org:nitro", ("ft:gpt-4o:org", Strategy.THROUGHPUT)),
        ("gpt-4o:floor:x", ("gpt-4o:floor:x", None)),
        ("gpt-4o:nitro:floor", ("gpt-4o:nitro", Strategy.PRICE)),
        ("gpt-4o:Floor", ("gpt-4o:Floor", None)),
        (":floor", (":floor", None)),
    ],
)
def test_split_model_suffix(model: str, expected: tuple[str, Strategy | None]) -> None:
    assert split_model_suffix(model) == expected


def test_fallback_follows_config_position_not_input_order() -> None:
    assert names([C, A, B]) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("prices", "prompt", "output", "expected"),
    [
        # (input, output) USD per million tokens
        ({"a": (3, 15), "b": (1, 30), "c": (5, 5)}, 1000, 100, ["b", "a", "c"]),
        # long outputs make the cheap-output deployment win
        ({"a": (3, 15), "b": (1, 30), "c": (5, 5)}, 1000, 10_000, ["c", "a", "b"]),
        # ties keep config order
        ({"a": (2, 2), "b": (1, 1), "c": (2, 2)}, 10, 10, ["b", "a", "c"]),
    ],
)
def test_price_orders_by_estimated_cost_of_this_request(
    prices: dict[str, tuple[float, float]],
    prompt: int,
    output: int,
    expected: list[str],
) -> None:
    pool = [cand(n, i, price=prices[n]) for i, n in enumerate("abc")]
    got = names(pool, Strategy.PRICE, prompt_tokens=prompt, max_output_tokens=output)
    assert got == expected


@pytest.mark.parametrize(
    ("measurements", "expected"),
    [
        ({"a": meas(tps=50), "b": meas(tps=120), "c": meas(tps=80)}, ["b", "c", "a"]),
        # unmeasured after measured, in config order
        ({"c": meas(tps=10)}, ["c", "a", "b"]),
        ({"a": meas(ttft=0.1), "b": meas(tps=5)}, ["b", "a", "c"]),
        # ties by position
        ({"a": meas(tps=10), "b": meas(tps=20), "c": meas(tps=20)}, ["b", "c", "a"]),
        ({}, ["a", "b", "c"]),
    ],
)
def test_throughput_orders_by_descending_tokens_per_second(
    measurements: dict[str, Measurement], expected: list[str]
) -> None:
    assert names([A, B, C], Strategy.THROUGHPUT, measurements=measurements) == expected


@pytest.mark.parametrize(
    ("measurements", "expected"),
    [
        (
            {"a": meas(ttft=0.9), "b": meas(ttft=0.2), "c": meas(ttft=0.5)},
            ["b", "c", "a"],
        ),
        ({"b": meas(ttft=3.0)}, ["b", "a", "c"]),
        (
            {"a": meas(ttft=0.3), "c": meas(ttft=0.3), "b": meas(tps=99)},
            ["a", "c", "b"],
        ),
    ],
)
def test_latency_orders_by_ascending_time_to_first_token(
    measurements: dict[str, Measurement], expected: list[str]
) -> None:
    assert names([A, B, C], Strategy.LATENCY, measurements=measurements) == expected


@pytest.mark.parametrize(
    ("draws", "expected"),
    [
        # weights a=1, b=3, c=6 (total 10); first draw picks on [0,1) [1,4) [4,10)
        ((0.05, 0.0), ["a", "b", "c"]),
        ((0.2, 0.0), ["b", "a", "c"]),
        ((0.2, 0.99), ["b", "c", "a"]),
        ((0.5, 0.0), ["c", "a", "b"]),
        ((0.5, 0.5), ["c", "b", "a"]),  # remaining a=1, b=3: 0.5 * 4 = 2 -> b
        ((0.999999999, 0.0), ["c", "a", "b"]),
    ],
)
def test_weighted_draws_without_replacement(draws: tuple[float, ...], expected: list[str]) -> None:
    pool = [cand("a", 0, weight=1), cand("b", 1, weight=3), cand("c", 2, weight=6)]
    assert names(pool, Strategy.WEIGHTED, rng=fixed_rng(*draws)) == expected


def test_weighted_puts_zero_weights_last_and_is_deterministic_per_seed() -> None:
    pool = [cand("z", 0, weight=0), cand("a", 1, weight=1), cand("b", 2, weight=1)]
    assert names(pool, Strategy.WEIGHTED, rng=fixed_rng(0.9))[-1] == "z"
    first = names(pool, Strategy.WEIGHTED, rng=random.Random(7).random)
    assert first == names(pool, Strategy.WEIGHTED, rng=random.Random(7).random)


def test_weighted_first_choice_follows_weights() -> None:
    pool = [cand("a", 0, weight=1), cand("b", 1, weight=3)]
    rng = random.Random(1234)
    firsts = Counter(names(pool, Strategy.WEIGHTED, rng=rng.random)[0] for _ in range(4000))
    assert 0.70 < firsts["b"] / 4000 < 0.80


def test_weighted_picks_among_available_in_proportion_to_weight() -> None:
    pool = [cand("a", 0, weight=1), cand("b", 1, weight=5), cand("c", 2, weight=3)]
    rng = random.Random(99)
    firsts = Counter(
        names(pool, Strategy.WEIGHTED, rng=rng.random, available={"b": False})[0]
        for _ in range(4000)
    )
    assert set(firsts) == {"a", "c"}
    assert 0.70 < firsts["c"] / 4000 < 0.80


@pytest.mark.parametrize(
    ("strategy", "available", "expected"),
    [
        (Strategy.FALLBACK, {"a": False}, ["b", "c", "a"]),
        (Strategy.FALLBACK, {"a": False, "c": False}, ["b", "a", "c"]),
        # everything cooling down: still the full list, in strategy order
        (Strategy.FALLBACK, {"a": False, "b": False, "c": False}, ["a", "b", "c"]),
        (Strategy.THROUGHPUT, {"b": False}, ["c", "a", "b"]),
    ],
)
def test_cooling_down_deployments_go_last_but_are_never_dropped(
    strategy: Strategy, available: dict[str, bool], expected: list[str]
) -> None:
    measurements = {"a": meas(tps=10), "b": meas(tps=30), "c": meas(tps=20)}
    got = names([A, B, C], strategy, measurements=measurements, available=available)
    assert got == expected
    # a predicate works the same as a mapping
    assert (
        names(
            [A, B, C],
            strategy,
            measurements=measurements,
            available=lambda n: available.get(n, True),
        )
        == expected
    )


def test_sort_preference_overrides_configured_strategy() -> None:
    pool = [cand("a", 0, price=(5, 5)), cand("b", 1, price=(1, 1))]
    assert names(pool, Strategy.FALLBACK, prefs=ProviderPrefs(sort=Strategy.PRICE)) == [
        "b",
        "a",
    ]


@pytest.mark.parametrize(
    ("prefs", "expected"),
    [
        (ProviderPrefs(only=("b", "c")), ["b", "c"]),
        (ProviderPrefs(only=("shared",)), ["a", "b"]),
        (ProviderPrefs(only=("prov-c", "a")), ["a", "c"]),
        (ProviderPrefs(ignore=("a",)), ["b", "c"]),
        (ProviderPrefs(ignore=("shared",)), ["c"]),
        (ProviderPrefs(max_price_prompt=2.0), ["a", "b"]),
        (ProviderPrefs(max_price_completion=4.0), ["a", "c"]),
        (ProviderPrefs(max_price_prompt=2.0, max_price_completion=2.0), ["a"]),
        (ProviderPrefs(order=("c",)), ["c", "a", "b"]),
        (ProviderPrefs(order=("c", "shared")), ["c", "a", "b"]),
        (ProviderPrefs(order=("b", "nope", "c")), ["b", "c", "a"]),
        (ProviderPrefs(order=("c", "b"), allow_fallbacks=False), ["c", "b"]),
        (ProviderPrefs(order=("shared",), allow_fallbacks=False), ["a", "b"]),
        (ProviderPrefs(allow_fallbacks=False), ["a"]),
    ],
)
def test_provider_prefs_filter_and_order(prefs: ProviderPrefs, expected: list[str]) -> None:
    pool = [
        cand("a", 0, provider="shared", price=(1, 2)),
        cand("b", 1, provider="shared", price=(2, 8)),
        cand("c", 2, price=(3, 3)),
    ]
    assert names(pool, prefs=prefs) == expected


def test_order_still_demotes_cooling_down_deployments() -> None:
    prefs = ProviderPrefs(order=("c", "a"))
    assert names([A, B, C], prefs=prefs, available={"c": False}) == ["a", "b", "c"]


def test_without_fallbacks_the_single_choice_is_an_available_one() -> None:
    prefs = ProviderPrefs(allow_fallbacks=False)
    assert names([A, B, C], prefs=prefs, available={"a": False}) == ["b"]


@pytest.mark.parametrize(
    ("prefs", "param", "fragment"),
    [
        (
            ProviderPrefs(only=("foo",)),
            "provider.only",
            "matches provider.only=['foo']",
        ),
        (
            ProviderPrefs(ignore=("a", "b")),
            "provider.ignore",
            "excluded by provider.ignore",
        ),
        (
            ProviderPrefs(max_price_prompt=0.5),
            "provider.max_price",
            "within provider.max_price",
        ),
        (
            ProviderPrefs(order=("zz",), allow_fallbacks=False),
            "provider.order",
            "allow_fallbacks is false",
        ),
    ],
)
def test_filters_that_leave_nothing_say_why(
    prefs: ProviderPrefs, param: str, fragment: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        names([A, B], prefs=prefs)
    assert info.value.status == 400
    assert info.value.param == param
    assert fragment in info.value.message
    assert "'gpt-x'" in info.value.message
    assert "a, b" in info.value.message


def test_no_candidates_at_all_is_not_a_client_error() -> None:
    with pytest.raises(NoDeploymentAvailable):
        names([])


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (None, ProviderPrefs()),
        ({}, ProviderPrefs()),
        (
            {"order": ["openai", "azure-eu"]},
            ProviderPrefs(order=("openai", "azure-eu")),
        ),
        ({"only": ["a"], "ignore": ["b"]}, ProviderPrefs(only=("a",), ignore=("b",))),
        ({"allow_fallbacks": False}, ProviderPrefs(allow_fallbacks=False)),
        ({"sort": "price"}, ProviderPrefs(sort=Strategy.PRICE)),
        ({"sort": "throughput"}, ProviderPrefs(sort=Strategy.THROUGHPUT)),
        ({"sort": "latency"}, ProviderPrefs(sort=Strategy.LATENCY)),
        (
            {"max_price": {"prompt": 1, "completion": 2.5}},
            ProviderPrefs(max_price_prompt=1.0, max_price_completion=2.5),
        ),
        ({"max_price": {"prompt": 0}}, ProviderPrefs(max_price_prompt=0.0)),
        ({"order": None, "sort": None, "allow_fallbacks": None}, ProviderPrefs()),
    ],
)
def test_parse_provider_prefs(obj: Any, expected: ProviderPrefs) -> None:
    assert parse_provider_prefs(obj) == expected


@pytest.mark.parametrize(
    ("obj", "param"),
    [
        ([], "provider"),
        ("openai", "provider"),
        ({"order": "openai"}, "provider.order"),
        ({"order": [1]}, "provider.order"),
        ({"only": [""]}, "provider.only"),
        ({"ignore": {"a": 1}}, "provider.ignore"),
        ({"allow_fallbacks": "no"}, "provider.allow_fallbacks"),
        ({"allow_fallbacks": 0}, "provider.allow_fallbacks"),
        ({"sort": "fallback"}, "provider.sort"),
        ({"sort": "cheap"}, "provider.sort"),
        ({"max_price": 3}, "provider.max_price"),
        ({"max_price": {"prompt": -1}}, "provider.max_price.prompt"),
        ({"max_price": {"completion": "1"}}, "provider.max_price.completion"),
        ({"max_price": {"completion": True}}, "provider.max_price.completion"),
        ({"max_price": {"prompt": float("nan")}}, "provider.max_price.prompt"),
        ({"max_price": {"request": 1}}, "provider.max_price.request"),
        ({"quantizations": ["fp8"]}, "provider.quantizations"),
    ],
)
def test_parse_provider_prefs_rejects_bad_fields(obj: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_provider_prefs(obj)
    assert info.value.param == param
    assert info.value.status == 400
