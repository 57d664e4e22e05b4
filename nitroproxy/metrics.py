"""Prometheus metrics for the proxy, served as text exposition by ``render()``.

``Metrics`` is one custom collector on its own ``CollectorRegistry`` (never the global
default registry), so several apps and tests coexist in one process. The hot path
(``observe_request``, ``stream_started``/``stream_ended``) only adds numbers to plain Python
objects, about a microsecond per request; ``prometheus_client`` metric families are built
at scrape time. The wrapper types (``Counter.labels().inc()``, ``Histogram.observe()``) take
a lock per update and would cost ~8 µs per request here.

Mutators must be called from one thread (the event loop): there are no locks, so
concurrent updates from several threads could lose increments. A scrape may run on any
thread.

Label cardinality is bounded. ``model``, ``provider`` and ``deployment`` come from config
(the caller guarantees this); ``endpoint``, ``outcome``, ``reason`` and ``kind`` come from
fixed enums (``core.types``, ``core.errors`` class names, limit reasons, retention classes);
``status`` is an HTTP status code. No key or user id appears unless ``key_labels=True``.
As a safety net, every label keeps at most a fixed number of distinct values and maps
the rest to ``"other"``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from nitroproxy.core.types import UsageRecord

__all__ = ["DURATION_BUCKETS", "TOKENS_PER_SECOND_BUCKETS", "TOKEN_KINDS", "Metrics"]

# Seconds; LLM calls range from a cached 10 ms answer to a two-minute reasoning stream.
DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
)  # fmt: skip
TOKENS_PER_SECOND_BUCKETS: tuple[float, ...] = (
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0,
)  # fmt: skip
# The exposition's "le" strings, as prometheus_client writes them for these bounds.
_DURATION_LE = (*(repr(b) for b in DURATION_BUCKETS), "+Inf")
_TPS_LE = (*(repr(b) for b in TOKENS_PER_SECOND_BUCKETS), "+Inf")
TOKEN_KINDS = ("prompt", "completion", "cached", "cache_write", "reasoning")

_OVERFLOW = "other"
_MAX_SERIES_CACHE = 20_000


class _Guard:
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
        return _OVERFLOW


class _Histogram:
    """Per-bucket (not cumulative) counts plus a sum; made cumulative at scrape time."""

    __slots__ = ("counts", "total")

    def __init__(self, n_bounds: int) -> None:
        self.counts = [0] * (n_bounds + 1)  # the last slot is +Inf
        self.total = 0.0

    def merge(self, other: _Histogram) -> None:
        counts = self.counts
        for i, n in enumerate(other.counts):
            counts[i] += n
        self.total += other.total


class _Series:
    """Everything one request label set accumulates. Aggregated per metric at scrape."""

    __slots__ = (
        "cache_hits", "cache_write", "cached", "completion", "cost_nanos", "duration",
        "labels", "prompt", "reasoning", "requests", "tps", "ttft",
    )  # fmt: skip

    def __init__(self, labels: tuple[str, ...]) -> None:
        # (model, provider, endpoint, stream, status, outcome, key_id)
        self.labels = labels
        self.requests = 0
        self.duration = _Histogram(len(DURATION_BUCKETS))
        self.ttft = _Histogram(len(DURATION_BUCKETS))
        self.tps = _Histogram(len(TOKENS_PER_SECOND_BUCKETS))
        self.prompt = 0
        self.completion = 0
        self.cached = 0
        self.cache_write = 0
        self.reasoning = 0
        self.cost_nanos = 0
        self.cache_hits = 0


class _CounterVec:
    """A labelled counter for the rarely-hit paths (errors, retries, writer batches)."""

    __slots__ = ("doc", "guards", "labelnames", "name", "values")

    def __init__(self, name: str, doc: str, labelnames: Sequence[str], cap: int = 256) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self.guards = tuple(_Guard(cap) for _ in labelnames)
        # An unlabelled counter exists from the start, so rate() sees its first increment.
        self.values: dict[tuple[str, ...], float] = {} if labelnames else {(): 0.0}

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        values = self.values
        if labels not in values:
            labels = tuple(guard(v) for guard, v in zip(self.guards, labels, strict=True))
        values[labels] = values.get(labels, 0.0) + amount

    def family(self) -> CounterMetricFamily:
        return _counter_family(self.name, self.doc, self.labelnames, list(self.values.items()))


def _cumulative(les: Sequence[str], hist: _Histogram) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    acc = 0
    for le, n in zip(les, hist.counts, strict=True):
        acc += n
        out.append((le, acc))
    return out


def _noop_depth() -> float:
    return 0.0


class Metrics:
    """The proxy's metrics. With ``enabled=False`` every method is a no-op and ``render``
    returns an empty exposition."""

    def __init__(self, *, enabled: bool = True, key_labels: bool = False) -> None:
        self.enabled = enabled
        self.key_labels = key_labels
        self.registry = CollectorRegistry()
        self._series: dict[tuple[object, ...], _Series] = {}
        self._by_labels: dict[tuple[str, ...], _Series] = {}
        self._label_guards = (
            _Guard(1000), _Guard(200), _Guard(32), _Guard(2), _Guard(64), _Guard(32),
            _Guard(10_000),
        )  # fmt: skip
        self._active_streams = 0
        self._queue_depth: Callable[[], float] = _noop_depth
        self._tasks: Callable[[], float] = _noop_depth
        self._cache_saved = _CounterVec(
            "nitroproxy_cache_saved_usd",
            "What cache hits would have cost upstream, in US dollars.",
            ("model",),
            cap=1000,
        )
        self._deployment_guard = _Guard(1000)
        self._cooling_down: dict[str, float] = {}
        self._upstream_errors = _CounterVec(
            "nitroproxy_upstream_errors",
            "Failed upstream attempts by provider and error class.",
            ("provider", "reason"),
        )
        self._retries = _CounterVec(
            "nitroproxy_retries",
            "Attempts retried on the same provider.",
            ("model", "provider"),
        )
        self._fallbacks = _CounterVec(
            "nitroproxy_fallbacks",
            "Requests moved from one provider to the next candidate.",
            ("model", "from_provider", "to_provider"),
        )
        self._rate_limited = _CounterVec(
            "nitroproxy_rate_limited_requests",
            "Requests refused by a limit.",
            ("reason",),
        )
        self._usage_written = _CounterVec(
            "nitroproxy_usage_records_written",
            "Usage records written to the store.",
            (),
        )
        self._usage_dropped = _CounterVec(
            "nitroproxy_usage_records_dropped",
            "Usage records dropped because the writer queue was full or the write failed.",
            (),
        )
        self._retention_deleted = _CounterVec(
            "nitroproxy_retention_deleted_rows",
            "Rows deleted by retention sweeps.",
            ("kind",),
        )
        if enabled:
            self.registry.register(self)
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    # ---- hot path -------------------------------------------------------------------------

    def observe_request(self, record: UsageRecord) -> None:
        """Count one finished request. Call exactly once per request."""
        if not self.enabled:
            return
        key = (
            record.model,
            record.provider,
            record.endpoint,
            record.stream,
            record.status,
            record.outcome,
            record.key_id if self.key_labels else None,
        )
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key)
        series.requests += 1
        seconds = record.latency_ms / 1000.0
        hist = series.duration
        hist.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        hist.total += seconds
        if record.ttft_ms is not None:
            seconds = record.ttft_ms / 1000.0
            hist = series.ttft
            hist.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
            hist.total += seconds
        if record.output_tps is not None:
            hist = series.tps
            hist.counts[bisect_left(TOKENS_PER_SECOND_BUCKETS, record.output_tps)] += 1
            hist.total += record.output_tps
        series.prompt += record.prompt_tokens
        series.completion += record.completion_tokens
        series.cached += record.cached_tokens
        series.cache_write += record.cache_write_tokens
        series.reasoning += record.reasoning_tokens
        series.cost_nanos += record.cost_nanos
        if record.cache_hit:
            series.cache_hits += 1

    def _new_series(self, key: tuple[object, ...]) -> _Series:
        model, provider, endpoint, stream, status, outcome, key_id = key
        raw = (
            str(model),
            "" if provider is None else str(provider),
            str(endpoint),
            "true" if stream else "false",
            str(status),
            str(outcome),
            "" if key_id is None else str(key_id),
        )
        labels = tuple(guard(v) for guard, v in zip(self._label_guards, raw, strict=True))
        series = self._by_labels.get(labels)
        if series is None:
            series = self._by_labels[labels] = _Series(labels)
        if len(self._series) < _MAX_SERIES_CACHE:
            self._series[key] = series
        return series

    def stream_started(self) -> None:
        if self.enabled:
            self._active_streams += 1

    def stream_ended(self) -> None:
        if self.enabled:
            self._active_streams -= 1

    # ---- rare events ----------------------------------------------------------------------

    def upstream_error(self, provider: str, reason: str) -> None:
        """``reason``: a ``ProxyError.error_class`` or another fixed name."""
        if self.enabled:
            self._upstream_errors.inc((provider, reason))

    def retry(self, model: str, provider: str) -> None:
        if self.enabled:
            self._retries.inc((model, provider))

    def fallback(self, model: str, from_provider: str, to_provider: str) -> None:
        if self.enabled:
            self._fallbacks.inc((model, from_provider, to_provider))

    def rate_limited(self, reason: str) -> None:
        """``reason``: the fixed admission reason (e.g. ``rpm``, ``tpm``, ``budget``)."""
        if self.enabled:
            self._rate_limited.inc((reason,))

    def usage_written(self, n: int) -> None:
        if self.enabled:
            self._usage_written.inc((), n)

    def usage_dropped(self, n: int) -> None:
        if self.enabled:
            self._usage_dropped.inc((), n)

    def set_queue_depth_source(self, fn: Callable[[], float]) -> None:
        """``fn`` is called at scrape time (on the scraping thread) for the writer's queue
        depth; it must be cheap and must not block."""
        self._queue_depth = fn

    def set_tasks_source(self, fn: Callable[[], float]) -> None:
        """``fn`` counts the event loop's tasks at scrape time (a leak shows as growth)."""
        self._tasks = fn

    def cache_saved(self, model: str, nanos: int) -> None:
        if self.enabled and nanos > 0:
            self._cache_saved.inc((model,), nanos / 1e9)

    def retention_deleted(self, kind: str, n: int) -> None:
        """``kind``: the retention class whose rows were deleted."""
        if self.enabled:
            self._retention_deleted.inc((kind,), n)

    def set_deployment_health(self, deployment: str, *, cooling_down: bool) -> None:
        """Record whether ``deployment`` (a config name) is in a cool-down."""
        if self.enabled:
            self._cooling_down[self._deployment_guard(deployment)] = 1.0 if cooling_down else 0.0

    # ---- exposition -----------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type, for the ``/metrics`` handler."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def collect(self) -> Iterable[Metric]:
        """The registry's collector protocol; runs at scrape time."""
        return list(self._families())

    def describe(self) -> Iterable[Metric]:
        # Names only, so the registry can reject duplicates without collecting.
        return [Metric(m.name, m.documentation, m.type) for m in self._families()]

    def _families(self) -> Iterator[Metric]:
        totals = _Totals(key_labels=self.key_labels)
        for series in list(self._by_labels.values()):
            totals.add(series)
        yield from totals.families()
        yield from self._rare_families()

    def _rare_families(self) -> Iterator[Metric]:
        for vec in (
            self._upstream_errors,
            self._retries,
            self._fallbacks,
            self._rate_limited,
            self._usage_written,
            self._usage_dropped,
            self._retention_deleted,
            self._cache_saved,
        ):
            yield vec.family()
        yield GaugeMetricFamily(
            "nitroproxy_active_streams",
            "Streaming responses in progress.",
            self._active_streams,
        )
        try:
            depth = float(self._queue_depth())
        except Exception:  # a writer mid-shutdown must not fail the whole scrape
            depth = float("nan")
        yield GaugeMetricFamily(
            "nitroproxy_usage_queue_depth",
            "Usage records waiting in the writer queue.",
            depth,
        )
        try:
            tasks = float(self._tasks())
        except Exception:  # scraped from another thread or after the loop closed
            tasks = float("nan")
        yield GaugeMetricFamily(
            "nitroproxy_event_loop_tasks",
            "Tasks alive on the proxy's event loop; steady under steady load.",
            tasks,
        )
        cooling = GaugeMetricFamily(
            "nitroproxy_deployment_cooling_down",
            "1 while a deployment is cooling down after failures, else 0.",
            labels=("deployment",),
        )
        for deployment, value in list(self._cooling_down.items()):
            cooling.add_metric((deployment,), value)
        yield cooling


class _Totals:
    """Request series summed to each metric's own label set, once per scrape."""

    def __init__(self, *, key_labels: bool) -> None:
        self.key_labels = key_labels
        self.requests: dict[tuple[str, ...], int] = {}
        self.durations: dict[tuple[str, ...], _Histogram] = {}
        self.ttfts: dict[tuple[str, ...], _Histogram] = {}
        self.tps: dict[tuple[str, ...], _Histogram] = {}
        self.tokens: dict[tuple[str, ...], list[int]] = {}
        self.costs: dict[tuple[str, ...], int] = {}
        self.hits: dict[tuple[str, ...], int] = {}

    def add(self, s: _Series) -> None:
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
        yield _counter_family(
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
        yield _histogram_family(
            "nitroproxy_request_duration_seconds",
            "Time from request received to response finished.",
            (*mp, "endpoint", "stream"),
            _DURATION_LE,
            self.durations,
        )
        yield _histogram_family(
            "nitroproxy_time_to_first_token_seconds",
            "Time from request received to the first output token.",
            mp,
            _DURATION_LE,
            self.ttfts,
        )
        yield _histogram_family(
            "nitroproxy_output_tokens_per_second",
            "Completion tokens per second after the first token.",
            mp,
            _TPS_LE,
            self.tps,
        )
        yield _counter_family(
            "nitroproxy_tokens",
            "Tokens by kind; cached tokens are part of prompt, reasoning part of completion.",
            (*mp, "kind"),
            (
                ((*labels, kind), n)
                for labels, counts in self.tokens.items()
                for kind, n in zip(TOKEN_KINDS, counts, strict=True)
            ),
        )
        yield _counter_family(
            "nitroproxy_cost_usd",
            "Estimated spend in US dollars.",
            mp,
            ((labels, nanos / 1e9) for labels, nanos in self.costs.items()),
        )
        yield _counter_family(
            "nitroproxy_cache_hits",
            "Requests answered from the cache.",
            mp,
            self.hits.items(),
        )


def _counter_family(
    name: str,
    doc: str,
    labelnames: Sequence[str],
    values: Iterable[tuple[Sequence[str], float]],
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labelnames)
    for labels, value in values:
        family.add_metric(labels, value)
    return family


def _merge(into: dict[tuple[str, ...], _Histogram], key: tuple[str, ...], h: _Histogram) -> None:
    acc = into.get(key)
    if acc is None:
        acc = into[key] = _Histogram(len(h.counts) - 1)
    acc.merge(h)


def _histogram_family(
    name: str,
    doc: str,
    labelnames: Sequence[str],
    les: Sequence[str],
    hists: dict[tuple[str, ...], _Histogram],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labelnames)
    for labels, hist in hists.items():
        family.add_metric(labels, _cumulative(les, hist), hist.total)
    return family
