"""PostgreSQL usage writes: ``python -m benchmarks.bench_pg_writer [-n N] [--batch-size B]``.

Writes N records through ``store.pg.usage.insert_many`` (COPY into a temporary table, then
``INSERT ... ON CONFLICT (id) DO NOTHING``, one transaction per batch) into a schema of its
own on 127.0.0.1:5432 (dropped afterwards), one batch after another on one connection, and
prints records/s from the first batch until the last commits.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid

import asyncpg

from nitroproxy.core.types import UsageRecord
from nitroproxy.store.pg import schema
from nitroproxy.store.pg.records import PgRecords
from nitroproxy.store.pg.usage import insert_many
from nitroproxy.store.writer import UsageWriter

DSN = "postgresql://127.0.0.1:5432/test"


def _records(n: int, start: float) -> list[UsageRecord]:
    return [
        UsageRecord(
            id=f"usage-{i:08d}",
            request_id=f"req-{i:08d}",
            ts=start + i * 0.001,
            key_id=f"key-{i % 50}",
            user_id=f"user-{i % 20}",
            model="gpt-4o",
            provider="openai",
            deployment="openai/gpt-4o",
            upstream_model="gpt-4o",
            endpoint="chat.completions",
            stream=i % 2 == 0,
            status=200,
            outcome="ok",
            error_class=None,
            prompt_tokens=100 + i % 50,
            completion_tokens=20 + i % 30,
            cached_tokens=0,
            cache_write_tokens=0,
            reasoning_tokens=0,
            usage_source="provider",
            cost_nanos=1_234_000 + i,
            latency_ms=250.0,
            ttft_ms=80.0,
            output_tps=60.0,
            attempts=1,
            client_ip="127.0.0.0",
            user_agent="bench",
        )
        for i in range(n)
    ]


async def _through_writer(url: str, records: list[UsageRecord], batch_size: int) -> float:
    """The durable writer (queue, batches, retries, journal) with ``PgRecords``: from the
    first put until close() returns, everything committed."""
    with tempfile.TemporaryDirectory() as tmp:
        writer = UsageWriter(
            None,
            store=PgRecords(url),
            batch_size=batch_size,
            flush_interval=0.05,
            max_queue=len(records) + 1,
            journal_dir=tmp,
        )
        await writer.start()
        started = time.perf_counter()
        for record in records:
            writer.put(record)
        await writer.close(timeout=600)
        return time.perf_counter() - started


async def main(n: int, batch_size: int, through_writer: bool) -> None:
    name = f"npbench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(DSN)
    await admin.execute(f"CREATE SCHEMA {name}")
    try:
        conn = await asyncpg.connect(DSN, server_settings={"search_path": name})
        try:
            await schema.migrate(conn)
            records = _records(n, time.time())
            if through_writer:
                elapsed = await _through_writer(f"{DSN}?search_path={name}", records, batch_size)
            else:
                started = time.perf_counter()
                for i in range(0, n, batch_size):
                    await insert_many(conn, records[i : i + batch_size])
                elapsed = time.perf_counter() - started
            stored = await conn.fetchval("SELECT count(*) FROM usage")
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP SCHEMA {name} CASCADE")
        await admin.close()
    assert stored == n
    how = "UsageWriter + PgRecords" if through_writer else "insert_many"
    print(
        f"{how}: {n} records in batches of {batch_size}: {elapsed:.2f} s, "
        f"{n / elapsed:,.0f} records/s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--through-writer", action="store_true", help="via UsageWriter")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.batch_size, args.through_writer))
