"""Settlement: the one place a finished call's consequences happen.

A call is settled exactly once, when its exchange closes (``Gateway.exchange`` guarantees
it): the record goes to the writer, spend and the rate-limit windows take the real usage,
health learns how the deployment did, metrics and the access line count it, and a complete
answer may be stored in the opt-in cache. Nothing here awaits on the caller's behalf: a large
prompt that still needs counting is counted in a thread, then recorded.

``note_exit`` turns how the client's request ended (an exception or none) into the record's
status and outcome, so "what was the client told" is decided in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from nitroproxy.config import Settings
from nitroproxy.core.accounting import Meter, RequestFacts, build_record, settle
from nitroproxy.core.end_users import EndUsers
from nitroproxy.core.errors import ProxyError, UpstreamTimeout, status_of
from nitroproxy.core.health import HealthBook
from nitroproxy.core.types import Outcome, UsageRecord
from nitroproxy.proxy import caching, counting
from nitroproxy.proxy.caching import CachePlan
from nitroproxy.proxy.call import Call
from nitroproxy.proxy.clock import Clock
from nitroproxy.proxy.limiter import Limiter, Ticket
from nitroproxy.security.ids import IdSource
from nitroproxy.telemetry import logs
from nitroproxy.telemetry.metrics import Metrics
from nitroproxy.telemetry.traces import CallTrace

RecordSink = Callable[[UsageRecord], object]
DurableSink = Callable[[UsageRecord], Awaitable[object]]
"""Takes a record and finishes once it is on disk (``storage.journal_before_answer``)."""
CLIENT_GONE = 499  # nginx's convention for "client closed the request"


def status_outcome(error: ProxyError) -> tuple[int, Outcome]:
    status = status_of(error)
    if isinstance(error, UpstreamTimeout):
        return status, Outcome.TIMEOUT
    if status == 429:
        return status, Outcome.RATE_LIMITED
    if status < 500:
        return status, Outcome.CLIENT_ERROR
    return status, Outcome.UPSTREAM_ERROR


def note_exit(meter: Meter, exc: BaseException | None) -> None:
    """What the client saw, from how its request left the gateway."""
    if exc is None:
        return
    if isinstance(exc, asyncio.CancelledError | ConnectionResetError):
        meter.fail(CLIENT_GONE, Outcome.CLIENT_DISCONNECTED, None)
    elif isinstance(exc, ProxyError):
        # A failure after the attempt (a body that breaks off) must not read as a success;
        # one already noted (a stream error) stays as it was.
        if meter.outcome is Outcome.OK:
            meter.fail(*status_outcome(exc), exc.error_class)
    else:
        meter.fail(500, Outcome.UPSTREAM_ERROR, "internal_error")


class CacheWrite:
    """A complete answer the opt-in cache may keep, handed to settlement by the exchange."""

    __slots__ = ("document", "plan")

    def __init__(self, plan: CachePlan, document: dict[str, Any]) -> None:
        self.plan = plan
        self.document = document


class Settler:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        metrics: Metrics,
        health: HealthBook,
        limiter: Limiter,
        end_users: EndUsers,
        sink: RecordSink | None,
        durable_sink: DurableSink | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._metrics = metrics
        self._health = health
        self._limiter = limiter
        self._end_users = end_users
        self._sink = sink
        self._durable = durable_sink
        self._new_id = IdSource()
        self._log = logs.get_logger("nitroproxy.access")
        self._pending: set[asyncio.Task[None]] = set()
        # A limiter that never waits (the in-memory one) settles in line: no task per call.
        self._settle_now = getattr(limiter, "settle_now", None)

    def settle(
        self,
        call: Call,
        ticket: Ticket | None,
        cache: CacheWrite | None,
        trace: CallTrace | None = None,
    ) -> Awaitable[object] | None:
        """Settle now; with a durable sink, returns what to await before the answer may
        complete (the record on disk)."""
        meter = call.meter
        if meter.ended_at is None:
            meter.ended_at = self._clock.now()
        needs_prompt = meter.prompt_estimate is None and not (
            meter.provider_usage is not None and meter.completed
        )
        text = meter.completion_text
        if (needs_prompt or text is not None) and meter.produced:
            if not counting.on_loop(call, self._settings.tokens.offload_chars, text or ""):
                work = self._count_then_record(call, needs_prompt, ticket, cache, trace)
                task = self._spawn(work)
                return task if self._durable is not None else None
            self._count(call, needs_prompt)
        return self._record(call, ticket, cache, trace)

    @staticmethod
    def _count(call: Call, prompt: bool) -> None:
        """The proxy's own counts, where the provider's do not stand: the prompt, and the
        text a stream delivered (see ``core.pipeline.TextLog``)."""
        meter = call.meter
        if prompt:
            meter.prompt_estimate = counting.count_prompt(call)
        if meter.completion_text is not None:
            meter.completion_estimate = counting.count_completion(call, meter.completion_text)
            meter.completion_text = None

    async def close(self) -> None:
        """Wait for settlements still counting a prompt or settling limits."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _count_then_record(
        self,
        call: Call,
        prompt: bool,
        ticket: Ticket | None,
        cache: CacheWrite | None,
        trace: CallTrace | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._count, call, prompt)
        finally:
            durable = self._record(call, ticket, cache, trace)
            if durable is not None:
                await durable

    def _record(
        self, call: Call, ticket: Ticket | None, cache: CacheWrite | None, trace: CallTrace | None
    ) -> Awaitable[object] | None:
        meter = call.meter
        record = build_record(self._facts(call), meter)
        durable = None
        if self._durable is not None:
            durable = self._durable(record)
        elif self._sink is not None:
            self._sink(record)
        if ticket is not None:
            # The reservation gives way to what was used: zero for a call no provider
            # answered, the record's own numbers otherwise (the sum of record costs is the
            # spend the budgets see).
            used = record.prompt_tokens + record.completion_tokens
            if self._settle_now is not None:
                self._settle_now(ticket, tokens=used, cost_nanos=record.cost_nanos)
            else:
                self._spawn(self._limiter.settle(ticket, tokens=used, cost_nanos=record.cost_nanos))
        self._metrics.observe_request(record)
        if record.cache_hit:
            self._metrics.cache_saved(record.model, meter.saved_nanos)
        self._health_of(meter, record)
        trace_id = None
        if trace is not None:
            trace.end(record)
            trace_id = trace.trace_id
        if self._settings.logging.access_log:
            logs.access_log(
                self._log, record, method=call.method, path=call.path, trace_id=trace_id
            )
        if cache is not None and meter.outcome is Outcome.OK:
            usage, _ = settle(meter)
            caching.store(cache.plan, call, cache.document, usage, record.cost_nanos)
        return durable

    def _health_of(self, meter: Meter, record: UsageRecord) -> None:
        if meter.deployment is None:
            return
        if meter.outcome is not Outcome.OK:
            self._health.end_attempt(meter.deployment)
            return
        self._health.record_success(
            meter.deployment,
            self._clock.now(),
            ttft_s=None if record.ttft_ms is None else record.ttft_ms / 1000,
            tokens_per_s=record.output_tps,
            latency_s=record.latency_ms / 1000,
        )

    def _facts(self, call: Call) -> RequestFacts:
        return RequestFacts(
            record_id=self._new_id(),
            request_id=call.request_id,
            key_id=call.principal.key_id,
            user_id=call.principal.user_id,
            model=call.model.name,
            endpoint=call.endpoint.value,
            stream=call.stream,
            client_ip=call.client_ip,
            user_agent=call.user_agent,
            end_user=self._end_users.recorded(call.end_user),
        )
