"""UsageWriter: request handlers hand records over without waiting; one task writes batches.

Nothing handed over is dropped while a disk can take it:

1. Records wait in memory and are written in batches (``batch_size``, or ``flush_interval``
   after the oldest arrived). So a crash loses at most the last flush interval (plus a batch
   in flight) while the database is writable.
2. A failed batch goes back to the front of the queue and is retried with backoff
   (``retry_initial`` doubling to ``retry_max``). A batch refused for its data (a constraint)
   is written record by record, so only the bad record is dropped, and logged.
3. While the database cannot be written, records wait in memory for ``journal_after``
   seconds and up to ``max_queue``, then move to the journal (``store.journal``, another
   directory). When the database works again the journal is replayed into it, and at
   start-up too; inserts ignore ids already present, so a replay never bills twice.
4. If the journal cannot take them either, ``accepting`` turns False so the gateway can
   refuse new billable requests (``storage.on_failure: refuse``); records of requests
   already admitted are still kept in memory. With ``on_failure: serve`` records past
   ``max_queue`` are dropped instead, counted and logged.

``put_durable`` (``storage.journal_before_answer``) also appends the record to the journal
and returns once it is fsync-ed: a crash then loses nothing answered. Concurrent calls
share one fsync. Journal I/O runs on one worker thread of its own; the event loop never
waits on a disk. Callbacks run on the loop and must not raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nitroproxy.core.types import UsageRecord
from nitroproxy.store.db import DEFAULT_BUSY_TIMEOUT_S
from nitroproxy.store.records import RecordStore, SqliteRecords
from nitroproxy.store.spool import Entry, Spool

Count = Callable[[int], None]
_SPILL_BATCH = 5000


@dataclass(frozen=True, slots=True)
class WriterStatus:
    """What readiness reports. ``writable`` is False from a failed write until the next
    successful one; ``error`` says why (an exception's text; never a record's content)."""

    writable: bool
    error: str | None
    queue_depth: int
    high_water: int
    journal_pending: int
    journal_error: str | None

    @property
    def ready(self) -> bool:
        return self.writable and self.queue_depth <= self.high_water


class UsageWriter:
    def __init__(
        self,
        path: str | Path | None,
        *,
        store: RecordStore | None = None,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        max_queue: int = 50_000,
        high_water: int | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
        journal_dir: str | Path | None = None,
        journal_after: float = 1.0,
        on_failure: str = "refuse",
        retry_initial: float = 0.05,
        retry_max: float = 2.0,
        on_written: Count | None = None,
        on_dropped: Count | None = None,
        on_failed: Count | None = None,
        on_journaled: Count | None = None,
        on_replayed: Count | None = None,
        log_interval: float = 60.0,
    ) -> None:
        if batch_size < 1 or max_queue < 1:
            raise ValueError("batch_size and max_queue must be >= 1")
        if min(flush_interval, log_interval, journal_after, retry_initial) < 0:
            raise ValueError("intervals must be >= 0")
        if on_failure not in ("refuse", "serve"):
            raise ValueError("on_failure must be 'refuse' or 'serve'")
        if store is None:
            if path is None:
                raise ValueError("UsageWriter needs a path or a store")
            store = SqliteRecords(path, busy_timeout=busy_timeout)
        self._db = store
        self._opened = False
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._high_water = high_water if high_water is not None else max(1, max_queue * 4 // 5)
        self._spool = (
            Spool(journal_dir, retry_after=max(retry_initial, retry_max))
            if journal_dir is not None
            else None
        )
        self._journal_after = journal_after
        self._serve_unrecorded = on_failure == "serve"
        self._retry = (retry_initial, max(retry_initial, retry_max))
        self._hooks = (on_written, on_dropped, on_failed, on_journaled, on_replayed)
        self._log_interval = log_interval
        self._log = logging.getLogger("nitroproxy.writer")
        self._queue: deque[Entry] = deque()
        self._inflight: list[Entry] = []
        self._spilling: list[Entry] = []
        self._wake = asyncio.Event()
        self._spill_wake = asyncio.Event()
        self._halt = asyncio.Event()  # close() deadline passed: stop retrying
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._closed = False
        self._error: str | None = None  # the database's last failure, None once it works
        self._replay_due = True
        self._counts = {"written": 0, "dropped": 0, "failures": 0}
        self._unreported: dict[str, int] = {}
        self._last_report = -float("inf")
        self._accepted = 0  # records put, ever
        self._finished = 0  # of those, in the database or given up on
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []

    # -- what others read -----------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._queue) + len(self._inflight) + len(self._spilling)

    @property
    def written(self) -> int:
        return self._counts["written"]

    @property
    def dropped(self) -> int:
        return self._counts["dropped"]

    @property
    def journaled(self) -> int:
        return self._spool.journaled if self._spool is not None else 0

    @property
    def journal_pending(self) -> int:
        return self._spool.pending if self._spool is not None else 0

    @property
    def accepting(self) -> bool:
        """False when memory is at ``max_queue`` and the journal cannot take records: new
        billable requests should be refused until this turns True again."""
        if self.queue_depth < self._max_queue:
            return True
        return self._spool is not None and self._spool.error is None

    def status(self) -> WriterStatus:
        spool = self._spool
        return WriterStatus(
            writable=self._error is None,
            error=self._error,
            queue_depth=self.queue_depth,
            high_water=self._high_water,
            journal_pending=spool.pending if spool is not None else 0,
            journal_error=spool.error if spool is not None else "no journal directory",
        )

    # -- lifetime -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection and replay what earlier runs left in the journal (if the
        database refuses, the replay is retried from the writing task)."""
        if self._opened or self._closed:
            raise RuntimeError("UsageWriter.start() called twice")
        await self._db.open()
        self._opened = True
        if self._spool is not None:
            await self._spool.prepare()
            await self._replay(quiet=True)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name="nitroproxy-usage-writer"),
            loop.create_task(self._spill_loop(), name="nitroproxy-usage-spill"),
        ]

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Write what is queued within ``timeout`` seconds, journal what is left, close.

        A batch being written at the deadline may finish (bounded by busy_timeout); records
        the journal cannot take either are counted as dropped."""
        if self._closed:
            return
        self._closed = self._closing = True
        self._wake.set()
        self._spill_wake.set()
        try:
            if self._tasks:
                _, pending = await asyncio.wait(self._tasks, timeout=timeout)
                if pending:
                    self._halt.set()
                    self._wake.set()
                    self._spill_wake.set()
                await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            for task in self._tasks:
                if not task.done():  # close() itself was cancelled
                    task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks)
            left = self._spilling + self._inflight + list(self._queue)
            self._spilling, self._inflight = [], []
            self._queue.clear()
            if left and not (self._spool is not None and await self._spool.spill(left)):
                self._done(left, dropped="neither the database nor the journal took them")
            if self._spool is not None:
                await self._spool.close()
            if self._opened:
                await self._db.close()

    # -- handing records over -------------------------------------------------------------

    def put(self, record: UsageRecord) -> bool:
        """Queue a record; never blocks. False if it was dropped (after close, or past
        ``max_queue`` with ``on_failure: serve`` while the journal cannot take it)."""
        return self._put(record) is not None

    def put_durable(self, record: UsageRecord) -> asyncio.Future[bool]:
        """Queue a record now (as ``put``); the future is True once a copy is fsync-ed in
        the journal, False if that failed (the record still waits in memory)."""
        entry = self._put(record)
        if entry is None or self._spool is None:
            waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            waiter.set_result(False)
            return waiter
        return self._spool.log_durably(entry)

    def _put(self, record: UsageRecord) -> Entry | None:
        if self._closing:
            self._count_dropped(1, "writer closing")
            return None
        queue = self._queue
        if len(queue) >= self._max_queue:
            if self._serve_unrecorded and not self.accepting:
                self._count_dropped(1, "queue full and the journal unavailable")
                return None
            self._spill_wake.set()
        entry = Entry(record, time.monotonic())
        queue.append(entry)
        self._accepted += 1
        depth = len(queue)
        if depth == 1 or depth == self._batch_size:
            self._wake.set()
        return entry

    async def flush(self, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """Wait until every record put before this call is in the database (or given up
        on); False if that took longer than ``timeout``. An erase waits here so no record
        of the erased user is still on its way to the database."""
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

    # -- the writing task -----------------------------------------------------------------

    async def _run(self) -> None:
        queue = self._queue
        backoff = self._retry[0]
        while not self._halt.is_set():
            if self._error is not None and not queue:
                # Idle while the database fails: probe it, or readiness would never recover
                # (a server that is not ready gets no traffic, hence no writes).
                if self._closing:
                    return
                backoff = await self._backoff(backoff)
                if await self._probe():
                    backoff = self._retry[0]
                continue
            replay = self._replay_due and self._error is None and self._spool is not None
            if replay and not await self._replay():
                backoff = await self._backoff(backoff)
                continue
            if not queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(queue) < self._batch_size and not self._closing and not self._flushes:
                delay = queue[0].arrived + self._flush_interval - time.monotonic()
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
                    continue
            n = min(len(queue), self._batch_size)
            batch = self._inflight = [queue.popleft() for _ in range(n)]
            left = await self._write(batch)
            self._inflight = []
            if not left:
                backoff = self._retry[0]
                if self._spool is not None:
                    await self._spool.remove_done_wal()
                continue
            queue.extendleft(reversed(left))
            backoff = await self._backoff(backoff)

    async def _backoff(self, delay: float) -> float:
        """Sleep ``delay`` (cut short by the close deadline); the next delay."""
        self._spill_wake.set()  # records may be old enough for the journal now
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._halt.wait()
        return min(delay * 2, self._retry[1])

    async def _probe(self) -> bool:
        try:
            await self._db.probe()
        except self._db.db_errors as exc:
            self._failed(exc)
            return False
        self._committed([])
        return True

    async def _write(self, batch: list[Entry]) -> list[Entry]:
        """Insert a batch; what is left to retry (all of it if the database failed)."""
        try:
            await self._db.insert([e.record for e in batch])
        except self._db.data_errors:
            if len(batch) == 1:
                self._done(batch, dropped="a record the database refused")
                return []
            for i, entry in enumerate(batch):  # find the bad one; keep the others
                if await self._write([entry]):
                    return batch[i:]
            return []
        except self._db.db_errors as exc:
            self._failed(exc)
            return batch
        self._committed(batch)
        return []

    def _committed(self, batch: list[Entry]) -> None:
        if self._error is not None:
            self._log.warning("usage database writable again (it had failed with %s)", self._error)
            self._error = None
            self._replay_due = True
        self._done(batch)
        if batch:
            self._counts["written"] += len(batch)
            self._hook(0, len(batch))

    def _failed(self, exc: BaseException) -> None:
        first = self._error is None
        self._error = f"{type(exc).__name__}: {exc}"
        self._counts["failures"] += 1
        self._hook(2, 1)
        if first:
            self._log.warning("usage database write failed, retrying: %s", self._error)
        self._spill_wake.set()

    def _done(self, entries: Sequence[Entry], *, dropped: str | None = None) -> None:
        for entry in entries:
            entry.done = True
            entry.release_wal()
        if dropped is not None:
            self._count_dropped(len(entries), dropped)
        self._finish(len(entries))

    def _finish(self, n: int) -> None:
        self._finished += n
        if self._flushes:
            done = [f for t, f in self._flushes if t <= self._finished]
            self._flushes = [(t, f) for t, f in self._flushes if t > self._finished]
            for waiter in done:
                if not waiter.done():
                    waiter.set_result(None)

    # -- the journal ----------------------------------------------------------------------

    async def _spill_loop(self) -> None:
        """Move records that waited too long (or past ``max_queue``) into the journal."""
        spool = self._spool
        while spool is not None and not self._halt.is_set():
            if self._closing and not self._queue:
                return
            tick = None
            if self._error is not None or len(self._queue) > self._max_queue or self._closing:
                tick = max(0.02, self._journal_after / 4)
            self._spill_wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await self._spill_wake.wait()
            now = time.monotonic()
            entries = self._spillable(now) if spool.usable(now) else []
            if entries:
                self._spilling = entries
                if await spool.spill(entries):
                    self._replay_due = True
                    self._hook(3, len(entries))
                else:
                    self._queue.extendleft(reversed(entries))
                self._spilling = []

    def _spillable(self, now: float) -> list[Entry]:
        queue, out = self._queue, list[Entry]()
        old = now - self._journal_after
        failing = self._error is not None
        while queue and len(out) < _SPILL_BATCH:
            if len(queue) <= self._max_queue and not (failing and queue[0].arrived <= old):
                break
            out.append(queue.popleft())
        return out

    async def _replay(self, *, quiet: bool = False) -> bool:
        """Replay the journal into the database; False if the database failed."""
        assert self._spool is not None
        self._replay_due = False
        try:
            replayed, own = await self._spool.replay(self._db.insert, self._batch_size)
        except self._db.db_errors as exc:
            if not quiet:
                self._failed(exc)
            self._replay_due = True
            return False
        self._finish(own)
        if replayed:
            self._hook(4, replayed)
        return True

    # -- counting -------------------------------------------------------------------------

    def _hook(self, index: int, n: int) -> None:
        hook = self._hooks[index]
        if hook is not None:
            hook(n)

    def _count_dropped(self, n: int, reason: str) -> None:
        self._counts["dropped"] += n
        self._hook(1, n)
        self._unreported[reason] = self._unreported.get(reason, 0) + n
        now = time.monotonic()
        if now - self._last_report >= self._log_interval:
            # Counts only: a record's contents never reach the log.
            self._log.warning(
                "usage writer dropped %d records (%s); %d dropped in total",
                sum(self._unreported.values()),
                ", ".join(f"{k}: {v}" for k, v in self._unreported.items()),
                self._counts["dropped"],
            )
            self._unreported = {}
            self._last_report = now
