"""Opening the SQLite database: file modes, PRAGMAs, migrations keyed on ``user_version``.

Connections are opened in autocommit mode (``isolation_level=None``): every statement commits
on its own unless it runs inside ``async with transaction(conn):``. A transaction spans
several awaits, so two tasks must not run transactions on one connection at the same time;
components that write in the background (the usage writer, the retention sweeper) open their
own connection. Single-statement reads are safe on any connection.

Sharing the file: SQLite coordinates every connection, in this process or another (the CLI,
a ``sqlite3`` shell, ``.backup``, ``VACUUM INTO``), through POSIX locks on the database and
``-shm`` files. POSIX locks belong to the process, and closing *any* descriptor of a file
drops all of them, so a stray ``open()``/``close()`` of a live database (to create it or fix
its mode) leaves this process's connections unprotected: another process then believes it
is alone, checkpoints and deletes the ``-wal`` and ``-shm`` files under us, and what was
committed since is lost. Hence the rule kept here: the file is created and chmod-ed once,
before the first connection, with ``O_CREAT | O_EXCL`` (which never opens an existing file),
and nothing but SQLite ever opens a descriptor of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import aiosqlite

from nitroproxy.config.errors import StartupError

# Append-only: migration N (1-based) brings user_version from N-1 to N. Never edit a shipped
# script; add a new one. Each runs in one transaction with the user_version bump.
MIGRATIONS: tuple[str, ...] = (
    # v1: usage records (metadata only) and their per-day roll-up.
    """
    CREATE TABLE usage (
        id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        ts REAL NOT NULL,
        key_id TEXT,
        user_id TEXT,
        model TEXT NOT NULL,
        provider TEXT,
        deployment TEXT,
        upstream_model TEXT,
        endpoint TEXT NOT NULL,
        stream INTEGER NOT NULL,
        status INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        error_class TEXT,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        usage_source TEXT NOT NULL,
        cost_nanos INTEGER NOT NULL,
        latency_ms REAL NOT NULL,
        ttft_ms REAL,
        output_tps REAL,
        attempts INTEGER NOT NULL,
        client_ip TEXT,
        user_agent TEXT,
        cache_hit INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX usage_ts ON usage (ts);
    CREATE INDEX usage_user_ts ON usage (user_id, ts);
    CREATE INDEX usage_key_ts ON usage (key_id, ts);

    -- Key columns hold '' instead of NULL so the primary key identifies a group.
    CREATE TABLE usage_daily (
        day TEXT NOT NULL,
        user_id TEXT NOT NULL,
        key_id TEXT NOT NULL,
        model TEXT NOT NULL,
        provider TEXT NOT NULL,
        requests INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        cost_nanos INTEGER NOT NULL,
        PRIMARY KEY (day, user_id, key_id, model, provider)
    );
    """,
    # v2: users, API keys, the admin audit log, and small named values (meta).
    """
    -- accounts_version: bumped by every accounts write, so servers reload keys;
    -- data_key_check: a sealed constant proving which data key opens the sealed columns.
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value NOT NULL
    );

    -- name and email are sealed (AES-GCM, key id inside the blob) or NULL;
    -- email_index is the HMAC blind index of the normalised email, for lookups.
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        name BLOB,
        email BLOB,
        email_index TEXT UNIQUE,
        tier TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'erased')),
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL
    );

    -- Only the SHA-256 of a secret is kept; prefix is its first characters, for display.
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        name TEXT NOT NULL,
        user_id TEXT REFERENCES users (id),
        models TEXT,
        rpm INTEGER,
        tpm INTEGER,
        max_concurrent INTEGER,
        budget_day_usd REAL,
        budget_month_usd REAL,
        expires_at INTEGER,
        revoked INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL
    );
    CREATE INDEX api_keys_user ON api_keys (user_id);

    -- Append-only. user_id is the user an entry is about (for exports); detail is JSON
    -- holding ids, field names and settings, never a secret or personal data.
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        user_id TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_target ON audit (target, seq);
    CREATE INDEX audit_user ON audit (user_id, seq);
    """,
    # v3: a key may opt in to the response cache (a request's x-nitroproxy-cache still wins).
    """
    ALTER TABLE api_keys ADD COLUMN cache INTEGER NOT NULL DEFAULT 0;
    """,
    # v4: the client's end user (privacy.end_user: a keyed pseudonym by default, or the value
    # as sent, or nothing), and the part of the cache writes that went to Anthropic's
    # 1-hour cache (billed at 2x input, the 5-minute writes at 1.25x).
    """
    ALTER TABLE usage ADD COLUMN end_user TEXT;
    ALTER TABLE usage ADD COLUMN cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX usage_end_user_ts ON usage (end_user, ts) WHERE end_user IS NOT NULL;
    """,
    # v5: billing lines (the tax window, apart from analytics), people's privacy choices,
    # named admin keys, account closure, and the indexes their retention sweeps use.
    """
    -- What each user owes per UTC day and model, rolled up from raw usage records and kept
    -- for the billing window; after an erase, user_id and key_id hold a pseudonym.
    CREATE TABLE billing_lines (
        day TEXT NOT NULL,
        user_id TEXT NOT NULL,
        key_id TEXT NOT NULL,
        model TEXT NOT NULL,
        requests INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        cost_nanos INTEGER NOT NULL,
        PRIMARY KEY (day, user_id, key_id, model)
    );
    CREATE INDEX billing_lines_user ON billing_lines (user_id, day);

    -- A person's objection to analytics (analytics = 0: out of public statistics and of
    -- every aggregate but billing) and opt-out of the response cache (cache = 0).
    CREATE TABLE preferences (
        subject TEXT PRIMARY KEY,  -- a user id, or the id of a key that has no user
        analytics INTEGER NOT NULL DEFAULT 1,
        cache INTEGER NOT NULL DEFAULT 1,
        updated INTEGER NOT NULL
    );

    -- Named admin keys: the name is the actor of their audit entries. A revoked key keeps
    -- its row, so its name is never given to someone else.
    CREATE TABLE admin_keys (
        name TEXT PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL
    );

    ALTER TABLE users ADD COLUMN closed_at INTEGER;
    CREATE INDEX users_closed ON users (closed_at);
    CREATE INDEX audit_ts ON audit (ts);
    """,
)


class SchemaTooNewError(StartupError):
    """The database was migrated by a newer NitroProxy than this one."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"database schema version {found} is newer than this NitroProxy supports "
            f"({supported}); upgrade NitroProxy or point it at another database"
        )
        self.found = found
        self.supported = supported


async def set_wal(conn: aiosqlite.Connection, attempts: int = 100) -> None:
    """Switching to WAL needs a moment of exclusive access, and SQLite answers "database is
    locked" at once, without its busy handler, while another connection opening the same
    fresh file holds it (seen with two components starting together). Retry briefly."""
    for attempt in range(attempts):
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.02)


DEFAULT_BUSY_TIMEOUT_S = 5.0


async def open_db(
    path: str | Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S
) -> aiosqlite.Connection:
    """Open (creating it 0600, in a 0700 directory if that is new), configure and migrate.

    ``busy_timeout`` (seconds) is how long a statement waits for another connection's lock
    before failing with "database is locked"."""
    memory = str(path) == ":memory:"
    if not memory:
        await asyncio.to_thread(create_private_file, Path(path))
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        # busy_timeout first, so the journal-mode switch waits for other connections.
        await conn.execute(f"PRAGMA busy_timeout = {max(0, round(busy_timeout * 1000))}")
        await set_wal(conn)
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await migrate(conn)
    except BaseException:
        await conn.close()
        raise
    if not memory:
        await asyncio.to_thread(restrict_sidecars, Path(path))
    return conn


async def migrate(conn: aiosqlite.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Apply the migrations this database lacks; return the resulting schema version."""
    target = len(migrations)
    while True:
        async with transaction(conn):
            # Read under the write lock: another process may have migrated meanwhile.
            version = await _user_version(conn)
            if version > target:
                raise SchemaTooNewError(version, target)
            if version == target:
                return version
            for statement in _statements(migrations[version]):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {version + 1}")


@contextlib.asynccontextmanager
async def transaction(conn: aiosqlite.Connection) -> AsyncIterator[None]:
    """One write transaction; takes the write lock up front (waits up to busy_timeout)."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        await conn.execute("COMMIT")
    except BaseException:
        # ROLLBACK fails harmlessly if COMMIT already ended the transaction.
        with contextlib.suppress(sqlite3.Error, ValueError):
            await conn.execute("ROLLBACK")
        raise


async def probe_write(conn: aiosqlite.Connection) -> None:
    """A real, tiny write (a row of ``meta``): raises while the database cannot take one
    (locked past busy_timeout, a full disk, read-only). It reaches the disk, so a writer
    that failed learns when it may try again."""
    await conn.execute(
        "INSERT INTO meta (name, value) VALUES ('writer_probe', 1) "
        "ON CONFLICT (name) DO UPDATE SET value = value + 1"
    )


async def _user_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None else 0


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements (``execute`` runs one at a time; ``executescript``
    would commit our transaction). ``complete_statement`` keeps triggers and quoted ';'.
    Comments must be ``--`` line comments."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if _has_sql(pending):
                yield pending.strip()
            pending = ""
    if _has_sql(pending):
        raise ValueError(f"incomplete SQL statement in migration: {pending.strip()[:60]!r}")


def _has_sql(text: str) -> bool:
    lines = (line.strip() for line in text.splitlines())
    return any(line.strip(";") and not line.startswith("--") for line in lines)


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty and 0600 (its directory 0700 if that is new) unless it exists;
    True if this call created it.

    An existing file is never opened: ``O_EXCL`` fails instead of opening it, so a
    connection that already holds locks on it (in this process) keeps them. See the module
    docstring for why that matters."""
    parent = path.parent
    if not parent.exists():
        parent.mkdir(parents=True, exist_ok=True)
        os.chmod(parent, 0o700)  # mkdir's mode is filtered by umask; be explicit
    if path.exists():
        return False
    try:
        # Created by us so it never exists with a wider mode than 0600. Nobody can hold a
        # lock on a file that did not exist a moment ago, so closing this descriptor is safe.
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False  # another connection created it first: it is live now, leave it be
    os.fchmod(fd, 0o600)  # O_CREAT's mode is filtered by umask too
    os.close(fd)
    return True


def restrict_sidecars(path: Path) -> None:
    """chmod the ``-wal`` and ``-shm`` files (SQLite gives them the database's mode; this
    is for files made by an older version). ``chmod`` takes a path, not a descriptor."""
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", 0o600)
