"""Which deployment serves a request: model suffixes, per-request provider preferences and
the ordering strategies.

Everything here is a pure function of (request facts, candidates, measurements, health); the
random draw of the weighted strategy comes in as ``rng``, so every ordering is a table test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nitroproxy.core import models, pricing
from nitroproxy.core.errors import InvalidRequest, NoDeploymentAvailable
from nitroproxy.core.types import Price

__all__ = [
    "Candidate",
    "Measurement",
    "ProviderPrefs",
    "Strategy",
    "choose",
    "parse_provider_prefs",
    "split_model_suffix",
]


class Strategy(StrEnum):
    FALLBACK = "fallback"
    WEIGHTED = "weighted"
    PRICE = "price"
    THROUGHPUT = "throughput"
    LATENCY = "latency"


_SUFFIXES = {":floor": Strategy.PRICE, ":nitro": Strategy.THROUGHPUT}
_SORTS = {s.value: s for s in (Strategy.PRICE, Strategy.THROUGHPUT, Strategy.LATENCY)}


def split_model_suffix(model: str) -> tuple[str, Strategy | None]:
    """``"gpt-4o:floor"`` → ``("gpt-4o", PRICE)``; ``":nitro"`` → THROUGHPUT. Only a trailing
    ``:floor``/``:nitro`` counts, so ``"ft:gpt-4o:org"`` stays whole."""
    name, suffix = models.split_suffix(model)
    return name, None if suffix is None else _SUFFIXES[suffix]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment of a public model, as configured."""

    name: str
    provider: str
    upstream_model: str
    weight: float
    price: Price
    position: int


@dataclass(frozen=True, slots=True)
class Measurement:
    ttft_s: float | None
    tokens_per_s: float | None
    samples: int


@dataclass(frozen=True, slots=True)
class ProviderPrefs:
    """The OpenRouter-compatible subset of the per-request ``provider`` object. Names match a
    candidate's provider name or its deployment name. Prices are USD per million tokens."""

    order: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    allow_fallbacks: bool = True
    sort: Strategy | None = None
    max_price_prompt: float | None = None
    max_price_completion: float | None = None


_PREF_FIELDS = ("order", "only", "ignore", "allow_fallbacks", "sort", "max_price")


NO_PREFS = ProviderPrefs()
"""A request without a ``provider`` object."""


def parse_provider_prefs(obj: Any) -> ProviderPrefs:
    """Validate the request's ``provider`` object; ``None`` means no preferences.

    Unknown fields are rejected rather than ignored: a client that asks OpenRouter for, say,
    ``quantizations`` must not silently get a deployment it would have excluded.
    """
    if obj is None:
        return NO_PREFS
    if not isinstance(obj, dict):
        raise InvalidRequest("provider must be an object", param="provider")
    for field in obj:
        if field not in _PREF_FIELDS:
            raise InvalidRequest(
                f"provider.{field} is not supported (supported: {', '.join(_PREF_FIELDS)})",
                param=f"provider.{field}",
            )
    allow = obj.get("allow_fallbacks")
    if allow is not None and not isinstance(allow, bool):
        raise InvalidRequest(
            "provider.allow_fallbacks must be a boolean",
            param="provider.allow_fallbacks",
        )
    sort = obj.get("sort")
    if sort is not None and sort not in _SORTS:
        raise InvalidRequest(
            f"provider.sort must be one of {', '.join(_SORTS)}", param="provider.sort"
        )
    prompt, completion = _parse_max_price(obj.get("max_price"))
    return ProviderPrefs(
        order=_parse_names(obj, "order"),
        only=_parse_names(obj, "only"),
        ignore=_parse_names(obj, "ignore"),
        allow_fallbacks=True if allow is None else allow,
        sort=None if sort is None else _SORTS[sort],
        max_price_prompt=prompt,
        max_price_completion=completion,
    )


def _parse_names(obj: dict[str, Any], field: str) -> tuple[str, ...]:
    value = obj.get(field)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(
            f"provider.{field} must be an array of non-empty strings",
            param=f"provider.{field}",
        )
    return tuple(value)


def _parse_max_price(value: Any) -> tuple[float | None, float | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise InvalidRequest("provider.max_price must be an object", param="provider.max_price")
    out: dict[str, float | None] = {"prompt": None, "completion": None}
    for field, price in value.items():
        param = f"provider.max_price.{field}"
        if field not in out:
            raise InvalidRequest(
                f"{param} is not supported (supported: prompt, completion)", param=param
            )
        if price is None:
            continue
        if isinstance(price, bool) or not isinstance(price, int | float) or not price >= 0:
            raise InvalidRequest(
                f"{param} must be a non-negative number (USD per million tokens)",
                param=param,
            )
        out[field] = float(price)
    return out["prompt"], out["completion"]


def choose(
    candidates: Sequence[Candidate],
    *,
    strategy: Strategy,
    prefs: ProviderPrefs,
    measurements: Mapping[str, Measurement],
    available: Callable[[str], bool] | Mapping[str, bool],
    prompt_tokens: int,
    max_output_tokens: int,
    rng: Callable[[], float],
    model: str | None = None,
) -> list[Candidate]:
    """The deployments to try, first = preferred, the rest fallbacks in order.

    Steps: filter by ``only``/``ignore``/``max_price`` (InvalidRequest naming the filter when
    nothing is left); order by ``prefs.sort`` or else ``strategy``; then stably move the names
    in ``prefs.order`` to the front in that order; then stably move unavailable (cooling-down)
    deployments after the available ones. Cooling-down deployments are demoted, never
    dropped: when all of them cool down we still try them, so the circuit breaker never makes
    a whole model dead. Without fallbacks only the first is returned, or, when ``order`` is
    given, only the ordered ones (as OpenRouter does).

    ``rng`` is called once per weighted draw; the result is deterministic given its values.
    Measurements missing from the mapping count as unmeasured; names missing from an
    ``available`` mapping count as available.
    """
    if not candidates:
        raise NoDeploymentAvailable(f"model {_quote(model)} has no deployments")
    pool = _filter(candidates, prefs, model)
    ranked = _order(
        pool,
        prefs.sort or strategy,
        measurements,
        prompt_tokens,
        max_output_tokens,
        rng,
    )
    if prefs.order:
        ranked.sort(key=lambda c: _order_rank(c, prefs.order))
        if not prefs.allow_fallbacks:
            ranked = [c for c in ranked if _order_rank(c, prefs.order) < len(prefs.order)]
            if not ranked:
                raise InvalidRequest(
                    f"no deployment of model {_quote(model)} matches "
                    f"provider.order={list(prefs.order)} and provider.allow_fallbacks is false "
                    f"(deployments: {_names(pool)})",
                    param="provider.order",
                )
    is_up = _availability(available)
    up = {c.name: is_up(c.name) for c in ranked}  # ask once per name: the predicate may be costly
    result = [c for c in ranked if up[c.name]] + [c for c in ranked if not up[c.name]]
    if not prefs.allow_fallbacks and not prefs.order:
        return result[:1]
    return result


def _availability(
    available: Callable[[str], bool] | Mapping[str, bool],
) -> Callable[[str], bool]:
    if isinstance(available, Mapping):
        return lambda name: available.get(name, True)
    return available


def _quote(model: str | None) -> str:
    return "?" if model is None else f"'{model}'"


def _names(candidates: Sequence[Candidate]) -> str:
    return ", ".join(c.name for c in candidates)


def _matches(candidate: Candidate, names: tuple[str, ...]) -> bool:
    return candidate.provider in names or candidate.name in names


def _order_rank(candidate: Candidate, order: tuple[str, ...]) -> int:
    for i, name in enumerate(order):
        if name in (candidate.provider, candidate.name):
            return i
    return len(order)


def _filter(
    candidates: Sequence[Candidate], prefs: ProviderPrefs, model: str | None
) -> list[Candidate]:
    everyone = _names(candidates)
    pool = list(candidates)
    if prefs.only:
        pool = [c for c in pool if _matches(c, prefs.only)]
        if not pool:
            raise InvalidRequest(
                f"no deployment of model {_quote(model)} matches "
                f"provider.only={list(prefs.only)} (deployments: {everyone})",
                param="provider.only",
            )
    if prefs.ignore:
        pool = [c for c in pool if not _matches(c, prefs.ignore)]
        if not pool:
            raise InvalidRequest(
                f"every deployment of model {_quote(model)} is excluded by "
                f"provider.ignore={list(prefs.ignore)} (deployments: {everyone})",
                param="provider.ignore",
            )
    max_in, max_out = prefs.max_price_prompt, prefs.max_price_completion
    if max_in is not None or max_out is not None:
        before = pool
        pool = [
            c
            for c in pool
            if (max_in is None or c.price.input <= max_in)
            and (max_out is None or c.price.output <= max_out)
        ]
        if not pool:
            bounds = " and ".join(
                f"{side} <= {bound:g}"
                for side, bound in (("prompt", max_in), ("completion", max_out))
                if bound is not None
            )
            prices = ", ".join(f"{c.name} {c.price.input:g}/{c.price.output:g}" for c in before)
            raise InvalidRequest(
                f"no deployment of model {_quote(model)} is within provider.max_price "
                f"({bounds} USD per million tokens; deployments: {_names(before)}; "
                f"their prices in/out: {prices})",
                param="provider.max_price",
            )
    return pool


def _order(
    pool: list[Candidate],
    strategy: Strategy,
    measurements: Mapping[str, Measurement],
    prompt_tokens: int,
    max_output_tokens: int,
    rng: Callable[[], float],
) -> list[Candidate]:
    by_position = sorted(pool, key=lambda c: c.position)
    if strategy is Strategy.FALLBACK:
        return by_position
    if strategy is Strategy.WEIGHTED:
        return _weighted(by_position, rng)
    if strategy is Strategy.PRICE:
        return sorted(
            by_position,
            key=lambda c: pricing.estimate_cost_nanos(c.price, prompt_tokens, max_output_tokens),
        )

    def measured(c: Candidate) -> float | None:
        m = measurements.get(c.name)
        if m is None:
            return None
        return m.tokens_per_s if strategy is Strategy.THROUGHPUT else m.ttft_s

    def key(c: Candidate) -> tuple[bool, float]:
        value = measured(c)
        if value is None:
            return True, 0.0
        return False, -value if strategy is Strategy.THROUGHPUT else value

    # sorted() is stable, so equal measurements keep config order.
    return sorted(by_position, key=key)


def _weighted(pool: list[Candidate], rng: Callable[[], float]) -> list[Candidate]:
    """Weighted random order without replacement (successive draws).

    A useful property: the relative order of any subset is itself a weighted draw over that
    subset, so demoting unavailable deployments afterwards still picks among the available
    ones in proportion to their weights. Zero (or negative) weights go last, in config order.
    """
    remaining = [c for c in pool if c.weight > 0]
    tail = [c for c in pool if c.weight <= 0]
    out: list[Candidate] = []
    while len(remaining) > 1:
        total = sum(c.weight for c in remaining)
        target = rng() * total
        index = len(remaining) - 1  # float rounding can leave target at the very top
        acc = 0.0
        for i, c in enumerate(remaining):
            acc += c.weight
            if target < acc:
                index = i
                break
        out.append(remaining.pop(index))
    return out + remaining + tail
