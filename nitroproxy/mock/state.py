"""What the mock has seen and done, for tests to inspect and script (``app[MOCK_STATE]``)."""

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from nitroproxy.mock.script import check_directives
from nitroproxy.mock.settings import MockSettings

Outcome = Literal["streaming", "complete", "client_disconnected", "dropped"]


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    method: str
    headers: dict[str, str]
    """Lower-cased names; a repeated header keeps its last value."""
    body: Any
    """The parsed JSON body, or None when there was none or it was malformed."""
    at: float
    """``time.monotonic()`` on arrival."""


@dataclass
class StreamLog:
    """One streamed response. ``outcome`` stays "streaming" until the stream ends.

    A ``garbage`` stream ends "complete": the mock wrote all it meant to write.
    """

    model: str
    """The upstream model name as requested, directives included."""
    started_at: float
    token_times: list[float] = field(default_factory=list)
    """``time.monotonic()`` right after each token event was written."""
    outcome: Outcome = "streaming"
    ended_at: float | None = None


class MockState:
    """Records, counters and the fault queue of one mock app."""

    def __init__(self, settings: MockSettings) -> None:
        self.settings = settings
        self.requests: list[ReceivedRequest] = []
        self.streams: list[StreamLog] = []
        self.total_requests = 0
        self.in_flight = 0
        """Requests being answered now (any route, streamed or not)."""
        self.peak_in_flight = 0
        """The most requests answered at once since start (or ``reset``)."""
        self.active_streams = 0
        self.disconnects = 0
        """Client disconnects seen while a response was still being produced (streaming,
        waiting out a delay, or hanging)."""
        self._faults: dict[str, deque[str]] = {}
        self._tool_calls: dict[str, deque[tuple[str, dict[str, Any]]]] = {}
        self._ids = itertools.count(1)
        self._disconnected = asyncio.Event()

    def enqueue_faults(self, upstream_model: str, faults: Iterable[str]) -> None:
        """Make the next requests for ``upstream_model`` behave as ``faults``, in order.

        Each entry is a ``+``-joined directive list such as ``"fail500"``, ``"fail429+retry=2"``
        or ``"ok"``; it replaces the faults in the request's model name for one request. After
        the queue runs out, requests behave as their model names say again. ``upstream_model``
        matches the request's model exactly, or else its name before the first ``+``.
        """
        entries = list(faults)
        for entry in entries:
            check_directives(entry)
        self._faults.setdefault(upstream_model, deque()).extend(entries)

    def take_fault(self, model: str) -> str | None:
        for key in (model, model.partition("+")[0]):
            queue = self._faults.get(key)
            if queue:
                entry = queue.popleft()
                if not queue:
                    del self._faults[key]
                return entry
        return None

    def script_tool_call(
        self, upstream_model: str, name: str, arguments: Mapping[str, Any]
    ) -> None:
        """Make the next answer for ``upstream_model`` that offers tool ``name`` call it with
        ``arguments`` (once; calls queue in order). The model matches as in
        ``enqueue_faults``. Scripted calls win over the ``text`` directive."""
        self._tool_calls.setdefault(upstream_model, deque()).append((name, dict(arguments)))

    def take_tool_call(
        self, model: str, offered: Sequence[str]
    ) -> tuple[str, dict[str, Any]] | None:
        for key in (model, model.partition("+")[0]):
            queue = self._tool_calls.get(key)
            if queue and queue[0][0] in offered:
                entry = queue.popleft()
                if not queue:
                    del self._tool_calls[key]
                return entry
        return None

    def next_id(self) -> int:
        """A per-app counter for response, tool-call and message ids; deterministic per test."""
        return next(self._ids)

    def open_stream(self, model: str) -> StreamLog:
        log = StreamLog(model=model, started_at=time.monotonic())
        if self.settings.record:
            self.streams.append(log)
        self.active_streams += 1
        return log

    def close_stream(self, log: StreamLog, outcome: Outcome) -> None:
        log.outcome = outcome
        log.ended_at = time.monotonic()
        self.active_streams -= 1
        if outcome == "client_disconnected":
            self.note_disconnect()

    def note_disconnect(self) -> None:
        self.disconnects += 1
        self._disconnected.set()

    # A timeout argument (rather than asking callers for asyncio.timeout) keeps test lines short.
    async def wait_disconnect(self, timeout: float = 5.0, count: int = 1) -> None:  # noqa: ASYNC109
        """Return once ``disconnects >= count``; raise TimeoutError after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while self.disconnects < count:
                # No await between the check and clear(), so no disconnect can slip through.
                self._disconnected.clear()
                await self._disconnected.wait()

    def reset(self) -> None:
        """Forget records, counters (except live ``active_streams``), queued faults and ids."""
        self.requests.clear()
        self.streams.clear()
        self.total_requests = 0
        self.peak_in_flight = self.in_flight
        self.disconnects = 0
        self._faults.clear()
        self._tool_calls.clear()
        self._ids = itertools.count(1)
        self._disconnected.clear()


MOCK_STATE = web.AppKey("mock_state", MockState)
