"""ResponseCache: the opt-in response cache, in its own SQLite file, sealed with the data key.

The only place prompt-derived data is stored, and never in plaintext: the row key is an HMAC
(``Keyring.blind_index``) of the tenant scope and the canonical request, the owners (key,
user) are HMACs too, and the entry (response body, usage, cost, routing names) is AES-GCM
sealed, bound to its row key so it cannot be moved to another row and still open.

The request path awaits one indexed SELECT per lookup, on a read-only connection. Stores,
last-used touches and evictions run in a background task owned by the cache, fed by a
bounded queue: when it is full a store is dropped and counted. Purges and the retention
sweeper's expiry share the write connection under one lock, so their transactions never
interleave with the writer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from nitroproxy.cache import db as cache_db
from nitroproxy.config import CacheSettings
from nitroproxy.config.errors import StartupError
from nitroproxy.core import replay
from nitroproxy.core.cache_policy import CacheScope, digest
from nitroproxy.core.types import ApiFormat, Endpoint, Usage
from nitroproxy.security.crypto import ENV_VAR, CryptoError, Keyring

_LOOKUP = "nitroproxy-cache-lookup"
_OWNER_KEY = "nitroproxy-cache-key"
_OWNER_USER = "nitroproxy-cache-user"
_CHECK = b"nitroproxy-cache-check"
_CHECK_CONTEXT = b"cache_meta.check"
_BATCH = 128


class CacheUnavailable(CryptoError, StartupError):
    """The cache cannot run: no data key, or a cache file sealed under a key not held."""


@dataclass(frozen=True, slots=True)
class CachedEntry:
    """A complete response in the client's format, with what producing it cost.
    ``cost_nanos`` is the saving a hit reports; ``stored_at`` (wall clock) is set on lookup."""

    endpoint: Endpoint
    body: dict[str, Any]
    usage: Usage
    cost_nanos: int
    model: str
    provider: str | None = None
    deployment: str | None = None
    upstream_model: str | None = None
    stored_at: float = 0.0

    @property
    def response_format(self) -> ApiFormat:
        return ApiFormat.ANTHROPIC if self.endpoint is Endpoint.MESSAGES else ApiFormat.OPENAI


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    stores: int = 0
    evictions: int = 0
    expired: int = 0
    purged: int = 0
    dropped: int = 0  # the store queue was full
    rejected: int = 0  # incomplete, or larger than a quarter of max_bytes
    errors: int = 0  # unreadable entries, failed writes


@dataclass(frozen=True, slots=True)
class _Put:
    seq: int
    scope: CacheScope
    digest: str
    entry: CachedEntry
    now: float


@dataclass(frozen=True, slots=True)
class _Touch:
    lookup: str
    now: float


def default_path(storage_path: str | Path) -> Path:
    """``cache.db`` next to the usage database."""
    return Path(storage_path).with_name("cache.db")


class ResponseCache:
    """Construction checks the data key (``CacheUnavailable`` without one); ``start()``
    opens the file (0600, in a 0700 directory if new) and starts the writer."""

    def __init__(
        self,
        path: str | Path,
        settings: CacheSettings,
        keyring: Keyring | None = None,
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        max_queue: int = 1024,
        touch_interval: float = 60.0,
    ) -> None:
        if str(path) == ":memory:":
            raise ValueError("the response cache needs a file (it uses two connections)")
        if keyring is None:
            try:
                keyring = Keyring.from_env(env)
            except CryptoError as exc:
                raise CacheUnavailable(
                    f"cache.enabled requires {ENV_VAR} (entries are encrypted): {exc}"
                ) from None
        self.path = Path(path)
        self.settings = settings
        self.stats = CacheStats()
        self._keys = keyring
        self._clock = clock
        self._touch_interval = touch_interval
        self._queue: asyncio.Queue[_Put | _Touch] = asyncio.Queue(max_queue)
        self._lock = asyncio.Lock()  # one user of the write connection at a time
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        # Purged owner -> last store sequence number queued before the purge: those stores
        # are dropped, so an erase is not undone by a write that was still queued.
        self._tombstones: dict[tuple[str, str], int] = {}
        self._log = logging.getLogger("nitroproxy.cache")

    @property
    def max_entry_bytes(self) -> int:
        """One response may take at most a quarter of the cache, so it cannot flush it."""
        return self.settings.max_bytes // 4

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("ResponseCache.start() called twice")
        writer = await cache_db.open_cache_db(self.path, writer=True)
        try:
            await self._check_key(writer)
            gone = await cache_db.delete_sealed_except(writer, self._keys.key_ids)
            if gone:  # sealed under a key no longer held: unreadable, so only taking room
                self._log.warning("cache: removed %d entries under a retired data key", gone)
            self._reader = await cache_db.open_cache_db(self.path, writer=False)
        except BaseException:
            await writer.close()
            raise
        self._writer = writer
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="nitroproxy-cache-writer"
        )

    async def close(self, drain_seconds: float = 5.0) -> None:
        """Write what is queued (for up to ``drain_seconds``), stop the writer, close."""
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain_seconds)
            task.cancel()
            await asyncio.wait({task})
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        await self._queue.join()

    # -- request path ---------------------------------------------------------------------

    async def lookup(
        self, scope: CacheScope, material: bytes, *, now: float | None = None
    ) -> CachedEntry | None:
        """The live entry for this request in this scope, or None (absent, expired or
        unreadable). One indexed SELECT; decryption happens here."""
        now = self._clock() if now is None else now
        if self._reader is None:  # not started, or closed under a request in flight
            self.stats.misses += 1
            return None
        lookups = self._keys.blind_indexes(digest(scope, material), purpose=_LOOKUP)
        found = await cache_db.select(self._reader, lookups)
        row = next((found[k] for k in lookups if k in found), None)
        if row is None or row[3] <= now:
            self.stats.misses += 1
            return None
        lookup, blob, created, _, last_used = row
        try:
            entry = _decode(self._keys.open(blob, context=_context(lookup)), created)
        except (CryptoError, ValueError, KeyError, TypeError):
            self._log.warning("cache entry unreadable; treated as a miss")
            self.stats.errors += 1
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        if now - last_used >= self._touch_interval:
            with contextlib.suppress(asyncio.QueueFull):  # recency is best effort
                self._queue.put_nowait(_Touch(lookup, now))
        return entry

    def store(
        self,
        scope: CacheScope,
        material: bytes,
        entry: CachedEntry,
        *,
        now: float | None = None,
    ) -> bool:
        """Queue a complete response for writing; never blocks. False when it was rejected
        (incomplete) or dropped (queue full, or the cache is closed)."""
        if not replay.is_complete(entry.endpoint, entry.body):
            self.stats.rejected += 1
            return False
        if self._task is None:
            self.stats.dropped += 1
            return False
        now = self._clock() if now is None else now
        try:
            self._queue.put_nowait(_Put(self._seq + 1, scope, digest(scope, material), entry, now))
        except asyncio.QueueFull:
            self.stats.dropped += 1
            return False
        self._seq += 1
        return True

    # -- erasure and retention ------------------------------------------------------------

    async def purge_key(self, key_id: str) -> int:
        """Delete every entry stored through this key (revocation), in any scope."""
        return await self._purge("key_index", ("key", key_id), _OWNER_KEY)

    async def purge_user(self, user_id: str) -> int:
        """Delete every entry stored for this user, through any of their keys (erasure)."""
        return await self._purge("user_index", ("user", user_id), _OWNER_USER)

    async def expire(self, now: float | None = None, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired entries; returns how many."""
        now = self._clock() if now is None else now
        conn = self._write_conn()
        async with self._lock:
            deleted = await cache_db.delete_expired(conn, now, limit)
        self.stats.expired += deleted
        return deleted

    async def sweep_step(self, _conn: aiosqlite.Connection, now: float, limit: int) -> int:
        """A ``RetentionSweeper`` step: ``sweeper.add_step("cache", cache.sweep_step)``. The
        sweeper's connection is to the usage database; the cache uses its own."""
        return await self.expire(now, limit)

    async def _purge(self, column: str, owner: tuple[str, str], purpose: str) -> int:
        self._tombstones[owner] = self._seq
        indexes = self._keys.blind_indexes(owner[1], purpose=purpose)
        conn = self._write_conn()
        async with self._lock:
            deleted = await cache_db.delete_owned(conn, column, indexes)
        self.stats.purged += deleted
        return deleted

    # -- writer ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with self._lock:
                    await self._write(batch)
            except Exception:
                # The cache is an optimisation: a failed write loses entries, not answers.
                self._log.exception("cache write failed")
                self.stats.errors += 1
            finally:
                for _ in batch:
                    self._queue.task_done()
                if self._queue.empty():
                    self._tombstones.clear()  # no queued store predates any purge now

    async def _write(self, batch: list[_Put | _Touch]) -> None:
        puts = (self._row(op) for op in batch if isinstance(op, _Put))
        rows = [row for row in puts if row is not None]
        touches = [(op.lookup, op.now) for op in batch if isinstance(op, _Touch)]
        evicted = await cache_db.write(
            self._write_conn(),
            rows,
            touches,
            max_entries=self.settings.max_entries,
            max_bytes=self.settings.max_bytes,
        )
        self.stats.stores += len(rows)
        self.stats.evictions += evicted

    def _row(self, op: _Put) -> cache_db.Row | None:
        scope = op.scope
        if self._tombstones.get(("key", scope.key_id), -1) >= op.seq or (
            scope.user_id is not None
            and self._tombstones.get(("user", scope.user_id), -1) >= op.seq
        ):
            return None
        lookup = self._keys.blind_index(op.digest, purpose=_LOOKUP)
        blob = self._keys.seal(_encode(op.entry, op), context=_context(lookup))
        if len(blob) > self.max_entry_bytes:
            self.stats.rejected += 1
            return None
        user = scope.user_id
        return (
            lookup,
            self._keys.blind_index(scope.key_id, purpose=_OWNER_KEY),
            None if user is None else self._keys.blind_index(user, purpose=_OWNER_USER),
            op.entry.endpoint.value,
            len(blob),
            op.now,
            op.now + self.settings.ttl,
            op.now,
            blob,
        )

    def _write_conn(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise RuntimeError("ResponseCache is not started")
        return self._writer

    async def _check_key(self, conn: aiosqlite.Connection) -> None:
        """Refuse a file sealed under a key that is not held, rather than miss forever."""
        blob = await cache_db.read_meta(conn, "check")
        if blob is not None:
            try:
                self._keys.open(blob, context=_CHECK_CONTEXT)
            except CryptoError as exc:
                raise CacheUnavailable(
                    f"{self.path}: {exc}. Put that key back in {ENV_VAR}, or delete the"
                    " file (the cache is disposable)"
                ) from None
            if Keyring.sealed_key_id(blob) == self._keys.primary_id:
                return
        sealed = self._keys.seal(_CHECK, context=_CHECK_CONTEXT)
        await cache_db.write_meta(conn, "check", sealed)


def _context(lookup: str) -> bytes:
    return b"cache_entries.blob:" + lookup.encode()


def _encode(entry: CachedEntry, op: _Put) -> bytes:
    # v2 seals what its row's HMACs were computed from (the request digest and the owners),
    # so ``cache.rotation`` can recompute them under a new data key.
    return orjson.dumps(
        {
            "v": 2,
            "digest": op.digest,
            "key_id": op.scope.key_id,
            "user_id": op.scope.user_id,
            "endpoint": entry.endpoint.value,
            "body": entry.body,
            "usage": dataclasses.asdict(entry.usage),
            "cost_nanos": entry.cost_nanos,
            "model": entry.model,
            "provider": entry.provider,
            "deployment": entry.deployment,
            "upstream_model": entry.upstream_model,
        }
    )


def _decode(raw: bytes, stored_at: float) -> CachedEntry:
    data = orjson.loads(raw)
    return CachedEntry(
        endpoint=Endpoint(data["endpoint"]),
        body=data["body"],
        usage=Usage(**data["usage"]),
        cost_nanos=int(data["cost_nanos"]),
        model=data["model"],
        provider=data["provider"],
        deployment=data["deployment"],
        upstream_model=data["upstream_model"],
        stored_at=stored_at,
    )
