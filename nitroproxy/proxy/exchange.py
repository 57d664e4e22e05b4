"""Exchanges: what the client gets for one call, in the client's own format.

Invariant (kept by ``Gateway.exchange``, which is the only way to get one): a call is settled
exactly once, after its exchange is released, with the status the client saw.

An exchange is either ``UpstreamExchange`` (a provider answered) or ``CachedExchange`` (the
opt-in cache did). Either is one JSON ``body`` (``streaming`` False) or an async iteration of
SSE bytes. Once a stream has produced its first byte the status line is gone, so any later
failure is written as the in-band error event the official SDKs raise, and the meter says
``stream_error``; before that, failures are raised and become an ordinary error response.
The exchange owns the upstream response, the stream transform, the completion counter and
the cache assembler; ``web`` sees only bytes and headers.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from nitroproxy.cache.store import CachedEntry
from nitroproxy.config import Settings
from nitroproxy.core import replay, sse
from nitroproxy.core.assembler import StreamAssembler
from nitroproxy.core.cache_policy import CacheResult
from nitroproxy.core.error_shapes import responses_failed_event, stream_error_event
from nitroproxy.core.errors import ProxyError, ServerShuttingDown, UpstreamError
from nitroproxy.core.pipeline import TextLog, UpstreamStream
from nitroproxy.core.types import Endpoint, Outcome, Usage
from nitroproxy.proxy import counting
from nitroproxy.proxy.caching import HEADER, SAVED_HEADER, CachePlan
from nitroproxy.proxy.call import Call
from nitroproxy.proxy.clock import Clock
from nitroproxy.proxy.routing import Route
from nitroproxy.proxy.settle import CacheWrite, status_outcome
from nitroproxy.telemetry import logs
from nitroproxy.telemetry.metrics import Metrics
from nitroproxy.telemetry.traces import finish_reasons_in, finish_reasons_of
from nitroproxy.upstream.adapter import Answer, Context
from nitroproxy.upstream.client import Response, UpstreamClient

_log = logs.get_logger("nitroproxy.exchange")
_DRAIN_S = 1.0


@dataclass(slots=True)
class Opened:
    """A successful attempt: the route that answered and its response. A stream's first
    chunk was read inside the attempt (so an upstream that fails before sending anything is
    still failed over); a non-streamed answer was read and parsed there, for the same reason."""

    route: Route
    response: Response
    first_chunk: bytes = b""
    answer: Answer | None = None

    def close(self) -> None:
        self.response.close()


def context_for(clock: Clock, call: Call, route: Route) -> Context:
    """What the adapter needs to write the client's answer for ``route``."""
    return Context(
        provider=route.provider.name,
        model=route.deployment.upstream_model,
        created=int(clock.wall()),
        message_id=f"msg_{call.request_id}",
        prompt_tokens=call.meter.prompt_estimate or 0,
        stem=call.request_id,
        native_responses=route.provider.settings.responses,
    )


class Exchange(abc.ABC):
    __slots__ = ("_headers", "call", "status")

    def __init__(self, call: Call, headers: dict[str, str], status: int = 200) -> None:
        self.call = call
        self.status = status
        self._headers = headers

    @property
    def streaming(self) -> bool:
        return self.call.stream

    @property
    def headers(self) -> dict[str, str]:
        """The response headers as known now; a stream's are final once it yields."""
        return {"x-request-id": self.call.request_id, **self._headers}

    @property
    @abc.abstractmethod
    def body(self) -> bytes:
        """The whole answer of a call that does not stream."""

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]:
        """The SSE bytes of a call that streams."""

    async def release(self) -> None:  # noqa: B027 - most exchanges hold nothing
        """Give back everything the exchange holds; it is settled right after."""

    def cache_write(self) -> CacheWrite | None:
        """A complete answer the opt-in cache may store, if any."""
        return None

    def finish_reasons(self) -> tuple[str, ...]:
        """How the answer ended, for the call's trace (empty when unknown)."""
        return ()


class CachedExchange(Exchange):
    """An answer from the opt-in cache: nothing upstream, nothing billed, the saving noted."""

    __slots__ = ("_entry",)

    def __init__(self, call: Call, headers: dict[str, str], entry: CachedEntry) -> None:
        super().__init__(call, headers)
        self._entry = entry
        meter = call.meter
        meter.fail(200, Outcome.CACHE_HIT, None)
        meter.completed = True
        meter.saved_nanos = entry.cost_nanos
        headers[HEADER] = CacheResult.HIT.value
        headers[SAVED_HEADER] = f"{entry.cost_nanos / 1e9:.9f}"

    @property
    def body(self) -> bytes:
        return orjson.dumps(self._entry.body)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        call = self.call
        for event in replay.replay_stream(
            call.endpoint, self._entry.body, include_usage=call.wants_usage
        ):
            yield event


class Parts:
    """What an upstream exchange borrows from its gateway."""

    __slots__ = ("client", "clock", "metrics", "settings")

    def __init__(
        self, settings: Settings, clock: Clock, metrics: Metrics, client: UpstreamClient
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.client = client


class UpstreamExchange(Exchange):
    """A provider's answer. With ``opened`` None the call is a stream under keep-alive: the
    attempts run (``opener``) while SSE comments keep idle intermediaries from closing it."""

    __slots__ = (
        "_cache_plan",
        "_counted",
        "_document",
        "_ended",
        "_finish",
        "_gen",
        "_opened",
        "_opener",
        "_opening",
        "_parts",
        "_sent",
    )

    def __init__(
        self,
        parts: Parts,
        call: Call,
        headers: dict[str, str],
        *,
        opened: Opened | None,
        opener: Callable[[], Awaitable[Opened]] | None = None,
        cache_plan: CachePlan | None = None,
    ) -> None:
        super().__init__(call, headers)
        self._parts = parts
        self._opened = opened
        self._opener = opener
        self._cache_plan = cache_plan
        self._document: dict[str, Any] | None = None
        self._gen: AsyncGenerator[bytes, None] | None = None
        self._sent = False
        self._counted = False
        self._finish: str | None = None
        self._ended = False
        self._opening: asyncio.Future[Opened] | None = None
        if opened is not None:
            self._opened_by(opened)

    def end(self) -> None:
        """The server's shutdown grace is over: stop reading the upstream. A stream that
        sent bytes ends with an in-band error, and its record says ``server_shutdown``."""
        self._ended = True
        if self._opening is not None:
            self._opening.cancel()
        if self._opened is not None:
            self._opened.close()  # the pending read fails at once

    def _opened_by(self, opened: Opened) -> None:
        self._opened = opened
        self.status = opened.response.status
        d = opened.route.deployment
        self._headers["x-nitroproxy-provider"] = opened.route.provider.name
        self._headers["x-nitroproxy-deployment"] = d.name
        self._headers["x-nitroproxy-upstream-model"] = d.upstream_model
        self._headers["x-nitroproxy-attempts"] = str(self.call.meter.attempts)
        if opened.answer is not None:
            self._document = opened.answer.document

    @property
    def body(self) -> bytes:
        assert self._opened is not None and self._opened.answer is not None
        return self._opened.answer.body

    def answer_with(self, document: dict[str, Any]) -> None:
        """Replace the non-streamed answer (the proxy completed it, e.g. with usage)."""
        assert self._opened is not None and self._opened.answer is not None
        answer = self._opened.answer
        self._opened.answer = Answer(orjson.dumps(document), document, answer.usage)
        self._document = document

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._gen is None:
            self._gen = self._chunks()
        return self._gen

    async def release(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()
        if self._opened is not None:
            self._opened.close()

    def cache_write(self) -> CacheWrite | None:
        if self._cache_plan is None or self._document is None:
            return None
        return CacheWrite(self._cache_plan, self._document)

    def finish_reasons(self) -> tuple[str, ...]:
        if self._finish is not None:
            return finish_reasons_of((self._finish,))
        return finish_reasons_in(self._document)

    # -- the stream ---------------------------------------------------------------------

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        if self._opened is None:
            async for comment in self._open_with_keepalive():
                yield comment
            if self._opened is None:
                return  # the attempts failed after comments went out: the error is sent
        opened = self._opened
        parts, call, meter = self._parts, self.call, self.call.meter
        route = opened.route
        counter = TextLog() if parts.settings.tokens.count else None
        transform = route.provider.adapter.stream(
            call, counter, context_for(parts.clock, call, route)
        )
        assembler = None
        if self._cache_plan is not None:
            assembler = StreamAssembler(
                call.endpoint, max_bytes=self._cache_plan.cache.max_entry_bytes
            )
        meter.counted = transform.counting
        parts.metrics.stream_started()
        try:
            async with contextlib.aclosing(self._relay(opened, transform)) as relay:
                async for out in relay:
                    if meter.first_output_at is None and transform.output_started:
                        meter.first_output_at = parts.clock.now()
                    self._sent = True
                    yield out
                    meter.produced = True  # output reached the client: the call is billed
                    transform.commit()  # written: its tokens reached the client
                    if assembler is not None:
                        assembler.feed_bytes(out)
        except ProxyError as raised:
            exc = _shutting_down() if self._ended else raised  # end() closed the upstream
            if not self._sent:
                raise exc from None
            outcome = Outcome.SERVER_SHUTDOWN if self._ended else Outcome.STREAM_ERROR
            meter.fail(exc.status, outcome, exc.error_class)
            yield transform.error_event(exc, call.client_format)
        except Exception:
            if not self._sent:
                raise
            # Headers are out: whatever broke (an upstream event of a shape we did not
            # expect) must end the stream in-band, never as a second status line.
            _log.exception("stream failed", request_id=call.request_id)
            error = UpstreamError("the stream failed inside the proxy", code="stream_failed")
            meter.fail(error.status, Outcome.STREAM_ERROR, "internal_error")
            yield transform.error_event(error, call.client_format)
        finally:
            meter.provider_usage = transform.usage
            meter.completed = transform.completed
            self._finish = transform.finish_reason
            if (
                counter is not None
                and not self._counted
                and (transform.usage is None or not transform.completed)
            ):
                # Only then does the proxy's own count decide anything: settlement counts
                # the delivered text (no tokenizer ran while the stream flowed).
                meter.completion_text = counter.text()
            parts.metrics.stream_ended()
            if assembler is not None and transform.completed:
                self._document = assembler.assembled(usage=transform.usage)

    async def _relay(
        self, opened: Opened, transform: UpstreamStream
    ) -> AsyncGenerator[bytes, None]:
        """Client bytes from the upstream's reads, with keep-alive comments in silences."""
        client = self._parts.client
        provider, resp = opened.route.provider, opened.response
        interval = self._parts.settings.server.keepalive_interval
        chunk = opened.first_chunk
        while chunk:
            out = transform.feed(chunk)
            if out:
                yield out
            if transform.failure is not None:
                raise transform.failure
            if transform.completed:
                # Nothing after [DONE] / message_stop matters. Read on only to let the
                # upstream connection go back to the pool, briefly, and never fail a
                # finished stream.
                try:
                    async with asyncio.timeout(_DRAIN_S):
                        chunk = await client.next_chunk(provider, resp)
                except (ProxyError, TimeoutError):
                    chunk = b""
                continue
            if interval <= 0:
                chunk = await client.next_chunk(provider, resp)
                continue
            while True:
                try:
                    async with asyncio.timeout(interval) as scope:
                        chunk = await client.next_chunk(provider, resp)
                    break
                except TimeoutError:
                    if not scope.expired():
                        raise
                yield sse.comment()
        out = transform.end()
        if out:
            yield out
        if transform.failure is not None:
            raise transform.failure
        if not transform.completed:
            raise UpstreamError(
                f"provider '{provider.name}' ended the stream before it was complete",
                code="upstream_stream_truncated",
            )
        if transform.awaiting_usage:
            # The client asked for usage and the upstream sent none: the proxy's counts,
            # the same numbers the record will carry (usage_source "estimated").
            yield transform.usage_tail(await self._own_usage(transform))

    async def _own_usage(self, transform: UpstreamStream) -> Usage:
        meter = self.call.meter
        if meter.prompt_estimate is None:
            offload = self._parts.settings.tokens.offload_chars
            meter.prompt_estimate = await counting.count_prompt_async(self.call, offload)
        assert isinstance(transform.counter, TextLog)
        offload = self._parts.settings.tokens.offload_chars
        meter.completion_estimate = await counting.count_output(
            self.call, transform.counter.text(), offload
        )
        self._counted = True  # the record carries these numbers; settlement counts nothing
        return Usage(
            prompt_tokens=meter.prompt_estimate, completion_tokens=meter.completion_estimate
        )

    async def _open_with_keepalive(self) -> AsyncGenerator[bytes, None]:
        """While the first token is slow, send SSE comments so idle proxies keep the
        connection. Once they are out, failover errors go in-band."""
        assert self._opener is not None
        interval = self._parts.settings.server.keepalive_interval
        task = self._opening = asyncio.ensure_future(self._opener())
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=interval)
                if done:
                    break
                self._sent = True
                yield sse.comment()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
                with contextlib.suppress(BaseException):
                    task.result().close()  # opened just as we were cancelled
        error: ProxyError | None = None
        try:
            opened = task.result()
        except asyncio.CancelledError:
            if not self._ended:
                raise
            error = _shutting_down()  # end() cancelled the attempts
        except ProxyError as exc:
            error = exc
        if error is not None:
            call = self.call
            if not self._sent:
                raise error
            status, outcome = status_outcome(error)
            outcome = Outcome.SERVER_SHUTDOWN if self._ended else outcome
            call.meter.fail(status, outcome, error.error_class)
            if call.endpoint is Endpoint.RESPONSES:
                yield responses_failed_event(error, f"resp_{call.request_id}")
            else:
                yield stream_error_event(error, call.client_format)
            return
        self._opened_by(opened)
        if self._sent:
            # The headers went out before anyone answered; say who did in the stream, as
            # an SSE comment that clients ignore.
            names = ("provider", "deployment", "upstream-model", "attempts")
            fields = " ".join(f"{n}={self._headers[f'x-nitroproxy-{n}']}" for n in names)
            yield sse.comment(f"nitroproxy {fields}")


def _shutting_down() -> ServerShuttingDown:
    return ServerShuttingDown("the server is shutting down; this call was ended")
