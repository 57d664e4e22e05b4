"""Writing one answer: JSON or SSE, with the script's delays, drops and garbage.

Client disconnects are noticed through aiohttp's handler cancellation: when the peer closes,
aiohttp cancels the handler task, so ``CancelledError`` surfaces at the pending sleep or
write. That needs ``handler_cancellation=True`` on the server (``run_mock`` sets it; aiohttp's
test server always does). A write to a closed transport raises ``ConnectionResetError``
instead, which is handled the same way.
"""

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
from aiohttp import web

from nitroproxy.mock.errors import Family
from nitroproxy.mock.script import Script
from nitroproxy.mock.state import MockState, StreamLog

_SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Call:
    """One accepted request, as the route handlers see it."""

    request: web.Request
    state: MockState
    family: Family
    body: dict[str, Any]
    model: str
    script: Script

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    @property
    def reports_usage(self) -> bool:
        return "nousage" not in self.script.flags

    @property
    def echoes(self) -> bool:
        """The ``echo`` directive: answer with the last user text (``content.echo_words``)."""
        return "echo" in self.script.flags


@dataclass(frozen=True)
class StreamPlan:
    """The bytes of one SSE answer, already encoded; ``tokens`` are written one by one."""

    head: bytes
    tokens: Sequence[bytes]
    tail: bytes
    garbage: bytes
    """What the ``garbage`` fault writes after two tokens, instead of the rest."""


async def send_json(call: Call, payload: dict[str, Any], tokens: int) -> web.StreamResponse:
    """Answer with ``payload`` after the time a ``tokens``-token generation would take."""
    script = call.script
    wait_ms = script.first_token_delay_ms + max(tokens - 1, 0) * script.delay_ms
    if wait_ms > 0:
        try:
            await asyncio.sleep(wait_ms / 1000)
        except asyncio.CancelledError:
            call.state.note_disconnect()
            raise
    if "garbage" in script.flags:
        return web.Response(body=b"{not json", content_type="application/json")
    body = orjson.dumps(payload)
    if "drop" in script.flags:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(call.request)
        return abort(call.request, response)
    return web.Response(body=body, content_type="application/json")


async def send_stream(call: Call, plan: StreamPlan) -> web.StreamResponse:
    """Stream ``plan``; headers go out at once, the first-token delay precedes the first token."""
    state, flags = call.state, call.script.flags
    tokens = plan.tokens
    if "drop" in flags:
        tokens = tokens[: len(tokens) // 2]
    elif "garbage" in flags:
        tokens = tokens[:2]
    response = web.StreamResponse(headers=_SSE_HEADERS)
    log = state.open_stream(call.model)
    try:
        await response.prepare(call.request)
        await response.write(plan.head)
        await _write_tokens(response, tokens, call.script, log if state.settings.record else None)
        if "drop" in flags:
            state.close_stream(log, "dropped")
            return abort(call.request, response)
        await response.write(plan.garbage if "garbage" in flags else plan.tail)
        await response.write_eof()
    except asyncio.CancelledError:
        state.close_stream(log, "client_disconnected")
        raise
    except ConnectionResetError:
        state.close_stream(log, "client_disconnected")
        return response
    state.close_stream(log, "complete")
    return response


async def _write_tokens(
    response: web.StreamResponse,
    tokens: Sequence[bytes],
    script: Script,
    log: StreamLog | None,
) -> None:
    first, between = script.first_token_delay_ms / 1000, script.delay_ms / 1000
    if first > 0 and (between == 0 or not tokens):
        await asyncio.sleep(first)
    if between == 0:
        # Nothing separates the tokens in time, so one write: a syscall per event made the
        # mock, not the proxy, the bottleneck of benchmarks (TCP may coalesce them anyway).
        if tokens:
            await response.write(b"".join(tokens))
        if log is not None:
            log.token_times.extend([time.monotonic()] * len(tokens))
        return
    for index, event in enumerate(tokens):
        pause = first if index == 0 else between
        if pause > 0:
            await asyncio.sleep(pause)
        # One write per event, as real providers flush them as they are generated.
        await response.write(event)
        if log is not None:
            log.token_times.append(time.monotonic())


def abort(
    request: web.BaseRequest, response: web.StreamResponse | None = None
) -> web.StreamResponse:
    """Close the TCP connection at once (RST, no FIN), dropping anything unsent.

    The returned response is never sent: aiohttp's attempt to finish it hits the closed
    transport, which it treats as a client disconnect rather than answering with a 500.
    """
    if request.transport is not None:
        request.transport.abort()
    return response if response is not None else web.Response()


async def hang(state: MockState) -> NoReturn:
    """Wait until the client goes away (aiohttp then cancels the handler)."""
    try:
        await asyncio.get_running_loop().create_future()
    except asyncio.CancelledError:
        state.note_disconnect()
        raise
    raise AssertionError("a future nobody resolves completed")
