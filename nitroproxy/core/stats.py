"""Anonymous public statistics: per public model and provider, over fixed windows, the
request count, success rate, and median and p90 of time to first token and output speed.

Pure: samples in (already stripped of every identifier), buckets out; ``now`` is an argument.
A bucket with fewer than ``min_bucket`` counted requests, or from fewer than ``min_users``
distinct people, shows no numbers at all, and a speed figure needs ``min_bucket``
measurements from ``min_users`` people of its own, so every published number comes from at
least that many requests and people: one person's habits are never a bucket. A sample's
``person`` is an opaque number (equal numbers, same person) that never leaves this module.
Rows are the configured (model, provider) pairs, whether or not they saw traffic, so which
rows appear says nothing about who used what.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nitroproxy.core.types import Outcome

__all__ = [
    "COUNTED_OUTCOMES",
    "WINDOWS",
    "Bucket",
    "Sample",
    "Spread",
    "Thresholds",
    "bucket_json",
    "quantile",
    "summarize",
]

WINDOWS: Mapping[str, float] = {"1h": 3600.0, "24h": 86400.0}

# Outcomes that say something about the provider: success, or its failure. A request the
# client broke off or sent malformed is not the provider's doing, so it is not counted.
COUNTED_OUTCOMES = frozenset(
    {
        Outcome.OK.value,
        Outcome.UPSTREAM_ERROR.value,
        Outcome.TIMEOUT.value,
        Outcome.RATE_LIMITED.value,
        Outcome.STREAM_ERROR.value,
    }
)


@dataclass(frozen=True, slots=True)
class Sample:
    """The fields of one usage record that statistics may see: no key, user or address;
    ``person`` only tells samples of one person from another's."""

    model: str
    provider: str
    ts: float
    outcome: str
    ttft_ms: float | None
    output_tps: float | None
    person: int = 0


@dataclass(frozen=True, slots=True)
class Spread:
    median: float
    p90: float
    samples: int


@dataclass(frozen=True, slots=True)
class Bucket:
    """``requests`` is None when the bucket is suppressed (too few requests)."""

    model: str
    provider: str
    requests: int | None
    success_rate: float | None = None
    ttft_ms: Spread | None = None
    output_tps: Spread | None = None

    @property
    def suppressed(self) -> bool:
        return self.requests is None


@dataclass(frozen=True, slots=True)
class Thresholds:
    """``min_bucket`` requests and ``min_users`` people behind every published number."""

    min_bucket: int
    min_users: int = 1


@dataclass(slots=True)
class _Tally:
    requests: int = 0
    ok: int = 0
    people: set[int] = field(default_factory=set)
    ttft: list[float] = field(default_factory=list)
    tps: list[float] = field(default_factory=list)
    ttft_people: set[int] = field(default_factory=set)
    tps_people: set[int] = field(default_factory=set)

    def add(self, s: Sample) -> None:
        self.requests += 1
        self.people.add(s.person)
        if s.outcome != Outcome.OK.value:
            return
        # The speed figures are those of successful requests only, as in routing's health.
        self.ok += 1
        if s.ttft_ms is not None and math.isfinite(s.ttft_ms):
            self.ttft.append(s.ttft_ms)
            self.ttft_people.add(s.person)
        if s.output_tps is not None and math.isfinite(s.output_tps):
            self.tps.append(s.output_tps)
            self.tps_people.add(s.person)


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values``, interpolating linearly between the closest
    ranks (numpy's default): ``quantile([1, 2, 3, 4], 0.5) == 2.5``."""
    if not values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be in [0, 1]")
    position = (len(values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _spread(values: list[float], people: set[int], limits: Thresholds) -> Spread | None:
    if len(values) < limits.min_bucket or len(people) < limits.min_users:
        return None
    values.sort()
    return Spread(quantile(values, 0.5), quantile(values, 0.9), len(values))


def _bucket(model: str, provider: str, tally: _Tally, limits: Thresholds) -> Bucket:
    if tally.requests < limits.min_bucket or len(tally.people) < limits.min_users:
        return Bucket(model, provider, None)
    return Bucket(
        model,
        provider,
        tally.requests,
        success_rate=tally.ok / tally.requests,
        ttft_ms=_spread(tally.ttft, tally.ttft_people, limits),
        output_tps=_spread(tally.tps, tally.tps_people, limits),
    )


def summarize(
    pairs: Iterable[tuple[str, str]],
    samples: Iterable[Sample],
    *,
    now: float,
    min_bucket: int,
    min_users: int = 1,
    windows: Mapping[str, float] = WINDOWS,
) -> dict[str, list[Bucket]]:
    """Buckets per window for each (model, provider) in ``pairs``, in the order given.
    Samples of other pairs, outside every window, or with uncounted outcomes are ignored."""
    if min_bucket < 1 or min_users < 1:
        raise ValueError("min_bucket and min_users must be at least 1")
    limits = Thresholds(min_bucket, min_users)
    order = list(dict.fromkeys(pairs))
    tallies = {w: {p: _Tally() for p in order} for w in windows}
    starts = {w: now - length for w, length in windows.items()}
    for s in samples:
        if s.outcome not in COUNTED_OUTCOMES or s.ts > now:
            continue
        pair = (s.model, s.provider)
        for w, start in starts.items():
            tally = tallies[w].get(pair)
            if tally is not None and s.ts >= start:
                tally.add(s)
    return {w: [_bucket(m, p, tallies[w][(m, p)], limits) for m, p in order] for w in windows}


def _spread_json(spread: Spread | None, digits: int) -> dict[str, Any] | None:
    if spread is None:
        return None
    return {
        "median": round(spread.median, digits),
        "p90": round(spread.p90, digits),
        "samples": spread.samples,
    }


def bucket_json(bucket: Bucket) -> dict[str, Any]:
    out: dict[str, Any] = {"model": bucket.model, "provider": bucket.provider}
    if bucket.requests is None:
        out["suppressed"] = True
        return out
    out["suppressed"] = False
    out["requests"] = bucket.requests
    out["success_rate"] = None if bucket.success_rate is None else round(bucket.success_rate, 4)
    out["ttft_ms"] = _spread_json(bucket.ttft_ms, 1)
    out["output_tokens_per_s"] = _spread_json(bucket.output_tps, 1)
    return out
