"""An Exchange to the client: one JSON body, or an SSE stream written event by event.

Backpressure comes from awaiting each write. A client that goes away cancels the handler
(the server runs with ``handler_cancellation``), which closes the upstream connection in
the ``finally`` below; the call is settled exactly once whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiohttp import ClientResponse, web

from nitroproxy import data
from nitroproxy.core import anthropic_wire, openai_wire, sse, tokens
from nitroproxy.core.accounting import Tally
from nitroproxy.core.assembler import StreamAssembler
from nitroproxy.core.completion_counter import CompletionCounter
from nitroproxy.core.errors import ProxyError, UpstreamError
from nitroproxy.core.pipeline import StreamPipeline
from nitroproxy.core.types import ApiFormat, Outcome, Usage
from nitroproxy.proxy.gateway import Call, Exchange, status_outcome
from nitroproxy.telemetry import logs
from nitroproxy.upstream.provider import Provider
from nitroproxy.web import caching
from nitroproxy.web.appkeys import GATEWAY, METRICS, SETTINGS
from nitroproxy.web.caching import CachePlan
from nitroproxy.web.errors import stream_error_event
from nitroproxy.web.middleware import REQUEST_ID

_log = logs.get_logger("nitroproxy.relay")
CLIENT_GONE = 499  # nginx's convention for "client closed the request"
T = TypeVar("T")


async def relay(request: web.Request, call: Call) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    tally = call.tally
    exchange: Exchange | None = None
    response: web.StreamResponse | None = None
    try:
        cache_plan = caching.plan(request, call)
        await _guard(gateway.admit(call), call)
        if cache_plan is not None:
            hit = await caching.serve_hit(request, call, cache_plan)
            if hit is not None:
                return hit
        keepalive = request.app[SETTINGS].server.keepalive_interval
        if call.stream and keepalive > 0:
            exchange, response = await _open_with_keepalive(request, call, keepalive)
        else:
            exchange = await _guard(gateway.open(call), call)
        if exchange is None:
            assert response is not None
            return response
        if not call.stream:
            return await _respond(request, call, exchange, cache_plan)
        return await _stream(request, call, exchange, response, cache_plan)
    except (asyncio.CancelledError, ConnectionResetError):
        tally.fail(CLIENT_GONE, Outcome.CLIENT_DISCONNECTED, None)
        raise
    except ProxyError as exc:
        # A refusal or failure after routing (a body that breaks off, a bad cache header):
        # the record must say what the client was told, and health must not see a success.
        if tally.outcome is Outcome.OK:
            tally.fail(*status_outcome(exc), exc.error_class)
        raise
    except Exception:
        tally.fail(500, Outcome.UPSTREAM_ERROR, "internal_error")
        raise
    finally:
        tally.ended_at = gateway.clock()
        if exchange is not None:
            exchange.close()
        gateway.finish(call)


async def _guard(step: Awaitable[T], call: Call) -> T:
    """Run a step that may refuse the call, noting the refusal in the tally."""
    try:
        return await step
    except ProxyError as exc:
        status, outcome = status_outcome(exc)
        call.tally.fail(status, outcome, exc.error_class)
        raise


async def _open_with_keepalive(
    request: web.Request, call: Call, interval: float
) -> tuple[Exchange | None, web.StreamResponse | None]:
    """While the first token is slow, send SSE comments so idle proxies keep the connection.
    Once headers are out, failover is over: an error then goes in-band."""
    task = asyncio.ensure_future(_guard(request.app[GATEWAY].open(call), call))
    response: web.StreamResponse | None = None
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=interval)
            if done:
                break
            if response is None:
                response = await _prepare_stream(request, call, None)
            await response.write(sse.comment())
    finally:
        if not task.done():
            task.cancel()
    try:
        return task.result(), response
    except ProxyError as exc:
        if response is None:
            raise
        await _write_error(response, call, exc)
        return None, response


def _transparency(call: Call, exchange: Exchange | None) -> dict[str, str]:
    headers = {"x-request-id": call.request_id}
    if exchange is not None:
        headers["x-nitroproxy-provider"] = exchange.provider.name
        headers["x-nitroproxy-deployment"] = exchange.deployment.name
        headers["x-nitroproxy-upstream-model"] = exchange.deployment.upstream_model
        headers["x-nitroproxy-attempts"] = str(call.tally.attempts)
    headers.update(call.extra_headers)
    return headers


async def _respond(
    request: web.Request, call: Call, exchange: Exchange, cache_plan: CachePlan | None
) -> web.Response:
    gateway = request.app[GATEWAY]
    raw = await gateway.client.read(exchange.provider, exchange.response)
    try:
        parsed: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        error = UpstreamError(f"provider '{exchange.provider.name}' sent a malformed response")
        call.tally.fail(error.status, Outcome.UPSTREAM_ERROR, error.error_class)
        raise error
    upstream = exchange.provider.kind
    answer: dict[str, Any] = parsed
    if upstream is call.client_format:
        body = raw
    else:
        model = exchange.deployment.upstream_model
        if upstream is ApiFormat.ANTHROPIC:
            answer = anthropic_wire.messages_response_to_chat(
                parsed, model=model, created=int(time.time())
            )
        else:
            answer = anthropic_wire.chat_response_to_messages(parsed, model=model)
        body = orjson.dumps(answer)
    usage = _response_usage(upstream, parsed)
    call.tally.provider_usage = usage
    call.tally.completed = True
    tokens_settings = request.app[SETTINGS].tokens
    if usage is None and tokens_settings.count:
        call.tally.completion_estimate = await _count_output(
            call, upstream, parsed, tokens_settings.offload_chars
        )
    if cache_plan is not None:
        caching.store(cache_plan, call, answer)
    return web.Response(
        body=body,
        status=exchange.response.status,
        content_type="application/json",
        headers=_transparency(call, exchange),
    )


def _response_usage(upstream: ApiFormat, parsed: dict[str, Any]) -> Usage | None:
    raw = parsed.get("usage")
    if upstream is ApiFormat.ANTHROPIC:
        return anthropic_wire.usage_from_anthropic(raw) if isinstance(raw, dict) else None
    return openai_wire.usage_from(raw)


async def _count_output(
    call: Call, upstream: ApiFormat, parsed: dict[str, Any], offload_chars: int
) -> int:
    if upstream is ApiFormat.ANTHROPIC:
        text = "".join(anthropic_wire.message_texts(parsed))
    else:
        text = "".join(openai_wire.chunk_texts(parsed))
    enc = data.encoding_for_model(call.tally.upstream_model or call.model.name)
    if len(text) > offload_chars:
        return await asyncio.get_running_loop().run_in_executor(None, tokens.count_text, enc, text)
    return tokens.count_text(enc, text)


async def _prepare_stream(
    request: web.Request, call: Call, exchange: Exchange | None
) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200, headers={**sse.HEADERS, **_transparency(call, exchange)}
    )
    await response.prepare(request)
    return response


async def _stream(
    request: web.Request,
    call: Call,
    exchange: Exchange,
    response: web.StreamResponse | None,
    cache_plan: CachePlan | None,
) -> web.StreamResponse:
    metrics = request.app[METRICS]
    tally = call.tally
    counter = None
    if request.app[SETTINGS].tokens.count:
        counter = CompletionCounter(data.encoding_for_model(exchange.deployment.upstream_model))
    pipeline = StreamPipeline(
        upstream=exchange.provider.kind,
        client=call.client_format,
        counter=counter,
        strip_usage=not call.wants_usage,
        model=exchange.deployment.upstream_model,
        created=int(time.time()),
        message_id=f"msg_{request[REQUEST_ID]}",
        prompt_tokens=tally.prompt_estimate or 0,
        include_usage=call.wants_usage,
    )
    assembler = cache_plan.assembler(call) if cache_plan is not None else None
    if response is None:
        response = await _prepare_stream(request, call, exchange)
    metrics.stream_started()
    try:
        await _pump(request, pipeline, exchange, response, tally, assembler)
    except ProxyError as exc:
        tally.fail(exc.status, Outcome.STREAM_ERROR, exc.error_class)
        await _write_error(response, call, exc)
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception:
        # Headers are out: whatever broke (an upstream event of a shape we did not expect)
        # must end the stream in-band, never as a second status line inside the body.
        _log.exception("stream failed", request_id=call.request_id)
        error = UpstreamError("the stream failed inside the proxy", code="stream_failed")
        tally.fail(error.status, Outcome.STREAM_ERROR, "internal_error")
        await _write_error(response, call, error)
    finally:
        tally.provider_usage = pipeline.usage
        tally.completed = pipeline.completed
        if pipeline.usage is None or not pipeline.completed:
            # Only then does the in-flight count decide anything; reading it encodes the
            # last, not yet counted stretch of text, so skip that when the provider's wins.
            tally.completion_estimate = pipeline.counted_completion_tokens
        metrics.stream_ended()
    if cache_plan is not None and assembler is not None and pipeline.completed:
        caching.store(cache_plan, call, assembler.assembled(usage=pipeline.usage))
    return response


async def _pump(
    request: web.Request,
    pipeline: StreamPipeline,
    exchange: Exchange,
    response: web.StreamResponse,
    tally: Tally,
    assembler: StreamAssembler | None,
) -> None:
    gateway = request.app[GATEWAY]
    keepalive = request.app[SETTINGS].server.keepalive_interval
    clock, read, provider = gateway.clock, gateway.client.next_chunk, exchange.provider
    chunk = exchange.first_chunk
    while chunk:
        out = pipeline.feed(chunk)
        if out:
            if tally.first_output_at is None and pipeline.output_started:
                tally.first_output_at = clock()
            await response.write(out)
            if assembler is not None:
                assembler.feed_bytes(out)
        if pipeline.completed:
            # Nothing after [DONE] / message_stop matters. Read on only to let the upstream
            # connection go back to the pool, briefly, and never fail a finished stream.
            chunk = await _drain(read, provider, exchange)
            continue
        if keepalive > 0:
            chunk = await _read_with_keepalive(read, provider, exchange, response, keepalive)
        else:
            chunk = await read(provider, exchange.response)
    out = pipeline.end()
    if out:
        await response.write(out)
        if assembler is not None:
            assembler.feed_bytes(out)
    if not pipeline.completed:
        raise UpstreamError(
            f"provider '{exchange.provider.name}' ended the stream before it was complete",
            code="upstream_stream_truncated",
        )


async def _drain(
    read: Callable[[Provider, ClientResponse], Awaitable[bytes]],
    provider: Provider,
    exchange: Exchange,
) -> bytes:
    try:
        async with asyncio.timeout(1.0):
            return await read(provider, exchange.response)
    except (ProxyError, TimeoutError):
        return b""


async def _read_with_keepalive(
    read: Callable[[Provider, ClientResponse], Awaitable[bytes]],
    provider: Provider,
    exchange: Exchange,
    response: web.StreamResponse,
    interval: float,
) -> bytes:
    """Wait for the next chunk, writing an SSE comment every ``interval`` of silence (a slow
    first token, a long reasoning pause) so idle-timeout proxies keep the connection."""
    while True:
        try:
            async with asyncio.timeout(interval) as scope:
                return await read(provider, exchange.response)
        except TimeoutError:
            if not scope.expired():
                raise
        await response.write(sse.comment())


async def _write_error(response: web.StreamResponse, call: Call, exc: ProxyError) -> None:
    with contextlib.suppress(ConnectionResetError):
        await response.write(stream_error_event(exc, call.client_format))
