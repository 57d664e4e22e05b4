"""Traces: the span tree and GenAI attributes of a call with a failover, sampling, the
access line's trace id, and the real OTLP/HTTP exporter posting to a loopback collector."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from nitroproxy.config import TracingSettings
from nitroproxy.core.types import Endpoint
from nitroproxy.telemetry.logs import access_fields
from nitroproxy.telemetry.traces import Tracing, finish_reasons_in, finish_reasons_of
from nitroproxy.web.server import start
from tests.records import make_record


def attempt(n: int, deployment: str, kind: str = "openai") -> dict[str, Any]:
    return {
        "number": n,
        "deployment": deployment,
        "provider": f"prov-{deployment}",
        "kind": kind,
        "upstream_model": f"up-{deployment}",
        "base_url": "https://api.example.test/v1",
    }


def traced_failover(tracing: Tracing) -> str | None:
    trace = tracing.call(request_id="req-7", endpoint=Endpoint.CHAT, model="gpt-x", stream=True)
    trace.attempt(**attempt(1, "east"))
    trace.attempt_failed("UpstreamStatusError", 503)
    trace.attempt(**attempt(2, "west", kind="anthropic"))
    trace.finish_reasons = ("stop",)
    trace.end(
        make_record(
            0,
            model="gpt-x",
            deployment="west",
            upstream_model="up-west",
            stream=True,
            attempts=2,
            ttft_ms=42.0,
            cached_tokens=0,
        )
    )
    return trace.trace_id


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def test_a_call_with_a_failover_is_one_span_with_an_attempt_span_each() -> None:
    exporter = InMemorySpanExporter()
    trace_id = traced_failover(
        Tracing(TracingSettings(enabled=True), exporter=exporter, batch=False)
    )
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"chat gpt-x", "chat up-east", "chat up-west"}
    call, east, west = spans["chat gpt-x"], spans["chat up-east"], spans["chat up-west"]
    assert call.parent is None and call.kind is SpanKind.SERVER
    assert call.context is not None and f"{call.context.trace_id:032x}" == trace_id
    for child in (east, west):
        assert child.parent is not None and child.parent.span_id == call.context.span_id
        assert child.kind is SpanKind.CLIENT
    assert east.end_time is not None and west.start_time is not None
    assert east.end_time <= west.start_time  # one attempt after the other

    assert dict(east.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "up-east",
        "nitroproxy.attempt": 1,
        "nitroproxy.deployment": "east",
        "server.address": "api.example.test",
        "server.port": 443,
        "error.type": "UpstreamStatusError",
        "http.response.status_code": 503,
    }
    assert east.status.status_code is StatusCode.ERROR
    w = dict(west.attributes or {})
    assert w["gen_ai.provider.name"] == "anthropic"
    assert w["gen_ai.response.model"] == "up-west"
    assert (w["gen_ai.usage.input_tokens"], w["gen_ai.usage.output_tokens"]) == (10, 5)
    assert w["gen_ai.response.finish_reasons"] == ("stop",)
    assert west.status.status_code is StatusCode.UNSET
    c = dict(call.attributes or {})
    assert {k: c[k] for k in ("gen_ai.request.model", "gen_ai.request.stream")} == {
        "gen_ai.request.model": "gpt-x",
        "gen_ai.request.stream": True,
    }
    assert c["nitroproxy.request_id"] == "req-7"
    assert (c["nitroproxy.attempts"], c["nitroproxy.deployment"]) == (2, "west")
    assert c["gen_ai.provider.name"] == "anthropic"
    assert c["gen_ai.response.finish_reasons"] == ("stop",)
    assert c["nitroproxy.ttft_ms"] == 42.0
    assert "error.type" not in c


def test_a_failed_call_says_why_on_its_span() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(TracingSettings(enabled=True), exporter=exporter, batch=False)
    trace = tracing.call(request_id="r", endpoint=Endpoint.EMBEDDINGS, model="emb", stream=False)
    trace.end(make_record(0, status=429, outcome="rate_limited", error_class="RateLimited"))
    [span] = exporter.get_finished_spans()
    assert span.name == "embeddings emb"
    assert (span.attributes or {})["error.type"] == "RateLimited"
    assert span.status.status_code is StatusCode.ERROR


def test_sampled_out_calls_export_nothing_and_have_no_trace_id() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(TracingSettings(enabled=True, sample_ratio=0.0), exporter=exporter)
    assert traced_failover(tracing) is None
    tracing.force_flush()
    assert exporter.get_finished_spans() == ()


def test_only_finish_reasons_that_look_like_one_are_kept() -> None:
    junk = ["stop", "Stop now", "length", "stop", 7, "x" * 41, "tool_calls", "canary 123"]
    assert finish_reasons_of(junk) == ("stop", "length", "tool_calls")
    openai = {"choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}, "x"]}
    assert finish_reasons_in(openai) == ("stop", "length")
    assert finish_reasons_in({"stop_reason": "end_turn", "content": []}) == ("end_turn",)
    assert finish_reasons_in({"data": [{"embedding": [0.1]}]}) == ()
    assert finish_reasons_in(None) == ()


def test_the_access_line_carries_the_trace_id_only_when_traced() -> None:
    record = make_record(0)
    assert "trace_id" not in access_fields(record, method="POST", path="/v1/chat/completions")
    line = access_fields(record, method="POST", path="/v1/x", trace_id="ab" * 16)
    assert line["trace_id"] == "ab" * 16 and line["request_id"] == "req-0"


@pytest.fixture
async def collector() -> AsyncIterator[tuple[str, list[ExportTraceServiceRequest], list[Any]]]:
    """An OTLP/HTTP traces endpoint on a loopback port that keeps what it is sent."""
    received: list[ExportTraceServiceRequest] = []
    headers: list[Any] = []

    async def traces(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        headers.append(dict(request.headers))
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner, port = await start(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}/v1/traces", received, headers
    finally:
        await runner.cleanup()


async def test_the_otlp_exporter_posts_the_spans_to_the_configured_endpoint(
    collector: tuple[str, list[ExportTraceServiceRequest], list[Any]],
) -> None:
    url, received, headers = collector
    settings = TracingSettings(
        enabled=True, endpoint=url, headers={"x-tenant": "t1"}, service_name="np-test"
    )
    tracing = Tracing(settings)
    trace_id = traced_failover(tracing)
    loop = asyncio.get_running_loop()
    # The exporter is synchronous and runs in the SDK's thread; the collector is on this loop.
    assert await loop.run_in_executor(None, tracing.force_flush)
    await loop.run_in_executor(None, tracing.shutdown)
    spans = [
        (span, rs.resource)
        for message in received
        for rs in message.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    assert sorted(s.name for s, _ in spans) == ["chat gpt-x", "chat up-east", "chat up-west"]
    assert {s.trace_id.hex() for s, _ in spans} == {trace_id}
    resource = {a.key: a.value.string_value for a in spans[0][1].attributes}
    assert resource["service.name"] == "np-test"
    assert headers[0]["x-tenant"] == "t1"
    assert headers[0]["Content-Type"] == "application/x-protobuf"
