"""UsageWriter: request handlers hand records over without waiting; one task writes batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import aiosqlite

from nitroproxy.core.types import UsageRecord
from nitroproxy.store.db import open_db
from nitroproxy.store.usage import insert_many


class UsageWriter:
    """Bounded queue of usage records drained by one owned task into its own connection.

    A batch is written when ``batch_size`` records wait, or ``flush_interval`` seconds after
    the oldest waiting record arrived. Overload and failed batches are counted in
    ``dropped``, never raised to the request path. Callbacks must not raise.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        max_queue: int = 50_000,
        on_written: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
        log_interval: float = 60.0,
    ) -> None:
        if batch_size < 1 or max_queue < 1:
            raise ValueError("batch_size and max_queue must be >= 1")
        if flush_interval < 0 or log_interval < 0:
            raise ValueError("flush_interval and log_interval must be >= 0")
        self._path = path
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._on_written = on_written
        self._on_dropped = on_dropped
        self._log_interval = log_interval
        self._log = logging.getLogger("nitroproxy.writer")
        self._queue: deque[UsageRecord] = deque()
        self._wake = asyncio.Event()
        self._first_at = 0.0  # monotonic arrival time of the oldest waiting record
        self._conn: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._abandon = False  # close() deadline passed: stop after the batch in flight
        self._closed = False
        self._written = 0
        self._dropped = 0
        self._unreported = 0
        self._last_report = -float("inf")
        self._accepted = 0  # records put, ever
        self._finished = 0  # of those, written or given up on
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def written(self) -> int:
        return self._written

    @property
    def dropped(self) -> int:
        return self._dropped

    async def start(self) -> None:
        if self._task is not None or self._closed:
            raise RuntimeError("UsageWriter.start() called twice")
        self._conn = await open_db(self._path)
        self._task = asyncio.get_running_loop().create_task(
            self._run(self._conn), name="nitroproxy-usage-writer"
        )

    def put(self, record: UsageRecord) -> bool:
        """Queue a record; never blocks. False if it was dropped (queue full or closing)."""
        queue = self._queue
        if self._closing or len(queue) >= self._max_queue:
            self._count_dropped(1, "queue full" if not self._closing else "writer closing")
            return False
        queue.append(record)
        self._accepted += 1
        depth = len(queue)
        if depth == 1:
            self._first_at = time.monotonic()
            self._wake.set()
        elif depth == self._batch_size:
            self._wake.set()
        return True

    async def flush(self, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """Wait until every record put before this call is committed (or given up on);
        False if that took longer than ``timeout``. An erase waits here so no record of
        the erased user is still on its way to the database."""
        target = self._accepted
        if self._finished >= target:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._flushes.append((target, waiter))
        self._wake.set()  # write what waits now, not after flush_interval
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            return False
        return True

    def _finish(self, n: int) -> None:
        self._finished += n
        if self._flushes:
            done = [f for t, f in self._flushes if t <= self._finished]
            self._flushes = [(t, f) for t, f in self._flushes if t > self._finished]
            for waiter in done:
                if not waiter.done():
                    waiter.set_result(None)

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Write what is queued within ``timeout`` seconds, then close the connection.

        Records still queued at the deadline are counted as dropped. A batch already being
        written when the deadline passes is allowed to finish (bounded by busy_timeout).
        """
        if self._closed:
            return
        self._closed = True
        self._closing = True
        task, conn = self._task, self._conn
        try:
            if task is not None:
                self._wake.set()
                done, _ = await asyncio.wait({task}, timeout=timeout)
                if not done:
                    self._abandon = True
                    self._wake.set()
                await task
        finally:
            if task is not None and not task.done():  # close() itself was cancelled
                task.cancel()
                await asyncio.wait({task})
            if self._queue:
                self._count_dropped(len(self._queue), "not written before close deadline")
                self._queue.clear()
            if conn is not None:
                await conn.close()

    async def _run(self, conn: aiosqlite.Connection) -> None:
        queue = self._queue
        while True:
            if not queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._abandon:
                return
            if len(queue) < self._batch_size and not self._closing and not self._flushes:
                delay = self._first_at + self._flush_interval - time.monotonic()
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
                    continue
            # Any records left behind after this batch arrived before it was taken, so
            # they are already due: _first_at stays as is and they go out next.
            batch = [queue.popleft() for _ in range(min(len(queue), self._batch_size))]
            await self._write(conn, batch)

    async def _write(self, conn: aiosqlite.Connection, batch: list[UsageRecord]) -> None:
        try:
            await insert_many(conn, batch)
        except asyncio.CancelledError:
            self._count_dropped(len(batch), "cancelled while writing")
            self._finish(len(batch))
            raise
        except Exception as exc:
            # One bad batch (disk error, lock held past busy_timeout, a bad value) must not
            # stop usage accounting for the rest of the process lifetime.
            self._count_dropped(len(batch), f"write failed: {type(exc).__name__}: {exc}")
            self._finish(len(batch))
            return
        self._written += len(batch)
        self._finish(len(batch))
        if self._on_written is not None:
            self._on_written(len(batch))

    def _count_dropped(self, n: int, reason: str) -> None:
        self._dropped += n
        self._unreported += n
        if self._on_dropped is not None:
            self._on_dropped(n)
        now = time.monotonic()
        if now - self._last_report >= self._log_interval:
            # Counts only: a record's contents never reach the log.
            self._log.warning(
                "usage writer dropped %d records (latest: %s); %d dropped in total",
                self._unreported,
                reason,
                self._dropped,
            )
            self._unreported = 0
            self._last_report = now
