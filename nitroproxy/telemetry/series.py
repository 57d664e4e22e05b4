"""The numbers behind ``Metrics``: plain per-label-set series updated on the hot path, and
how they become ``prometheus_client`` families at scrape time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)

# Seconds; LLM calls range from a cached 10 ms answer to a two-minute reasoning stream.
DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
)  # fmt: skip
TOKENS_PER_SECOND_BUCKETS: tuple[float, ...] = (
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0,
)  # fmt: skip
# The exposition's "le" strings, as prometheus_client writes them for these bounds.
DURATION_LE = (*(repr(b) for b in DURATION_BUCKETS), "+Inf")
TPS_LE = (*(repr(b) for b in TOKENS_PER_SECOND_BUCKETS), "+Inf")
TOKEN_KINDS = ("prompt", "completion", "cached", "cache_write", "reasoning")

OVERFLOW = "other"
MAX_SERIES_CACHE = 20_000


class Guard:
    """Passes up to ``cap`` distinct label values, then maps new ones to ``"other"``."""

    __slots__ = ("_cap", "_seen")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self._cap:
            self._seen.add(value)
            return value
        return OVERFLOW


class Histogram:
    """Per-bucket (not cumulative) counts plus a sum; made cumulative at scrape time."""

    __slots__ = ("counts", "total")

    def __init__(self, n_bounds: int) -> None:
        self.counts = [0] * (n_bounds + 1)  # the last slot is +Inf
        self.total = 0.0

    def merge(self, other: Histogram) -> None:
        counts = self.counts
        for i, n in enumerate(other.counts):
            counts[i] += n
        self.total += other.total


class Series:
    """Everything one request label set accumulates. Aggregated per metric at scrape."""

    __slots__ = (
        "cache_hits", "cache_write", "cached", "completion", "cost_nanos", "duration",
        "labels", "prompt", "reasoning", "requests", "tps", "ttft",
    )  # fmt: skip

    def __init__(self, labels: tuple[str, ...]) -> None:
        # (model, provider, endpoint, stream, status, outcome, key_id)
        self.labels = labels
        self.requests = 0
        self.duration = Histogram(len(DURATION_BUCKETS))
        self.ttft = Histogram(len(DURATION_BUCKETS))
        self.tps = Histogram(len(TOKENS_PER_SECOND_BUCKETS))
        self.prompt = 0
        self.completion = 0
        self.cached = 0
        self.cache_write = 0
        self.reasoning = 0
        self.cost_nanos = 0
        self.cache_hits = 0


class CounterVec:
    """A labelled counter for the rarely-hit paths (errors, retries, writer batches)."""

    __slots__ = ("doc", "guards", "labelnames", "name", "values")

    def __init__(self, name: str, doc: str, labelnames: Sequence[str], cap: int = 256) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self.guards = tuple(Guard(cap) for _ in labelnames)
        # An unlabelled counter exists from the start, so rate() sees its first increment.
        self.values: dict[tuple[str, ...], float] = {} if labelnames else {(): 0.0}

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        values = self.values
        if labels not in values:
            labels = tuple(guard(v) for guard, v in zip(self.guards, labels, strict=True))
        values[labels] = values.get(labels, 0.0) + amount

    def family(self) -> CounterMetricFamily:
        return counter_family(self.name, self.doc, self.labelnames, list(self.values.items()))


def _cumulative(les: Sequence[str], hist: Histogram) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    acc = 0
    for le, n in zip(les, hist.counts, strict=True):
        acc += n
        out.append((le, acc))
    return out


class Totals:
    """Request series summed to each metric's own label set, once per scrape."""

    def __init__(self, *, key_labels: bool) -> None:
        self.key_labels = key_labels
        self.requests: dict[tuple[str, ...], int] = {}
        self.durations: dict[tuple[str, ...], Histogram] = {}
        self.ttfts: dict[tuple[str, ...], Histogram] = {}
        self.tps: dict[tuple[str, ...], Histogram] = {}
        self.tokens: dict[tuple[str, ...], list[int]] = {}
        self.costs: dict[tuple[str, ...], int] = {}
        self.hits: dict[tuple[str, ...], int] = {}

    def add(self, s: Series) -> None:
        model, provider, endpoint, stream, status, outcome, key_id = s.labels
        mp: tuple[str, ...] = (model, provider)
        key = (
            model,
            provider,
            endpoint,
            status,
            outcome,
            *((key_id,) if self.key_labels else ()),
        )
        self.requests[key] = self.requests.get(key, 0) + s.requests
        _merge(self.durations, (model, provider, endpoint, stream), s.duration)
        if any(s.ttft.counts):
            _merge(self.ttfts, mp, s.ttft)
        if any(s.tps.counts):
            _merge(self.tps, mp, s.tps)
        acc = self.tokens.setdefault(mp, [0] * len(TOKEN_KINDS))
        for i, n in enumerate((s.prompt, s.completion, s.cached, s.cache_write, s.reasoning)):
            acc[i] += n
        self.costs[mp] = self.costs.get(mp, 0) + s.cost_nanos
        if s.cache_hits:
            self.hits[mp] = self.hits.get(mp, 0) + s.cache_hits

    def families(self) -> Iterator[Metric]:
        mp = ("model", "provider")
        yield counter_family(
            "nitroproxy_requests",
            "Finished requests by model, provider, endpoint, HTTP status and outcome.",
            (
                *mp,
                "endpoint",
                "status",
                "outcome",
                *(("key_id",) if self.key_labels else ()),
            ),
            self.requests.items(),
        )
        yield histogram_family(
            "nitroproxy_request_duration_seconds",
            "Time from request received to response finished.",
            (*mp, "endpoint", "stream"),
            DURATION_LE,
            self.durations,
        )
        yield histogram_family(
            "nitroproxy_time_to_first_token_seconds",
            "Time from request received to the first output token.",
            mp,
            DURATION_LE,
            self.ttfts,
        )
        yield histogram_family(
            "nitroproxy_output_tokens_per_second",
            "Completion tokens per second after the first token.",
            mp,
            TPS_LE,
            self.tps,
        )
        yield counter_family(
            "nitroproxy_tokens",
            "Tokens by kind; cached tokens are part of prompt, reasoning part of completion.",
            (*mp, "kind"),
            (
                ((*labels, kind), n)
                for labels, counts in self.tokens.items()
                for kind, n in zip(TOKEN_KINDS, counts, strict=True)
            ),
        )
        yield counter_family(
            "nitroproxy_cost_usd",
            "Estimated spend in US dollars.",
            mp,
            ((labels, nanos / 1e9) for labels, nanos in self.costs.items()),
        )
        yield counter_family(
            "nitroproxy_cache_hits",
            "Requests answered from the cache.",
            mp,
            self.hits.items(),
        )


def counter_family(
    name: str,
    doc: str,
    labelnames: Sequence[str],
    values: Iterable[tuple[Sequence[str], float]],
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labelnames)
    for labels, value in values:
        family.add_metric(labels, value)
    return family


def _merge(into: dict[tuple[str, ...], Histogram], key: tuple[str, ...], h: Histogram) -> None:
    acc = into.get(key)
    if acc is None:
        acc = into[key] = Histogram(len(h.counts) - 1)
    acc.merge(h)


def histogram_family(
    name: str,
    doc: str,
    labelnames: Sequence[str],
    les: Sequence[str],
    hists: dict[tuple[str, ...], Histogram],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labelnames)
    for labels, hist in hists.items():
        family.add_metric(labels, _cumulative(les, hist), hist.total)
    return family
