"""Traces of real calls through a real proxy and the mock provider, kept by the SDK's
in-memory exporter: a streamed call that fails over, its access line's trace id, and the
canary prompt in no span."""

from __future__ import annotations

import io
from typing import Any

import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from nitroproxy.config import TracingSettings
from nitroproxy.telemetry import logs
from nitroproxy.telemetry.traces import Tracing
from tests.conftest import ProxyFactory, Upstream, add_model, wait_records

CANARY = "quaggacanary58d2e1"


def values(span: ReadableSpan) -> list[str]:
    out: list[str] = [span.name]
    for key, value in (span.attributes or {}).items():
        out.append(key)
        out.extend(str(v) for v in (value if isinstance(value, tuple) else (value,)))
    for event in span.events:
        out.append(event.name)
        out.extend(str(v) for v in (event.attributes or {}).values())
    return out


async def test_a_streamed_call_with_a_failover_is_one_tree_without_the_canary(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream
) -> None:
    add_model(proxy_config, "flaky", "a+fail500", "b+echo", strategy="fallback")
    exporter = InMemorySpanExporter()
    tracing = Tracing(TracingSettings(enabled=True), exporter=exporter, batch=False)
    out = io.StringIO()
    logs.configure_logging(level="info", fmt="json", stream=out)
    try:
        proxy = await make_proxy(proxy_config, tracing=tracing)
        body = {
            "model": "flaky",
            "messages": [{"role": "user", "content": f"say {CANARY}"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        r = await proxy.post("/v1/chat/completions", body, headers={"x-request-id": "rid-trace-1"})
        assert r.status == 200 and CANARY in await r.text()
        assert r.headers["x-nitroproxy-attempts"] == "2"
        [record] = await wait_records(proxy, 1)
        logs.flush()
    finally:
        logs.configure_logging(level="info", fmt="json")

    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["chat a+fail500", "chat b+echo", "chat flaky"]
    named = {s.name: s for s in spans}
    call, failed, answered = named["chat flaky"], named["chat a+fail500"], named["chat b+echo"]
    assert call.parent is None and call.kind is SpanKind.SERVER and call.context is not None
    trace_id = f"{call.context.trace_id:032x}"
    for attempt in (failed, answered):
        assert attempt.parent is not None and attempt.parent.span_id == call.context.span_id
        assert attempt.kind is SpanKind.CLIENT
    assert failed.end_time is not None and answered.start_time is not None
    assert failed.end_time <= answered.start_time

    f = dict(failed.attributes or {})
    assert (f["nitroproxy.attempt"], f["nitroproxy.deployment"]) == (1, "flaky-0")
    assert f["gen_ai.provider.name"] == "openai"
    assert f["http.response.status_code"] == 500 and f["error.type"]
    assert failed.status.status_code is StatusCode.ERROR
    assert (f["server.address"], f["server.port"]) == (
        "127.0.0.1",
        int(upstream.url.split(":")[-1]),
    )
    a = dict(answered.attributes or {})
    assert (a["nitroproxy.attempt"], a["gen_ai.response.model"]) == (2, "b+echo")
    assert a["gen_ai.usage.input_tokens"] == record.prompt_tokens > 0
    assert a["gen_ai.usage.output_tokens"] == record.completion_tokens > 0
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert answered.status.status_code is StatusCode.UNSET
    c = dict(call.attributes or {})
    assert c["gen_ai.operation.name"] == "chat" and c["gen_ai.request.model"] == "flaky"
    assert c["gen_ai.request.stream"] is True
    assert c["nitroproxy.request_id"] == "rid-trace-1" == record.request_id
    assert (c["nitroproxy.attempts"], c["nitroproxy.deployment"]) == (2, "flaky-1")
    assert c["gen_ai.usage.output_tokens"] == record.completion_tokens
    assert c["http.response.status_code"] == 200 and "error.type" not in c

    # The access line names the same trace; no span holds the prompt or the completion.
    lines = [orjson.loads(x) for x in out.getvalue().splitlines() if '"event":"request"' in x]
    assert [(x["request_id"], x["trace_id"]) for x in lines] == [("rid-trace-1", trace_id)]
    assert not [s.name for s in spans if any(CANARY in v for v in values(s))]


async def test_without_tracing_the_access_line_has_no_trace_id(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    out = io.StringIO()
    logs.configure_logging(level="info", fmt="json", stream=out)
    try:
        proxy = await make_proxy(proxy_config)
        body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
        assert (await proxy.post("/v1/chat/completions", body)).status == 200
        await wait_records(proxy, 1)
        logs.flush()
    finally:
        logs.configure_logging(level="info", fmt="json")
    [line] = [orjson.loads(x) for x in out.getvalue().splitlines() if '"event":"request"' in x]
    assert "trace_id" not in line


async def test_a_whole_answer_and_a_refused_call_are_traced_too(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["keys"].append({"name": "tight", "key": "np-tight-key-0123456789", "rpm": 1})
    exporter = InMemorySpanExporter()
    tracing = Tracing(TracingSettings(enabled=True), exporter=exporter, batch=False)
    proxy = await make_proxy(proxy_config, tracing=tracing)
    body = {
        "model": "claude-test",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}],
    }
    statuses = [
        (await proxy.post("/v1/messages", body, key="np-tight-key-0123456789")).status
        for _ in range(2)
    ]
    assert statuses == [200, 429]
    await wait_records(proxy, 2)
    answered, refused = sorted(
        (s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER),
        key=lambda s: s.start_time or 0,
    )
    a = dict(answered.attributes or {})
    assert answered.name == "chat claude-test" and a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
    r = dict(refused.attributes or {})
    assert r["http.response.status_code"] == 429 and r["error.type"]
    assert refused.status.status_code is StatusCode.ERROR
    assert "nitroproxy.deployment" not in r  # refused before any attempt
