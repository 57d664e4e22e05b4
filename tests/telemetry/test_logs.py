"""Logs: JSON lines, one redaction pass for structlog and stdlib records, the access line."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from nitroproxy.core.types import UsageRecord
from nitroproxy.telemetry import logs

# Canaries: each must never appear in any output.
NP_KEY = "np-" + "Zq8xR2mK7vT4wP9sL3nB6cY1dF5gH0jA" + "canary0key0Xy"
SK_KEY = "sk-proj-Canary7Qm2Rz9Lx4Vb8Nt3Wk6Ps1Yd5"
ANT_KEY = "sk-ant-api03-Canary4Hf8Jd2Ks6Lq0Wm3Nx7Pz1"
HEX_KEY = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
PROMPT = "CANARY-PROMPT: the secret recipe is saffron and zinc"
COMPLETION = "CANARY-COMPLETION: the answer is forty-two"
CANARIES = (NP_KEY, SK_KEY, ANT_KEY, HEX_KEY, PROMPT, COMPLETION)

RECORD = UsageRecord(
    id="7d3f0c2a9b8e4d1f8a6c5b4e3d2c1b0a",
    request_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    ts=1_700_000_000.0,
    key_id="key_01",
    user_id="user_07",
    model="gpt-4o-mini",
    provider="openai",
    deployment="openai-main",
    upstream_model="gpt-4o-mini-2024-07-18",
    endpoint="chat.completions",
    stream=True,
    status=200,
    outcome="ok",
    error_class=None,
    prompt_tokens=1200,
    completion_tokens=350,
    cached_tokens=1024,
    cache_write_tokens=0,
    reasoning_tokens=12,
    usage_source="provider",
    cost_nanos=412_500,
    latency_ms=1834.237,
    ttft_ms=312.71,
    output_tps=71.3,
    attempts=2,
    client_ip=None,
    user_agent=None,
)


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    logs.configure_logging(level="debug", fmt="json", stream=stream)
    yield stream
    # Back to stdout at a quiet level, so later tests don't write into this buffer.
    logs.configure_logging(level="warning", fmt="json")
    structlog.contextvars.clear_contextvars()
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def assert_no_canary(text: str) -> None:
    for canary in CANARIES:
        assert canary not in text
    assert "Canary" not in text
    assert "CANARY" not in text


def test_lines_are_json_with_level_logger_and_timestamp(out: io.StringIO) -> None:
    logs.get_logger("nitroproxy.test").info("hello", n=3)
    (line,) = lines(out)
    assert line["event"] == "hello"
    assert line["n"] == 3
    assert line["level"] == "info"
    assert line["logger"] == "nitroproxy.test"
    assert time.strptime(line["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")
    assert line["timestamp"].endswith("Z")


def test_key_in_the_event_message_is_masked(out: io.StringIO) -> None:
    logs.get_logger().warning(f"upstream rejected {SK_KEY}; client used {NP_KEY} and {ANT_KEY}")
    text = out.getvalue()
    assert_no_canary(text)
    assert "np-…[redacted]" in text
    assert "sk-ant…[redacted]" in text


def test_credentials_nested_in_dicts_and_lists_are_redacted(out: io.StringIO) -> None:
    config: dict[str, Any] = {
        "providers": [{"name": "openai", "api_key": SK_KEY, "note": f"rotated from {NP_KEY}"}],
        "admin": {"Admin-Key": NP_KEY, "password": "hunter2-Canary"},
        "digest": HEX_KEY,
    }
    logs.get_logger().info("loaded", config=config, authorization=f"Bearer {NP_KEY}")
    assert_no_canary(out.getvalue())
    (line,) = lines(out)
    assert line["config"]["providers"][0]["api_key"] == "[redacted]"
    assert line["config"]["providers"][0]["name"] == "openai"
    assert line["authorization"] == "[redacted]"
    assert config["admin"]["password"] == "hunter2-Canary"  # the caller's dict is untouched


def test_header_dicts_are_dropped_or_redacted(out: io.StringIO) -> None:
    headers = {
        "Authorization": f"Bearer {NP_KEY}",
        "x-api-key": ANT_KEY,
        "Accept": "json",
    }
    logs.get_logger().info("in", headers=headers, upstream={"request_headers": headers})
    assert_no_canary(out.getvalue())
    (line,) = lines(out)
    assert line["headers"] == "[dropped]"
    nested = line["upstream"]["request_headers"]
    assert nested == {
        "Authorization": "[redacted]",
        "x-api-key": "[redacted]",
        "Accept": "json",
    }


def test_bearer_values_anywhere_are_masked(out: io.StringIO) -> None:
    logs.get_logger().info("retrying", detail=f"sent 'Authorization: Bearer {NP_KEY}'")
    (line,) = lines(out)
    assert line["detail"] == "sent 'Authorization: Bearer [redacted]'"


def test_exception_text_is_masked(out: io.StringIO) -> None:
    log = logs.get_logger()
    try:
        raise ValueError(f"upstream said: invalid key {SK_KEY}")
    except ValueError:
        log.exception("upstream failed")
    try:
        raise RuntimeError(f"hex {HEX_KEY}")
    except RuntimeError as exc:
        log.error("wrapped", error=exc)
    assert_no_canary(out.getvalue())
    first, second = lines(out)
    assert "ValueError: upstream said: invalid key sk-…[redacted]" in first["exception"]
    assert "Traceback" in first["exception"]
    assert second["error"] == "RuntimeError: hex [redacted]"


def test_prompt_and_completion_fields_are_dropped_at_any_depth(
    out: io.StringIO,
) -> None:
    messages = [{"role": "user", "content": PROMPT}]
    logs.get_logger().info(
        "debugging",
        prompt=PROMPT,
        messages=messages,
        completion=COMPLETION,
        request={"model": "gpt-4o", "messages": messages, "input": PROMPT},
        response={"choices": [{"text": COMPLETION}], "body": COMPLETION},
        tool={"arguments": PROMPT, "system": PROMPT},
    )
    assert_no_canary(out.getvalue())
    (line,) = lines(out)
    assert line["prompt"] == line["messages"] == line["completion"] == "[dropped]"
    assert line["request"] == {
        "model": "gpt-4o",
        "messages": "[dropped]",
        "input": "[dropped]",
    }


def test_token_counts_survive_redaction(out: io.StringIO) -> None:
    logs.get_logger().info(
        "usage",
        prompt_tokens=12,
        completion_tokens=34,
        total_tokens=46,
        max_tokens=100,
        usage={"prompt_tokens": 12, "cached_tokens": 8},
        token="a-session-token-Canary",
    )
    (line,) = lines(out)
    assert (line["prompt_tokens"], line["completion_tokens"], line["total_tokens"]) == (
        12,
        34,
        46,
    )
    assert line["max_tokens"] == 100
    assert line["usage"] == {"prompt_tokens": 12, "cached_tokens": 8}
    assert line["token"] == "[redacted]"


def test_ids_and_config_names_are_not_mistaken_for_secrets(out: io.StringIO) -> None:
    logs.get_logger().info(
        "ok",
        request_id=RECORD.request_id,
        model="claude-3-5-sonnet-20241022",
        path="/v1/chat/completions",
        metric="nitroproxy_request_duration_seconds_bucket",
        uuid="123e4567-e89b-12d3-a456-426614174000",
    )
    (line,) = lines(out)
    assert line["request_id"] == RECORD.request_id
    assert line["model"] == "claude-3-5-sonnet-20241022"
    assert line["path"] == "/v1/chat/completions"
    assert line["metric"] == "nitroproxy_request_duration_seconds_bucket"
    assert line["uuid"] == "123e4567-e89b-12d3-a456-426614174000"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Bearer {NP_KEY}", "Bearer [redacted]"),
        (f"bearer {SK_KEY}", "bearer [redacted]"),
        (f"key={NP_KEY}&x=1", "key=np-…[redacted]&x=1"),
        (f"{ANT_KEY}", "sk-ant…[redacted]"),
        (f"digest {HEX_KEY}", "digest [redacted]"),
        ("mixed Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z end", "mixed [redacted] end"),
        ("a_very_long_snake_case_identifier_without_digits", None),
        ("risk-assessment-and-task-scheduling", None),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36", None),
        ("", None),
    ],
)
def test_mask(text: str, expected: str | None) -> None:
    assert logs.mask(text) == (text if expected is None else expected)


def test_access_line_has_every_field(out: io.StringIO) -> None:
    logs.access_log(logs.get_logger("nitroproxy.access"), RECORD, method="POST", path="/v1/x")
    (line,) = lines(out)
    assert line == {
        "event": "request",
        "level": "info",
        "logger": "nitroproxy.access",
        "timestamp": line["timestamp"],
        "request_id": RECORD.request_id,
        "key_id": "key_01",
        "user_id": "user_07",
        "method": "POST",
        "path": "/v1/x",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "deployment": "openai-main",
        "upstream_model": "gpt-4o-mini-2024-07-18",
        "status": 200,
        "outcome": "ok",
        "error_class": None,
        "prompt_tokens": 1200,
        "completion_tokens": 350,
        "cached_tokens": 1024,
        "reasoning_tokens": 12,
        "usage_source": "provider",
        "cost_usd": 0.0004125,
        "latency_ms": 1834.24,
        "ttft_ms": 312.71,
        "attempts": 2,
        "stream": True,
    }


def test_access_line_without_ttft_or_provider(out: io.StringIO) -> None:
    rec = dataclasses.replace(RECORD, ttft_ms=None, provider=None, status=429, outcome="rl")
    logs.access_log(logs.get_logger(), rec, method="POST", path="/v1/messages")
    (line,) = lines(out)
    assert (line["ttft_ms"], line["provider"], line["status"]) == (None, None, 429)


def test_request_context_appears_on_every_line(out: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-ctx-1")
    logs.get_logger().info("one")
    logging.getLogger("nitroproxy.store").warning("two")
    assert [line["request_id"] for line in lines(out)] == ["req-ctx-1", "req-ctx-1"]


def test_stdlib_logging_goes_through_the_same_redaction(out: io.StringIO) -> None:
    log = logging.getLogger("aiohttp.server")
    log.error("auth failed: %s", f"Bearer {NP_KEY}", extra={"api_key": SK_KEY, "n": 2})
    try:
        raise ConnectionError(f"reset while sending {ANT_KEY}")
    except ConnectionError:
        logging.getLogger("nitroproxy.providers").exception("upstream %s", "openai")
    assert_no_canary(out.getvalue())
    first, second = lines(out)
    assert first["event"] == "auth failed: Bearer [redacted]"
    assert (first["logger"], first["level"], first["api_key"], first["n"]) == (
        "aiohttp.server",
        "error",
        "[redacted]",
        2,
    )
    assert second["event"] == "upstream openai"
    assert "ConnectionError: reset while sending sk-ant…[redacted]" in second["exception"]


def test_aiohttp_access_logger_is_silenced(out: io.StringIO) -> None:
    logging.getLogger("aiohttp.access").info('127.0.0.1 "POST /v1/chat/completions" 200')
    assert out.getvalue() == ""


def test_level_filters_structlog_and_stdlib(out: io.StringIO) -> None:
    logs.configure_logging(level="warning", fmt="json", stream=out)
    logs.get_logger().info("quiet")
    logging.getLogger("nitroproxy.x").info("quiet too")
    logs.get_logger().warning("loud")
    assert [line["event"] for line in lines(out)] == ["loud"]


def test_level_comes_from_the_environment_when_not_given(
    out: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(logs.LEVEL_ENV, "ERROR")
    logs.configure_logging(fmt="json", stream=out)
    logs.get_logger().warning("dropped")
    logs.get_logger().error("kept")
    assert [line["event"] for line in lines(out)] == ["kept"]


def test_bad_level_or_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="log level"):
        logs.configure_logging(level="verbose", stream=io.StringIO())
    with pytest.raises(ValueError, match="log format"):
        logs.configure_logging(fmt="xml", stream=io.StringIO())


def test_configure_is_idempotent(out: io.StringIO) -> None:
    logs.configure_logging(level="debug", fmt="json", stream=out)
    logs.configure_logging(level="debug", fmt="json", stream=out)
    logs.get_logger().info("once")
    logging.getLogger("nitroproxy.x").info("stdlib once")
    assert [line["event"] for line in lines(out)] == ["once", "stdlib once"]


def test_loggers_used_before_a_reconfigure_follow_the_new_stream(
    out: io.StringIO,
) -> None:
    log = logs.get_logger("nitroproxy.early")
    log.info("first")
    second = io.StringIO()
    logs.configure_logging(level="debug", fmt="json", stream=second)
    log.info("second")
    assert [line["event"] for line in lines(out)] == ["first"]
    assert [line["event"] for line in lines(second)] == ["second"]


def test_console_format_is_readable_and_redacted(out: io.StringIO) -> None:
    logs.configure_logging(level="info", fmt="console", stream=out)
    logs.get_logger().info("console line", detail=f"Bearer {NP_KEY}", prompt=PROMPT)
    text = out.getvalue()
    assert "console line" in text
    assert not text.startswith("{")
    assert_no_canary(text)


def test_access_line_cost_is_small(out: io.StringIO) -> None:
    # A loose bound that survives a busy CI machine; see the module report for measurements.
    log = logs.get_logger("nitroproxy.access")
    logs.access_log(log, RECORD, method="POST", path="/v1/chat/completions")
    n = 2_000
    start = time.perf_counter()
    for _ in range(n):
        logs.access_log(log, RECORD, method="POST", path="/v1/chat/completions")
    assert (time.perf_counter() - start) / n < 500e-6
