"""The PostgreSQL store layer against a real PostgreSQL, each test in a schema of its own:
the same tables and columns as SQLite from the same migrations, migrated once by
instances starting together, usage written by COPY and idempotent by record id, and one
sweeper of many under an advisory lock."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from nitroproxy.store.db import MIGRATIONS, SchemaTooNewError, open_db
from nitroproxy.store.pg import schema
from nitroproxy.store.pg.dialect import ddl, placeholders
from nitroproxy.store.pg.locks import SWEEP_LOCK, exclusive
from nitroproxy.store.pg.usage import COLUMNS, insert_many
from tests.records import MAR10, make_record
from tests.services import POSTGRES, POSTGRES_MISSING, postgres_answers

Connect = Callable[[], Awaitable[asyncpg.Connection]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Connections whose search_path is a schema of this test's own, dropped afterwards."""
    if not postgres_answers():
        pytest.skip(POSTGRES_MISSING)
    name = f"nptest_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES)
    await admin.execute(f"CREATE SCHEMA {name}")
    opened: list[asyncpg.Connection] = []

    async def make() -> asyncpg.Connection:
        conn = await asyncpg.connect(POSTGRES, server_settings={"search_path": name})
        opened.append(conn)
        return conn

    try:
        yield make
    finally:
        for conn in opened:
            await conn.close()
        await admin.execute(f"DROP SCHEMA {name} CASCADE")
        await admin.close()


async def test_the_migrations_make_the_same_tables_and_columns_as_sqlite(
    connect: Connect, tmp_path: Path
) -> None:
    conn = await connect()
    assert await schema.migrate(conn) == len(MIGRATIONS)
    lite = await open_db(tmp_path / "same.db")
    try:
        tables = [r[0] for r in await lite.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )]  # fmt: skip
        for table in tables:
            expected = [r[1] for r in await lite.execute_fetchall(f"PRAGMA table_info({table})")]
            found = await conn.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = $1 "
                "ORDER BY ordinal_position",
                table,
            )
            assert [r["column_name"] for r in found] == expected, table
    finally:
        await lite.close()


async def test_instances_starting_together_migrate_once(connect: Connect) -> None:
    conns = [await connect() for _ in range(3)]
    versions = await asyncio.gather(*(schema.migrate(c) for c in conns))
    assert versions == [len(MIGRATIONS)] * 3
    assert await conns[0].fetchval("SELECT count(*) FROM schema_version") == 1
    assert await schema.migrate(conns[0]) == len(MIGRATIONS)  # and again: nothing to do


async def test_a_newer_schema_is_refused(connect: Connect) -> None:
    conn = await connect()
    await schema.migrate(conn)
    await conn.execute("UPDATE schema_version SET version = version + 1")
    with pytest.raises(SchemaTooNewError):
        await schema.migrate(conn)


async def test_copy_writes_every_field_and_a_replayed_batch_is_stored_once(
    connect: Connect,
) -> None:
    conn = await connect()
    await schema.migrate(conn)
    records = [make_record(i, ttft_ms=40.5, output_tps=88.0, end_user="eu-1") for i in range(1000)]
    records[3] = dataclasses.replace(records[3], stream=True, cache_hit=True, ttft_ms=None)
    assert await insert_many(conn, records[:600]) == 600
    assert await insert_many(conn, records) == 400  # the first 600 again: not twice
    assert await conn.fetchval("SELECT count(*) FROM usage") == 1000
    row = await conn.fetchrow(f"SELECT {', '.join(COLUMNS)} FROM usage WHERE id = 'rec-3'")
    stored = {name: row[name] for name in COLUMNS}
    expected = dataclasses.asdict(records[3])
    expected["stream"], expected["cache_hit"] = 1, 1
    assert stored == expected


async def test_one_sweeper_of_many_holds_the_lock(connect: Connect) -> None:
    one, other = await connect(), await connect()
    async with exclusive(one, SWEEP_LOCK) as mine:
        assert mine
        async with exclusive(other, SWEEP_LOCK) as theirs:
            assert not theirs
    async with exclusive(other, SWEEP_LOCK) as theirs:
        assert theirs  # released on exit


def test_the_dialect_types_and_placeholders() -> None:
    assert placeholders("SELECT * FROM t WHERE a = ? AND b = '?' AND c = ?") == (
        "SELECT * FROM t WHERE a = $1 AND b = '?' AND c = $2"
    )
    assert ddl("CREATE TABLE m (name TEXT PRIMARY KEY, value NOT NULL, n INTEGER, x REAL)") == (
        "CREATE TABLE m (name TEXT PRIMARY KEY, value BYTEA NOT NULL, n BIGINT, x DOUBLE PRECISION)"
    )
    assert ddl("ALTER TABLE u ADD COLUMN b BLOB") == "ALTER TABLE u ADD COLUMN b BYTEA"


async def test_the_retention_sweep_rolls_up_exactly_as_sqlite_does(
    connect: Connect, tmp_path: Path
) -> None:
    """Old records, one of an objector and some errors, rolled up by both backends: the
    same daily aggregates and billing lines, and the raw rows gone from both."""
    from nitroproxy.core.retention import RetentionPolicy
    from nitroproxy.store import usage as lite_usage
    from nitroproxy.store.pg.retention import PgRetention

    day = 86400.0
    records = [
        make_record(
            i,
            ts=MAR10 + (i % 3) * day + i,
            user_id=("objector" if i % 5 == 0 else f"user-{i % 2}"),
            status=500 if i % 7 == 0 else 200,
            model=("gpt-4o", "claude")[i % 2],
            cost_nanos=1000 + i,
        )
        for i in range(60)
    ]
    now = MAR10 + 400 * day  # every record is past a 90-day raw window
    policy = RetentionPolicy(requests_s=90 * day, analytics_s=730 * day, billing_s=3650 * day)

    lite = await open_db(tmp_path / "lite.db")
    try:
        await lite.execute(
            "INSERT INTO preferences (subject, analytics, cache, updated) "
            "VALUES ('objector', 0, 1, 0)"
        )
        await lite_usage.insert_many(lite, records)
        await lite_usage.roll_up(lite, before=MAR10 + 100 * day, limit=1000)
        want_daily = sorted(map(tuple, await lite.execute_fetchall("SELECT * FROM usage_daily")))
        want_billing = sorted(
            map(tuple, await lite.execute_fetchall("SELECT * FROM billing_lines"))
        )
        assert (await lite.execute_fetchall("SELECT count(*) FROM usage"))[0][0] == 0

        pg = await connect()
        await schema.migrate(pg)
        await insert_many(pg, records)
        retention = PgRetention(POSTGRES, policy)
        assert await retention.sweep_batch(pg, now, 1000, ["objector"]) > 0
        got_daily = sorted(tuple(r) for r in await pg.fetch("SELECT * FROM usage_daily"))
        got_billing = sorted(tuple(r) for r in await pg.fetch("SELECT * FROM billing_lines"))
        assert await pg.fetchval("SELECT count(*) FROM usage") == 0
    finally:
        await lite.close()
    assert got_daily == want_daily
    assert got_billing == want_billing
    assert all(row[1] != "objector" for row in got_daily)  # left out of analytics
    assert any(row[1] == "objector" for row in got_billing)  # ...but billed


async def test_the_sweeper_step_bills_an_erased_users_stragglers_under_the_lock(
    pg_schema: str, tmp_path: Path
) -> None:
    from nitroproxy.core.retention import RetentionPolicy
    from nitroproxy.store.pg.retention import PgRetention

    url = f"{POSTGRES}?search_path={pg_schema}"
    pg = await asyncpg.connect(url)
    lite = await open_db(tmp_path / "accounts.db")
    try:
        await schema.migrate(pg)
        await lite.execute(
            "INSERT INTO users (id, tier, status, created, updated) "
            "VALUES ('gone', 'default', 'erased', 0, 0)"
        )
        now = MAR10 + 10 * 86400.0  # inside every window: only the straggler moves
        await insert_many(pg, [make_record(1, user_id="gone", ts=now - 60), make_record(2)])
        retention = PgRetention(url, RetentionPolicy())
        async with exclusive(pg, SWEEP_LOCK):  # another instance is sweeping
            assert await retention.step(lite, now, 100) == 0
        assert await retention.step(lite, now, 100) == 1
        assert await pg.fetchval("SELECT count(*) FROM usage WHERE user_id = 'gone'") == 0
        line = await pg.fetchrow("SELECT user_id, cost_nanos FROM billing_lines")
        assert line["user_id"].startswith("erased-") and line["cost_nanos"] == 1000
        assert await pg.fetchval("SELECT count(*) FROM usage") == 1  # the other record stays
    finally:
        await lite.close()
        await pg.close()


async def test_the_dashboards_timeline_reads_the_same_from_postgres(
    pg_schema: str, tmp_path: Path
) -> None:
    from nitroproxy.store import timeline
    from nitroproxy.store import usage as lite_usage
    from nitroproxy.store.pg.reports import PgQueries

    records = [
        make_record(
            i,
            ts=MAR10 + i * 37.5,
            latency_ms=100.0 + (i * 7) % 50,
            ttft_ms=None if i % 4 == 0 else 20.0 + i % 9,
            status=500 if i % 6 == 0 else 200,
            deployment=("east", "west", None)[i % 3],
            key_id=("key-a", "key-b")[i % 2],
        )
        for i in range(200)
    ]
    url = f"{POSTGRES}?search_path={pg_schema}"
    pg = await asyncpg.connect(url)
    lite = await open_db(tmp_path / "lite.db")
    try:
        await schema.migrate(pg)
        await insert_many(pg, records)
        await lite_usage.insert_many(lite, records)
        window = {"start": MAR10, "end": MAR10 + 7500.0}
        for key_id in (None, "key-b"):
            want = await timeline.query_timeline(lite, **window, step=300, key_id=key_id)
            got = await timeline.query_timeline(PgQueries(url), **window, step=300, key_id=key_id)
            assert got == want and len(want) > 20
        want_rows = await timeline.usage_by_deployment(lite, **window, key_id="key-a")
        got_rows = await timeline.usage_by_deployment(PgQueries(url), **window, key_id="key-a")
        assert got_rows == want_rows and {r.group for r in want_rows} == {"", "east", "west"}
    finally:
        await lite.close()
        await pg.close()
