"""The usage journal: append-only files holding records the database has not taken yet.

Two kinds of segment live in one directory (which should be on another disk than the
database, so that one full disk does not stop both):

- ``spill-*``: records the writer took out of memory while the database could not be
  written. They are replayed into the database once it works again, and at start-up.
- ``wal-*``: with ``journal_before_answer``, every record is appended here (and fsync-ed)
  before its answer completes; a segment is deleted once the database holds all of it, so
  only a crash leaves one behind, and start-up replays it.

A line is ``<crc32 hex> <JSON array of the record's columns>\\n``. A line whose checksum
fails (a write torn by a crash) is skipped and counted. A failed append is cut back to where
it began and its segment retired, so a later append never follows a torn line. Replaying is
safe to repeat: the database ignores a record id it already has (``store.usage``).

Each process writes only segments it created (the pid and a random tag are in the name)
and holds an ``flock`` on the one open for writing; replay takes the same lock without
waiting, so a segment another live process is still writing is left alone. These are our
files, never SQLite's, so ``flock`` and ``close`` here cannot disturb SQLite's locks.

Every method does blocking file I/O: call them from one worker thread (the writer does).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from nitroproxy.core.types import UsageRecord
from nitroproxy.store.usage import record_to_row, row_to_record

SPILL = "spill"
WAL = "wal"
_SUFFIX = ".jnl"
SEGMENT_BYTES = 4 * 1024 * 1024  # a segment this big is sealed and a new one begun


@dataclass(eq=False, slots=True)
class Segment:
    """A segment this process created. ``outstanding`` belongs to the writer: how many of
    a ``wal`` segment's records the database does not hold yet (0: it may be deleted)."""

    path: Path
    kind: str
    records: int = 0
    size: int = 0
    outstanding: int = 0
    fd: int | None = field(default=None, repr=False)

    @property
    def sealed(self) -> bool:
        return self.fd is None


@dataclass(frozen=True, slots=True)
class Replay:
    records: list[UsageRecord]
    torn: int


def encode(record: UsageRecord) -> bytes:
    body = orjson.dumps(record_to_row(record))
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode(data: bytes) -> Replay:
    records: list[UsageRecord] = []
    torn = 0
    for line in data.split(b"\n"):
        if not line:
            continue
        crc, _, body = line.partition(b" ")
        try:
            if int(crc, 16) != zlib.crc32(body):
                raise ValueError("checksum")
            records.append(row_to_record(orjson.loads(body)))
        except (ValueError, TypeError):
            torn += 1
    return Replay(records, torn)


class Journal:
    def __init__(self, directory: str | Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self._segment_bytes = segment_bytes
        self._tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._counter = 0
        self._open: dict[str, Segment] = {}  # kind -> the segment being appended to
        self.sealed: list[Segment] = []  # this process's closed segments, oldest first

    def prepare(self) -> None:
        """Create the directory (0700) if it is missing."""
        if not self.directory.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)

    def append(self, kind: str, records: Sequence[UsageRecord], *, sync: bool = True) -> Segment:
        """Append ``records`` to the open segment of ``kind`` (one ``write``, then
        ``fsync``); raises ``OSError`` (a full disk) with nothing half-written left behind."""
        segment = self._open.get(kind) or self._new(kind)
        assert segment.fd is not None
        data = b"".join(encode(r) for r in records)
        start = segment.size
        try:
            view = memoryview(data)
            while view:
                written = os.write(segment.fd, view)
                view = view[written:]
            if sync:
                os.fdatasync(segment.fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(segment.fd, start)
            self._retire(segment)
            raise
        segment.size += len(data)
        segment.records += len(records)
        if segment.size >= self._segment_bytes:
            self.seal(kind)
        return segment

    def seal(self, kind: str) -> None:
        """Close the open segment of ``kind``; later appends begin a new one."""
        segment = self._open.pop(kind, None)
        if segment is not None:
            self._close(segment)
            if segment.records:
                self.sealed.append(segment)
            else:
                self._unlink(segment.path)

    def close(self) -> None:
        for kind in list(self._open):
            self.seal(kind)

    def replayable(self) -> list[Path]:
        """The segments to replay, oldest first: every one in the directory except those
        this process is writing and its own ``wal`` segments (the writer deletes those once
        the database holds them; replaying them would only repeat what is in memory)."""
        if not self.directory.is_dir():
            return []
        own = {s.path for s in self._open.values()}
        own.update(s.path for s in self.sealed if s.kind == WAL)
        found = []
        for path in self.directory.glob(f"*{_SUFFIX}"):
            if path not in own:
                with contextlib.suppress(FileNotFoundError):  # replayed by someone else
                    found.append((path.stat().st_mtime_ns, path.name, path))
        return [path for _, _, path in sorted(found)]

    def own(self, path: Path) -> Segment | None:
        """This process's sealed segment at ``path``, if it is one."""
        return next((s for s in self.sealed if s.path == path), None)

    def read(self, path: Path) -> Replay | None:
        """The records of a segment, or None if another process is writing it."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return Replay([], 0)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            with os.fdopen(os.dup(fd), "rb") as f:
                return decode(f.read())
        finally:
            os.close(fd)  # releases the flock

    def remove(self, path: Path) -> None:
        """Delete a replayed segment, durably (the directory entry is synced)."""
        self._unlink(path)
        self.sealed = [s for s in self.sealed if s.path != path]

    # -- internals --------------------------------------------------------------------

    def _new(self, kind: str) -> Segment:
        self.prepare()
        self._counter += 1
        path = self.directory / f"{kind}-{self._tag}-{self._counter:06d}{_SUFFIX}"
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._sync_directory()
        except OSError:
            os.close(fd)
            self._unlink(path)
            raise
        segment = Segment(path, kind, fd=fd)
        self._open[kind] = segment
        return segment

    def _retire(self, segment: Segment) -> None:
        """After a failed append: what it holds stays for replay, nothing more goes in."""
        if self._open.get(segment.kind) is segment:
            self.seal(segment.kind)

    @staticmethod
    def _close(segment: Segment) -> None:
        if segment.fd is not None:
            with contextlib.suppress(OSError):
                os.close(segment.fd)
            segment.fd = None

    def _unlink(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(OSError):
            self._sync_directory()

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
