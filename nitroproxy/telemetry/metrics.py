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
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import (
    GaugeMetricFamily,
    Metric,
)

from nitroproxy.core.types import UsageRecord
from nitroproxy.telemetry.series import (
    DURATION_BUCKETS,
    MAX_SERIES_CACHE,
    TOKEN_KINDS,
    TOKENS_PER_SECOND_BUCKETS,
    CounterVec,
    Guard,
    Series,
    Totals,
)

__all__ = ["DURATION_BUCKETS", "TOKENS_PER_SECOND_BUCKETS", "TOKEN_KINDS", "Metrics"]


def _noop_depth() -> float:
    return 0.0


def _noop() -> None:
    return None


def _no_storage() -> tuple[float, float]:
    return 1.0, 0.0


class Metrics:
    """The proxy's metrics. With ``enabled=False`` every method is a no-op and ``render``
    returns an empty exposition."""

    def __init__(self, *, enabled: bool = True, key_labels: bool = False) -> None:
        self.enabled = enabled
        self.key_labels = key_labels
        self.registry = CollectorRegistry()
        self._series: dict[tuple[object, ...], Series] = {}
        self._by_labels: dict[tuple[str, ...], Series] = {}
        self._label_guards = (
            Guard(1000), Guard(200), Guard(32), Guard(2), Guard(64), Guard(32),
            Guard(10_000),
        )  # fmt: skip
        self._active_streams = 0
        self._queue_depth: Callable[[], float] = _noop_depth
        self._tasks: Callable[[], float] = _noop_depth
        self._health_source: Callable[[], None] = _noop
        self._cache_saved = CounterVec(
            "nitroproxy_cache_saved_usd",
            "What cache hits would have cost upstream, in US dollars.",
            ("model",),
            cap=1000,
        )
        self._deployment_guard = Guard(1000)
        self._cooling_down: dict[str, float] = {}
        self._upstream_errors = CounterVec(
            "nitroproxy_upstream_errors",
            "Failed upstream attempts by provider and error class.",
            ("provider", "reason"),
        )
        self._retries = CounterVec(
            "nitroproxy_retries",
            "Failed upstream attempts that were followed by another attempt (on the next "
            "deployment in the plan).",
            ("model", "provider"),
        )
        self._fallbacks = CounterVec(
            "nitroproxy_fallbacks",
            "Requests moved from one provider to the next candidate.",
            ("model", "from_provider", "to_provider"),
        )
        self._rate_limited = CounterVec(
            "nitroproxy_rate_limited_requests",
            "Requests refused by a limit.",
            ("reason",),
        )
        self._usage_written = CounterVec(
            "nitroproxy_usage_records_written",
            "Usage records written to the store.",
            (),
        )
        self._usage_dropped = CounterVec(
            "nitroproxy_usage_records_dropped",
            "Usage records dropped because the writer queue was full or the write failed.",
            (),
        )
        self._usage_write_failures = CounterVec(
            "nitroproxy_usage_write_failures",
            "Failed attempts to write usage records to the database (each is retried).",
            (),
        )
        self._usage_journaled = CounterVec(
            "nitroproxy_usage_records_journaled",
            "Usage records moved to the journal because the database could not take them.",
            (),
        )
        self._usage_replayed = CounterVec(
            "nitroproxy_usage_records_replayed",
            "Usage records replayed from the journal into the database.",
            (),
        )
        self._refused = CounterVec(
            "nitroproxy_refused_requests",
            "Requests refused to protect the proxy: records that could not be kept "
            "(storage), request bodies past the in-flight cap (body_bytes), connections "
            "past the limit (connections), slow clients (header_timeout, body_timeout).",
            ("reason",),
        )
        self._storage_source: Callable[[], tuple[float, float]] = _no_storage
        self._retention_deleted = CounterVec(
            "nitroproxy_retention_deleted_rows",
            "Rows deleted by retention sweeps.",
            ("kind",),
        )
        if enabled:
            self.registry.register(self)
            ProcessCollector(registry=self.registry)
            # No PlatformCollector: /metrics is public, and python_info would tell anyone
            # the exact interpreter version.
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

    def _new_series(self, key: tuple[object, ...]) -> Series:
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
            series = self._by_labels[labels] = Series(labels)
        if len(self._series) < MAX_SERIES_CACHE:
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

    def usage_write_failed(self, n: int) -> None:
        if self.enabled:
            self._usage_write_failures.inc((), n)

    def usage_journaled(self, n: int) -> None:
        if self.enabled:
            self._usage_journaled.inc((), n)

    def usage_replayed(self, n: int) -> None:
        if self.enabled:
            self._usage_replayed.inc((), n)

    def refused(self, reason: str) -> None:
        """``reason``: one of the fixed names in the metric's help text."""
        if self.enabled:
            self._refused.inc((reason,))

    def set_storage_source(self, fn: Callable[[], tuple[float, float]]) -> None:
        """``fn`` returns (1 if the database takes writes else 0, records waiting in the
        journal) at scrape time; cheap, non-blocking."""
        self._storage_source = fn

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

    def set_health_source(self, fn: Callable[[], None]) -> None:
        """``fn`` runs at scrape time, before the cool-down gauge is read, and reports each
        deployment through ``set_deployment_health`` (a cool-down ends by the clock alone)."""
        self._health_source = fn

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
        totals = Totals(key_labels=self.key_labels)
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
            self._usage_write_failures,
            self._usage_journaled,
            self._usage_replayed,
            self._refused,
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
            writable, pending = self._storage_source()
        except Exception:  # a writer mid-shutdown must not fail the whole scrape
            writable, pending = float("nan"), float("nan")
        yield GaugeMetricFamily(
            "nitroproxy_usage_database_writable",
            "1 while usage records reach the database, 0 while writes fail.",
            writable,
        )
        yield GaugeMetricFamily(
            "nitroproxy_usage_journal_pending",
            "Usage records in the journal, waiting for the database.",
            pending,
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
        self._health_source()
        cooling = GaugeMetricFamily(
            "nitroproxy_deployment_cooling_down",
            "1 while a deployment is cooling down after failures, else 0.",
            labels=("deployment",),
        )
        for deployment, value in list(self._cooling_down.items()):
            cooling.add_metric((deployment,), value)
        yield cooling
