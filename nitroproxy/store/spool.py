"""The usage writer's side of the journal: one I/O thread, spills, replays, the durable log.

``store.journal`` holds the file format and does blocking I/O; ``Spool`` runs it on a worker
thread of its own (never the event loop, never the shared default executor where large
prompts are counted) and keeps the counts the writer and readiness report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from nitroproxy.core.types import UsageRecord
from nitroproxy.store.journal import SPILL, WAL, Journal, Segment

_T = TypeVar("_T")
Insert = Callable[[Sequence[UsageRecord]], Awaitable[None]]


class Entry:
    """A record on its way to the database: when it arrived, the ``wal`` segment that holds
    a copy of it (``put_durable``), and ``done`` once that copy is no longer needed (the
    database or a spill segment holds the record, or it was dropped)."""

    __slots__ = ("arrived", "done", "record", "wal")

    def __init__(self, record: UsageRecord, arrived: float) -> None:
        self.record = record
        self.arrived = arrived
        self.done = False
        self.wal: Segment | None = None

    def release_wal(self) -> None:
        """The database (or a spill segment) holds this record now: its ``wal`` copy is
        no longer needed."""
        segment = self.wal
        if segment is not None:
            self.wal = None
            segment.outstanding -= 1


class Spool:
    def __init__(self, directory: str | Path, *, retry_after: float = 2.0) -> None:
        self.journal = Journal(directory)
        self._retry_after = retry_after
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nitroproxy-journal")
        self._log = logging.getLogger("nitroproxy.writer")
        self.error: str | None = None  # the last append's failure, None once one works
        self._retry_at = 0.0
        self.pending = 0  # this run's records in spill segments, not yet in the database
        self.journaled = 0
        self._durable: list[tuple[Entry, asyncio.Future[bool]]] = []
        self._durable_task: asyncio.Task[None] | None = None

    async def _in_io(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def prepare(self) -> None:
        """Create the directory. A failure does not stop the server (the database may work
        well); it is logged, readiness shows it, and every append tries again."""
        try:
            await self._in_io(self.journal.prepare)
        except OSError as exc:
            self._failed(exc)

    def usable(self, now: float) -> bool:
        """Worth an append now: the last one worked, or its retry delay has passed."""
        return self.error is None or now >= self._retry_at

    def _failed(self, exc: OSError) -> None:
        if self.error is None:
            self._log.warning("usage journal append failed: %s", exc)
        self.error = f"{type(exc).__name__}: {exc}"
        self._retry_at = time.monotonic() + self._retry_after

    async def spill(self, entries: Sequence[Entry]) -> bool:
        """Append ``entries`` to a spill segment (fsync-ed); False if the disk refused."""
        try:
            await self._in_io(self.journal.append, SPILL, [e.record for e in entries])
        except OSError as exc:
            self._failed(exc)
            return False
        self.error = None
        self.journaled += len(entries)
        self.pending += len(entries)
        for entry in entries:
            entry.done = True  # for its wal copy: the spill segment holds it now
            entry.release_wal()
        return True

    def log_durably(self, entry: Entry) -> asyncio.Future[bool]:
        """Append ``entry`` to the ``wal`` segment; the future is True once it is fsync-ed.
        Entries that arrive while an fsync runs share the next one."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._durable.append((entry, waiter))
        if self._durable_task is None or self._durable_task.done():
            self._durable_task = loop.create_task(self._log_durably())
        return waiter

    async def _log_durably(self) -> None:
        while self._durable:
            group, self._durable = self._durable, []
            try:
                records = [e.record for e, _ in group]
                segment = await self._in_io(self.journal.append, WAL, records)
            except OSError as exc:
                self._failed(exc)
                segment = None
            else:
                self.error = None
            for entry, waiter in group:
                if segment is not None and not entry.done:
                    entry.wal = segment  # kept until the database holds the record
                    segment.outstanding += 1
                if not waiter.done():
                    waiter.set_result(segment is not None)

    async def replay(self, insert: Insert, batch_size: int) -> tuple[int, int]:
        """Insert every replayable segment and delete it. Returns (records replayed, of
        them this run's own). A database failure propagates; what is left stays."""
        journal = self.journal
        replayed = own_total = 0
        try:
            await self._in_io(journal.seal, SPILL)
            paths = await self._in_io(journal.replayable)
        except OSError as exc:
            self._log.warning("cannot list the usage journal: %s", exc)
            return 0, 0
        for path in paths:
            try:
                found = await self._in_io(journal.read, path)
            except OSError as exc:
                self._log.warning("cannot read usage journal segment %s: %s", path.name, exc)
                continue
            if found is None:
                continue  # another live process is writing it
            if found.torn:
                self._log.warning("skipped %d torn lines in %s", found.torn, path.name)
            for i in range(0, len(found.records), batch_size):
                await insert(found.records[i : i + batch_size])
            own = journal.own(path)
            with contextlib.suppress(OSError):
                await self._in_io(journal.remove, path)
            replayed += len(found.records)
            if own is not None:
                self.pending -= own.records
                own_total += own.records
        return replayed, own_total

    async def remove_done_wal(self) -> None:
        """Delete sealed ``wal`` segments the database holds every record of."""
        for segment in [s for s in self.journal.sealed if s.kind == WAL and s.outstanding <= 0]:
            with contextlib.suppress(OSError):
                await self._in_io(self.journal.remove, segment.path)

    async def close(self) -> None:
        if self._durable_task is not None:
            await asyncio.gather(self._durable_task, return_exceptions=True)
        with contextlib.suppress(OSError):
            await self._in_io(self.journal.close)
        await self.remove_done_wal()
        self._io.shutdown(wait=True)
