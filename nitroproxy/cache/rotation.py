"""Re-encrypting the response cache under the primary data key (``nitroproxy
rotate-data-key``), so the old key can be dropped with the cache on.

Every entry is opened under whichever held key sealed it and sealed again under the
primary key; its row HMACs (lookup, owners) are recomputed under the primary key's index key
from the values the entry seals (format v2). What cannot be re-encrypted is deleted and
counted, never left behind unreadable: entries of format v1 (they do not seal what their
HMACs were computed from), and entries whose key is not held. The check value is re-sealed
last. Runs beside a live server: each batch is one short transaction in the cache file, and
a server's lookups try every held key's HMAC, so entries stay found on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite
import orjson

from nitroproxy.cache import db as cache_db

# The sealing constants belong to cache.store; rotation must use exactly the same ones.
from nitroproxy.cache.store import (
    _CHECK,
    _CHECK_CONTEXT,
    _LOOKUP,
    _OWNER_KEY,
    _OWNER_USER,
    _context,
)
from nitroproxy.security.crypto import CryptoError, Keyring
from nitroproxy.store.db import transaction

__all__ = ["CacheRotation", "rotate_cache"]

_SELECT = (
    "SELECT rowid, lookup, endpoint, created, expires, last_used, blob FROM cache_entries "
    "WHERE CAST(substr(blob, 3, 8) AS TEXT) != ? ORDER BY rowid LIMIT ?"
)


@dataclass(frozen=True, slots=True)
class CacheRotation:
    """``reencrypted``: entries now under the primary key; ``purged``: entries deleted
    because they could not be re-encrypted (v1 format, or a key not held)."""

    path: str
    reencrypted: int
    purged: int


async def rotate_cache(
    path: str | Path,
    keyring: Keyring,
    *,
    batch_size: int = 100,
    on_batch: Callable[[int, int], object] | None = None,
) -> CacheRotation | None:
    """Rotate the cache file at ``path``; None when there is no such file (nothing to do)."""
    path = Path(path)
    if not path.exists():
        return None
    conn = await cache_db.open_cache_db(path, writer=True)
    done = purged = 0
    try:
        while True:
            n, gone = await _batch(conn, keyring, batch_size)
            done, purged = done + n, purged + gone
            if (n or gone) and on_batch is not None:
                on_batch(done, purged)
            if n + gone < batch_size:
                break
        sealed = keyring.seal(_CHECK, context=_CHECK_CONTEXT)
        await cache_db.write_meta(conn, "check", sealed)
        # No page image of an old ciphertext stays in the WAL (secure_delete zeroes the rest).
        await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await conn.close()
    return CacheRotation(str(path), done, purged)


async def _batch(conn: aiosqlite.Connection, keys: Keyring, limit: int) -> tuple[int, int]:
    async with transaction(conn):
        rows = list(await conn.execute_fetchall(_SELECT, (keys.primary_id, limit)))
        resealed: list[cache_db.Row] = []
        dead: list[int] = []
        for rowid, lookup, endpoint, created, expires, last_used, blob in rows:
            row = _reseal(keys, str(lookup), str(endpoint), created, expires, last_used, blob)
            dead.append(int(rowid))
            if row is not None:
                resealed.append(row)
        if dead:
            marks = ",".join("?" * len(dead))
            await conn.execute(f"DELETE FROM cache_entries WHERE rowid IN ({marks})", dead)
        if resealed:
            await conn.executemany(
                "INSERT OR REPLACE INTO cache_entries (lookup, key_index, user_index, endpoint,"
                " size, created, expires, last_used, blob) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                resealed,
            )
    return len(resealed), len(dead) - len(resealed)


def _reseal(
    keys: Keyring,
    lookup: str,
    endpoint: str,
    created: float,
    expires: float,
    last_used: float,
    blob: bytes,
) -> cache_db.Row | None:
    try:
        raw = keys.open(bytes(blob), context=_context(lookup))
        data = orjson.loads(raw)
        digest, key_id, user_id = data["digest"], data["key_id"], data["user_id"]
    except (CryptoError, orjson.JSONDecodeError, KeyError, TypeError):
        return None  # under a key not held, unreadable, or v1: purged
    new_lookup = keys.blind_index(str(digest), purpose=_LOOKUP)
    sealed = keys.seal(raw, context=_context(new_lookup))
    return (
        new_lookup,
        keys.blind_index(str(key_id), purpose=_OWNER_KEY),
        None if user_id is None else keys.blind_index(str(user_id), purpose=_OWNER_USER),
        endpoint,
        len(sealed),
        created,
        expires,
        last_used,
        sealed,
    )
