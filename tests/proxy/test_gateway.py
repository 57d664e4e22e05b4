"""The gateway with a fake transport and a fake clock: every way a call can end is settled
exactly once, with the status the client saw, and failover, cool-downs and probes follow the
health book. No sockets; each test takes milliseconds."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import orjson
import pytest

from nitroproxy.core.errors import RateLimited, UpstreamError, UpstreamStatusError, UpstreamTimeout
from nitroproxy.core.limits import KeyLimits
from nitroproxy.core.principal import Principal
from tests.proxy.fakes import (
    FakeResponse,
    Sent,
    chat_stream,
    drain,
    make_rig,
    ok,
)


def by_provider(**responses: Any):
    """A handler answering per provider name; a list is served one item per request."""

    def handler(sent: Sent) -> FakeResponse:
        answer = responses[sent.provider]
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer() if callable(answer) else answer

    return handler


async def test_ok_non_streamed_is_one_record_with_the_providers_usage() -> None:
    rig = make_rig(by_provider(p1=ok))
    status, body = await drain(rig, rig.call())
    await rig.settled()
    assert status == 200 and orjson.loads(body)["choices"][0]["message"]["content"]
    (record,) = rig.records
    assert (record.outcome, record.status, record.attempts) == ("ok", 200, 1)
    assert (record.prompt_tokens, record.completion_tokens, record.usage_source) == (
        7,
        2,
        "provider",
    )
    assert record.cost_nanos == 7 * 1000 + 2 * 2000
    assert rig.transport.sent[0].body["model"] == "up-a"


async def test_ok_stream_relays_every_event_and_records_the_providers_usage() -> None:
    rig = make_rig(by_provider(p1=lambda: ok(stream=True)))
    status, raw = await drain(rig, rig.call(stream=True))
    await rig.settled()
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
    assert b'"usage"' not in raw  # the proxy asked for usage; the client did not
    (record,) = rig.records
    assert (record.outcome, record.completion_tokens, record.usage_source) == ("ok", 2, "provider")
    assert rig.transport.sent[0].body["stream_options"] == {"include_usage": True}
    assert rig.transport.responses[0].closed  # the exchange released the upstream


async def test_upstream_error_is_raised_and_recorded_with_its_status() -> None:
    rig = make_rig(by_provider(p1=lambda: FakeResponse(400, [b'{"error": {"message": "no"}}'])))
    with pytest.raises(UpstreamStatusError) as caught:
        await drain(rig, rig.call("one"))
    await rig.settled()
    assert caught.value.upstream_status == 400
    (record,) = rig.records
    assert (record.outcome, record.status, record.error_class) == (
        "client_error",
        400,
        "upstream_400",
    )
    assert record.attempts == 1 and len(rig.transport.sent) == 1  # a 400 is not failed over


async def test_a_retryable_failure_fails_over_and_cools_the_deployment_down() -> None:
    rig = make_rig(by_provider(p1=lambda: FakeResponse(503), p2=ok))
    status, _ = await drain(rig, rig.call())
    await rig.settled()
    assert status == 200
    (record,) = rig.records
    assert (record.deployment, record.attempts, record.outcome) == ("b", 2, "ok")
    assert rig.gateway.health.state("a", rig.clock()) == "cooling_down"
    # The next call goes straight to b while a cools down.
    await drain(rig, rig.call())
    assert [s.provider for s in rig.transport.sent] == ["p1", "p2", "p2"]


async def test_after_the_cool_down_one_probe_goes_to_the_deployment_and_success_heals_it() -> None:
    rig = make_rig(by_provider(p1=[FakeResponse(503), ok()], p2=ok))
    await drain(rig, rig.call())
    rig.clock.now += 10.5  # past base_cooldown
    assert rig.gateway.health.state("a", rig.clock()) == "half_open"
    await drain(rig, rig.call())
    await rig.settled()
    assert [s.provider for s in rig.transport.sent] == ["p1", "p2", "p1"]
    assert rig.gateway.health.state("a", rig.clock()) == "healthy"
    assert [r.deployment for r in rig.records] == ["b", "a"]


async def test_a_timeout_is_recorded_as_a_timeout_with_504() -> None:
    rig = make_rig(by_provider(p1=TimeoutError()))
    with pytest.raises(UpstreamTimeout) as caught:
        await drain(rig, rig.call("one"))
    await rig.settled()
    assert isinstance(caught.value.__cause__, TimeoutError)  # the mapping keeps the cause
    (record,) = rig.records
    assert (record.outcome, record.status) == ("timeout", 504)


async def test_connection_errors_are_mapped_from_their_cause_and_every_attempt_is_counted() -> None:
    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),
        OSError(111, "refused"),
    )
    rig = make_rig(by_provider(p1=refused, p2=refused))
    with pytest.raises(UpstreamError) as caught:
        await drain(rig, rig.call())
    await rig.settled()
    assert caught.value.code == "upstream_unreachable"
    assert caught.value.__cause__ is refused
    (record,) = rig.records
    assert (record.outcome, record.status, record.attempts) == ("upstream_error", 502, 2)


async def test_a_client_that_leaves_mid_stream_is_499_and_the_upstream_is_closed() -> None:
    rig = make_rig(by_provider(p1=lambda: ok(stream=True, text="one two three four five")))
    call = rig.call(stream=True)
    with pytest.raises(ConnectionResetError):
        async with rig.gateway.exchange(call) as ex:
            async for _chunk in ex:
                raise ConnectionResetError  # the write to the client failed
    await rig.settled()
    (record,) = rig.records
    assert (record.outcome, record.status) == ("client_disconnected", 499)
    assert rig.transport.responses[0].closed
    assert rig.metrics._active_streams == 0


async def test_a_cancelled_handler_is_499_too() -> None:
    gate = asyncio.Event()

    async def slow(sent: Sent) -> FakeResponse:
        await gate.wait()
        return ok()

    rig = make_rig(slow)
    task = asyncio.create_task(drain(rig, rig.call("one")))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await rig.settled()
    (record,) = rig.records
    assert (record.outcome, record.status, record.attempts) == ("client_disconnected", 499, 1)


async def test_good_events_before_a_malformed_one_are_delivered_then_the_error() -> None:
    good = b"".join(chat_stream(text="alpha beta gamma")[:3])
    rig = make_rig(by_provider(p1=lambda: FakeResponse(200, [good + b"data: {not json\n\n"])))
    status, raw = await drain(rig, rig.call("one", stream=True))
    await rig.settled()
    assert status == 200
    assert raw.startswith(good.replace(b',"usage":null', b""))
    assert raw.endswith(b"\n\n") and b"malformed" in raw.rsplit(b"data: ", 1)[1]
    (record,) = rig.records
    assert (record.outcome, record.status) == ("stream_error", 502)
    assert record.completion_tokens > 0  # the tokens the client was sent


async def test_a_stream_that_fails_before_its_first_byte_is_an_ordinary_error() -> None:
    rig = make_rig(by_provider(p1=lambda: FakeResponse(200, [b"data: {not json\n\n"])))
    with pytest.raises(UpstreamError):
        await drain(rig, rig.call("one", stream=True))
    await rig.settled()
    (record,) = rig.records
    assert (record.outcome, record.status) == ("upstream_error", 502)


async def test_a_non_streamed_body_that_is_not_json_fails_over() -> None:
    rig = make_rig(by_provider(p1=lambda: FakeResponse(200, [b"<html>"]), p2=ok))
    status, _ = await drain(rig, rig.call())
    await rig.settled()
    assert status == 200
    (record,) = rig.records
    assert (record.deployment, record.attempts) == ("b", 2)


async def test_a_refused_call_is_recorded_with_429_and_no_attempt() -> None:
    rig = make_rig(by_provider(p1=ok))
    key = Principal(key_id="k1", user_id="u1", limits=KeyLimits(rpm=1))
    await drain(rig, rig.call("one", principal=key))
    with pytest.raises(RateLimited):
        await drain(rig, rig.call("one", principal=key))
    await rig.settled()
    assert [(r.outcome, r.status, r.attempts) for r in rig.records] == [
        ("ok", 200, 1),
        ("rate_limited", 429, 0),
    ]
    assert len(rig.transport.sent) == 1


class FakeCache:
    max_entry_bytes = 1 << 20

    def __init__(self) -> None:
        self.entries: dict[bytes, Any] = {}

    async def lookup(self, scope: Any, material: bytes) -> Any:
        return self.entries.get(material)

    def store(self, scope: Any, material: bytes, entry: Any) -> None:
        self.entries[material] = entry


async def test_a_cache_hit_is_served_without_the_upstream_and_recorded_at_zero_cost() -> None:
    cache = FakeCache()
    rig = make_rig(by_provider(p1=ok), cache=cache)
    first_status, first = await drain(rig, rig.call("one", cache_header="use"))
    await rig.settled()
    assert len(cache.entries) == 1
    second_status, second = await drain(rig, rig.call("one", cache_header="use"))
    await rig.settled()
    assert (first_status, second_status) == (200, 200)
    assert orjson.loads(second)["choices"] == orjson.loads(first)["choices"]
    assert len(rig.transport.sent) == 1
    hit = rig.records[1]
    assert (hit.outcome, hit.cache_hit, hit.cost_nanos, hit.completion_tokens) == (
        "cache_hit",
        True,
        0,
        0,
    )


async def test_records_use_the_gateways_clock() -> None:
    rig = make_rig(by_provider(p1=ok))
    start = rig.gateway.clock.wall()
    rig.clock.now += 3600
    await drain(rig, rig.call("one"))
    await rig.settled()
    assert rig.records[0].ts == pytest.approx(start + 3600)


async def test_every_call_is_settled_exactly_once_whatever_happens() -> None:
    outcomes = [ok(), FakeResponse(500), ok(stream=True), FakeResponse(429)]
    rig = make_rig(lambda sent: outcomes.pop(0))
    for stream in (False, False, True, False):
        with contextlib.suppress(UpstreamStatusError):
            await drain(rig, rig.call("one", stream=stream))
    await rig.settled()
    assert [r.outcome for r in rig.records] == ["ok", "upstream_error", "ok", "rate_limited"]
    assert len({r.id for r in rig.records}) == 4


async def test_the_cool_down_gauge_shows_a_cool_down_and_its_end() -> None:
    rig = make_rig(by_provider(p1=lambda: FakeResponse(503), p2=ok))
    await drain(rig, rig.call())

    def gauge(deployment: str) -> float:
        text = rig.metrics.render()[0].decode()
        line = f'nitroproxy_deployment_cooling_down{{deployment="{deployment}"}} '
        (value,) = [row[len(line) :] for row in text.splitlines() if row.startswith(line)]
        return float(value)

    assert (gauge("a"), gauge("b")) == (1.0, 0.0)
    rig.clock.now += 10.5  # the cool-down ends by the clock alone
    assert gauge("a") == 0.0
