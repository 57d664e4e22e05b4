"""OpenTelemetry traces of calls: one span per call and one per upstream attempt, named and
attributed by the OpenTelemetry GenAI semantic conventions. Off by default.

A call span (kind SERVER, ``"{operation} {model}"``) is the parent of one attempt span per
deployment tried (kind CLIENT, ``"{operation} {upstream model}"``): a failed attempt ends
with ``error.type`` and an error status, the attempt that answered ends with the call, when
its tokens and finish reasons are known. Attributes are metadata only, the same kind of
values as a usage record: config names, ids, numbers and fixed enum values; finish reasons
are kept only when they look like one (``[a-z_]{1,40}``). No prompt, completion, header or
credential is ever set on a span. The request id (the client's ``x-request-id``) is on the
call span, and the trace id goes into the access line, so either finds the other.

Each ``Tracing`` has its own ``TracerProvider`` (never the global one, as ``Metrics`` has its
own registry), exporting over OTLP/HTTP from the SDK's batch processor thread; the hot path
only builds spans and hands finished ones to that queue.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from nitroproxy import __version__
from nitroproxy.config import TracingSettings
from nitroproxy.core.types import Endpoint, Outcome, UsageRecord

__all__ = ["OPERATIONS", "CallTrace", "Tracing", "finish_reasons_in", "finish_reasons_of"]

# gen_ai.operation.name for each endpoint (GenAiOperationNameValues).
OPERATIONS: dict[Endpoint, str] = {
    Endpoint.CHAT: "chat",
    Endpoint.MESSAGES: "chat",
    Endpoint.COMPLETIONS: "text_completion",
    Endpoint.EMBEDDINGS: "embeddings",
}
_OK = frozenset({Outcome.OK.value, Outcome.CACHE_HIT.value})
_FINISH = re.compile(r"^[a-z_]{1,40}$")


def finish_reasons_of(values: Iterable[object]) -> tuple[str, ...]:
    """The finish reasons that look like one, in order, without repeats; anything else an
    upstream put there is dropped rather than exported."""
    out: list[str] = []
    for v in values:
        if isinstance(v, str) and _FINISH.match(v) and v not in out:
            out.append(v)
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _server(base_url: str) -> tuple[str, int] | None:
    """``server.address`` and ``server.port`` of a provider's base URL (from config)."""
    url = urlsplit(base_url)
    if not url.hostname:
        return None
    return url.hostname, url.port or (443 if url.scheme == "https" else 80)


def finish_reasons_in(document: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The finish reasons of a whole answer, in either API's shape: OpenAI's
    ``choices[].finish_reason`` or Anthropic's ``stop_reason``."""
    if not document:
        return ()
    choices = document.get("choices")
    if isinstance(choices, list):
        return finish_reasons_of(c.get("finish_reason") for c in choices if isinstance(c, dict))
    return finish_reasons_of((document.get("stop_reason"),))


class CallTrace:
    """The spans of one call. Not thread-safe: one call, one task (and its settlement).

    A call the sampler left out does nothing more: no attempt spans, no attributes. Each
    attribute costs the SDK a validation, so the spans carry the GenAI conventions' set and
    few of our own (the usage record has the rest, under the same request id)."""

    __slots__ = (
        "_attempt",
        "_kind",
        "_operation",
        "_recording",
        "_tracer",
        "finish_reasons",
        "span",
        "trace_id",
    )

    def __init__(self, tracer: trace.Tracer, span: Span, operation: str) -> None:
        self._tracer = tracer
        self.span = span
        self._operation = operation
        self._attempt: Span | None = None
        self._kind: str | None = None
        self.finish_reasons: tuple[str, ...] = ()
        """Set by whoever saw the answer's end (the exchange), read when the call ends."""
        self._recording = span.is_recording()
        self.trace_id: str | None = None
        """The W3C trace id (32 hex digits) when this call is sampled, else None."""
        if self._recording:
            self.trace_id = f"{span.get_span_context().trace_id:032x}"

    def attempt(
        self,
        *,
        number: int,
        deployment: str,
        provider: str,
        kind: str,
        upstream_model: str,
        base_url: str,
    ) -> None:
        """A new upstream attempt starts (the previous one has ended by now). ``kind`` is
        the provider's API format, ``provider`` and ``deployment`` are config names."""
        if not self._recording:
            return
        self._close_attempt()
        self._kind = kind
        attributes: dict[str, str | int] = {
            "gen_ai.operation.name": self._operation,
            "gen_ai.provider.name": kind,
            "gen_ai.request.model": upstream_model,
            "nitroproxy.deployment": deployment,
            "nitroproxy.attempt": number,
        }
        server = _server(base_url)
        if server is not None:
            attributes["server.address"], attributes["server.port"] = server
        self._attempt = self._tracer.start_span(
            f"{self._operation} {upstream_model}",
            context=trace.set_span_in_context(self.span),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )

    def attempt_failed(self, error_type: str, status: int | None = None) -> None:
        """The current attempt failed (the call may go on to the next deployment)."""
        span = self._attempt
        if span is None:
            return
        failed: dict[str, str | int] = {"error.type": error_type}
        if status is not None:
            failed["http.response.status_code"] = status
        span.set_attributes(failed)
        span.set_status(Status(StatusCode.ERROR))
        self._close_attempt()

    def _close_attempt(self) -> None:
        if self._attempt is not None:
            self._attempt.end()
            self._attempt = None

    def end(self, record: UsageRecord) -> None:
        """The call is settled: its record's metadata goes on the spans, and they end."""
        if not self._recording:
            return
        ok = record.outcome in _OK
        answer: dict[str, str | int | tuple[str, ...]] = {
            "gen_ai.usage.input_tokens": record.prompt_tokens,
            "gen_ai.usage.output_tokens": record.completion_tokens,
            "http.response.status_code": record.status,
        }
        if record.cached_tokens:
            answer["gen_ai.usage.cache_read.input_tokens"] = record.cached_tokens
        if record.upstream_model is not None:
            answer["gen_ai.response.model"] = record.upstream_model
        if self.finish_reasons:
            answer["gen_ai.response.finish_reasons"] = self.finish_reasons
        if not ok:
            answer["error.type"] = record.error_class or record.outcome
        answered = self._attempt
        if answered is not None:
            answered.set_attributes(answer)
            if not ok:
                answered.set_status(Status(StatusCode.ERROR))
            self._close_attempt()
        call: dict[str, str | int | float | tuple[str, ...]] = {
            **answer,
            "nitroproxy.outcome": record.outcome,
            "nitroproxy.attempts": record.attempts,
            "nitroproxy.cost_usd": record.cost_nanos / 1e9,
        }
        if self._kind is not None:
            call["gen_ai.provider.name"] = self._kind
        if record.deployment is not None:
            call["nitroproxy.deployment"] = record.deployment
        if record.ttft_ms is not None:
            call["nitroproxy.ttft_ms"] = record.ttft_ms
        span = self.span
        span.set_attributes(call)
        if not ok:
            span.set_status(Status(StatusCode.ERROR))
        span.end()


class Tracing:
    """The tracer of one application. ``exporter`` replaces the OTLP exporter (tests pass an
    in-memory one); ``batch=False`` exports each span as it ends, on the caller's thread."""

    def __init__(
        self,
        settings: TracingSettings,
        *,
        exporter: SpanExporter | None = None,
        batch: bool = True,
    ) -> None:
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(
                endpoint=settings.endpoint,
                headers=dict(settings.headers) or None,
                timeout=settings.timeout,
            )
        self._provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
            resource=Resource.create(
                {"service.name": settings.service_name, "service.version": __version__}
            ),
            shutdown_on_exit=False,
        )
        processor: SpanProcessor = (
            BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        )
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer("nitroproxy", __version__)

    def call(self, *, request_id: str, endpoint: Endpoint, model: str, stream: bool) -> CallTrace:
        """Start the span of one call, before admission (a refused call is traced too)."""
        operation = OPERATIONS[endpoint]
        # Attributes after the sampling decision: a call left out builds none.
        span = self._tracer.start_span(f"{operation} {model}", kind=SpanKind.SERVER)
        if span.is_recording():
            span.set_attributes(
                {
                    "gen_ai.operation.name": operation,
                    "gen_ai.request.model": model,
                    "gen_ai.request.stream": stream,
                    "nitroproxy.request_id": request_id,
                }
            )
        return CallTrace(self._tracer, span, operation)

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Export every finished span now; blocks, so call it off the event loop."""
        return self._provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        """Flush and stop the exporter; blocks, so call it off the event loop."""
        self._provider.shutdown()
