import asyncio
import contextlib
import os
import sqlite3
import stat
import sys
from dataclasses import fields
from typing import Any

import aiosqlite
import pytest

from nitroproxy.core.types import UsageRecord
from nitroproxy.store.db import (
    MIGRATIONS,
    SchemaTooNewError,
    create_private_file,
    migrate,
    open_db,
    probe_write,
    transaction,
)


async def _scalar(conn: aiosqlite.Connection, sql: str) -> Any:
    async with conn.execute(sql) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return row[0]


async def _tables(conn: aiosqlite.Connection) -> set[str]:
    rows = await conn.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in rows}


def _mode(path: str | os.PathLike[str]) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    # A permissive umask proves the modes come from the code, not from the environment.
    old = os.umask(0)
    yield
    os.umask(old)


async def test_migrates_an_empty_database_to_the_latest_version(tmp_path):
    conn = await open_db(tmp_path / "np.db")
    try:
        assert await _scalar(conn, "PRAGMA user_version") == len(MIGRATIONS)
        assert {"usage", "usage_daily"} <= await _tables(conn)
        columns = [r[1] for r in await conn.execute_fetchall("PRAGMA table_info(usage)")]
        assert columns == [f.name for f in fields(UsageRecord)]
        indexes = {r[1] for r in await conn.execute_fetchall("PRAGMA index_list(usage)")}
        assert {"usage_ts", "usage_user_ts", "usage_key_ts"} <= indexes
    finally:
        await conn.close()


async def test_reopening_is_idempotent_and_keeps_data(tmp_path):
    path = tmp_path / "np.db"
    conn = await open_db(path)
    await conn.execute("INSERT INTO usage_daily VALUES ('2024-01-01','','','m','',1,0,1,1,0,0,0,5)")
    await conn.close()
    conn = await open_db(path)
    try:
        assert await _scalar(conn, "PRAGMA user_version") == len(MIGRATIONS)
        assert await _scalar(conn, "SELECT COUNT(*) FROM usage_daily") == 1
    finally:
        await conn.close()


async def test_two_connections_opening_a_fresh_database_at_once_both_succeed(tmp_path):
    path = tmp_path / "np.db"
    a, b = await asyncio.gather(open_db(path), open_db(path))
    try:
        assert await _scalar(a, "PRAGMA user_version") == len(MIGRATIONS)
        assert await _scalar(b, "PRAGMA user_version") == len(MIGRATIONS)
    finally:
        await a.close()
        await b.close()


async def test_pragmas_are_set(tmp_path):
    conn = await open_db(tmp_path / "np.db")
    try:
        assert await _scalar(conn, "PRAGMA journal_mode") == "wal"
        assert await _scalar(conn, "PRAGMA synchronous") == 1  # NORMAL
        assert await _scalar(conn, "PRAGMA busy_timeout") == 5000
        assert await _scalar(conn, "PRAGMA foreign_keys") == 1
    finally:
        await conn.close()


@pytest.mark.usefixtures("open_umask")
async def test_new_file_is_0600_and_new_directory_is_0700(tmp_path):
    path = tmp_path / "state" / "nitro" / "np.db"
    conn = await open_db(path)
    try:
        await conn.execute("INSERT INTO usage_daily VALUES ('d','','','m','',1,0,0,0,0,0,0,0)")
        assert _mode(path) == 0o600
        assert _mode(path.parent) == 0o700
        for suffix in ("-wal", "-shm"):
            assert _mode(f"{path}{suffix}") == 0o600
    finally:
        await conn.close()


@pytest.mark.usefixtures("open_umask")
async def test_an_existing_directory_keeps_its_mode(tmp_path):
    os.chmod(tmp_path, 0o755)
    conn = await open_db(tmp_path / "np.db")
    await conn.close()
    assert _mode(tmp_path) == 0o755
    assert _mode(tmp_path / "np.db") == 0o600


async def test_a_newer_database_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "np.db"
    conn = await open_db(path)
    await conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    await conn.close()
    with pytest.raises(SchemaTooNewError, match="newer than this NitroProxy supports"):
        await open_db(path)


async def test_appending_a_migration_applies_only_the_new_one(tmp_path):
    conn = await open_db(tmp_path / "np.db")
    try:
        extra = "CREATE TABLE extra (x INTEGER); -- trailing comment\n"
        assert await migrate(conn, (*MIGRATIONS, extra)) == len(MIGRATIONS) + 1
        assert "extra" in await _tables(conn)
        assert await migrate(conn, (*MIGRATIONS, extra)) == len(MIGRATIONS) + 1
    finally:
        await conn.close()


async def test_a_failing_migration_rolls_back_entirely(tmp_path):
    conn = await open_db(tmp_path / "np.db")
    try:
        broken = "CREATE TABLE half (x); INSERT INTO no_such_table VALUES (1);"
        with pytest.raises(aiosqlite.OperationalError, match="no_such_table"):
            await migrate(conn, (*MIGRATIONS, broken))
        assert "half" not in await _tables(conn)
        assert await _scalar(conn, "PRAGMA user_version") == len(MIGRATIONS)
        assert not conn.in_transaction
    finally:
        await conn.close()


async def test_transaction_rolls_back_on_error(tmp_path):
    conn = await open_db(tmp_path / "np.db")
    try:
        with pytest.raises(RuntimeError):
            async with transaction(conn):
                await conn.execute(
                    "INSERT INTO usage_daily VALUES ('d','','','m','',1,0,0,0,0,0,0,0)"
                )
                raise RuntimeError
        assert await _scalar(conn, "SELECT COUNT(*) FROM usage_daily") == 0
    finally:
        await conn.close()


async def test_probe_write_reaches_the_disk_and_fails_while_another_holds_the_lock(tmp_path):
    path = tmp_path / "np.db"
    conn = await open_db(path, busy_timeout=0.05)
    holder = await open_db(path)
    try:
        await probe_write(conn)
        await holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await probe_write(conn)
        await holder.execute("ROLLBACK")
        await probe_write(conn)
        assert await _scalar(conn, "SELECT value FROM meta WHERE name = 'writer_probe'") == 2
        assert await _scalar(conn, "PRAGMA busy_timeout") == 50
    finally:
        await holder.close()
        await conn.close()


def _deleted_descriptors(prefix: str) -> list[str]:
    """This process's descriptors of files under ``prefix`` that were unlinked (Linux)."""
    fd_dir = "/proc/self/fd"
    found = []
    for name in os.listdir(fd_dir):
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(os.path.join(fd_dir, name))
            if target.startswith(prefix) and target.endswith("(deleted)"):
                found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)")
async def test_opening_the_live_file_again_keeps_every_connection_s_locks(tmp_path):
    path = tmp_path / "np.db"
    first = await open_db(path)
    # The second open used to open and close the live file itself, which drops every POSIX
    # lock this process holds on it: the next process then thought it was alone.
    second = await open_db(path)
    try:
        await first.execute("INSERT INTO usage_daily VALUES ('d','','','m','',1,0,0,0,0,0,0,0)")
        reader = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        reader += "c.execute('SELECT COUNT(*) FROM usage_daily').fetchall(); c.close()"
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", reader, str(path))
        assert await proc.wait() == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == ["np.db", "np.db-shm", "np.db-wal"]
        assert _deleted_descriptors(str(path)) == []
        await second.execute("INSERT INTO usage_daily VALUES ('e','','','m','',1,0,0,0,0,0,0,0)")
        assert await _scalar(first, "SELECT COUNT(*) FROM usage_daily") == 2
    finally:
        await second.close()
        await first.close()


def test_create_private_file_never_opens_an_existing_file(tmp_path, monkeypatch):
    path = tmp_path / "np.db"
    path.write_bytes(b"")
    opened: list[object] = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    assert create_private_file(path) is False
    assert opened == []
    assert create_private_file(tmp_path / "new.db") is True
    assert _mode(tmp_path / "new.db") == 0o600
