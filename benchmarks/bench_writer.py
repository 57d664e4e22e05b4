"""Throughput of UsageWriter: ``python -m benchmarks.bench_writer [-n N] [--batch-size B]
[--journal off|durable|spill|all]``.

Writes N records through the writer into a temporary file database and prints records/s,
measured from the first put until close() returns (everything committed). Target on a
2-core machine: >= 20,000 records/s. With ``--journal``:

- ``off``: ``put`` only (the default; no journal directory).
- ``durable``: ``put_durable`` for every record (``storage.journal_before_answer``): each is
  appended to the journal and fsync-ed before it counts as handed over, 64 callers at a time
  sharing fsyncs, then written to the database as usual.
- ``spill``: the database is locked by another connection for the whole run, so every record
  goes to the journal; then the lock is released and the time until the journal is replayed
  into the database is measured too (records/s of the replay).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from nitroproxy.core.types import UsageRecord
from nitroproxy.store.db import open_db
from nitroproxy.store.writer import UsageWriter

_MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet", "llama-3-70b")
_PROVIDERS = ("openai", "anthropic", "together", None)


def _records(n: int, start: float) -> list[UsageRecord]:
    return [
        UsageRecord(
            id=f"usage-{i:08d}",
            request_id=f"req-{i:08d}",
            ts=start + i * 0.001,
            key_id=f"key-{i % 50}",
            user_id=f"user-{i % 20}",
            model=_MODELS[i % 4],
            provider=_PROVIDERS[i % 4],
            deployment=f"dep-{i % 8}",
            upstream_model=_MODELS[i % 4],
            endpoint="chat.completions",
            stream=bool(i % 2),
            status=200 if i % 17 else 502,
            outcome="ok" if i % 17 else "upstream_error",
            error_class=None if i % 17 else "UpstreamError",
            prompt_tokens=100 + i % 900,
            completion_tokens=20 + i % 300,
            cached_tokens=i % 64,
            cache_write_tokens=0,
            reasoning_tokens=i % 10,
            usage_source="provider",
            cost_nanos=1_000 * (i % 5000),
            latency_ms=150.0 + i % 100,
            ttft_ms=40.0,
            output_tps=85.5,
            attempts=1,
            client_ip="10.0.0.1",
            user_agent="bench/1.0",
        )
        for i in range(n)
    ]


async def _run(n: int, batch_size: int, path: Path) -> tuple[float, int, int]:
    records = _records(n, start=time.time() - 3600)
    writer = UsageWriter(path, batch_size=batch_size)
    await writer.start()
    chunk = 1_000
    began = time.perf_counter()
    for offset in range(0, n, chunk):
        # Yield like a busy server would between requests; never outrun the bounded queue.
        while writer.queue_depth > 50_000 - chunk:  # noqa: ASYNC110 (the writer has no event)
            await asyncio.sleep(0.001)
        for record in records[offset : offset + chunk]:
            writer.put(record)
        await asyncio.sleep(0)
    await writer.close(timeout=60)
    elapsed = time.perf_counter() - began

    conn = await open_db(path)
    try:
        rows = await conn.execute_fetchall("SELECT COUNT(*) FROM usage")
    finally:
        await conn.close()
    stored = next(iter(rows))[0]
    return elapsed, writer.dropped, stored


async def _run_durable(n: int, batch_size: int, path: Path) -> tuple[float, int, int]:
    records = _records(n, start=time.time() - 3600)
    writer = UsageWriter(path, batch_size=batch_size, journal_dir=path.parent / "journal")
    await writer.start()
    callers = 64  # requests finishing at the same time share one fsync
    began = time.perf_counter()
    for offset in range(0, n, callers):
        results = await asyncio.gather(
            *(writer.put_durable(r) for r in records[offset : offset + callers])
        )
        assert all(results)
    await writer.close(timeout=60)
    elapsed = time.perf_counter() - began
    return elapsed, writer.dropped, await _stored(path)


async def _run_spill(n: int, batch_size: int, path: Path) -> tuple[float, float, int]:
    """(seconds to hand every record over and see it journalled, seconds to replay, stored)"""
    records = _records(n, start=time.time() - 3600)
    writer = UsageWriter(
        path,
        batch_size=batch_size,
        busy_timeout=0.01,
        journal_dir=path.parent / "journal",
        journal_after=0.0,
        retry_max=0.05,
    )
    await writer.start()
    holder = await open_db(path)
    await holder.execute("BEGIN IMMEDIATE")
    began = time.perf_counter()
    for offset in range(0, n, 1000):
        for record in records[offset : offset + 1000]:
            writer.put(record)
        await asyncio.sleep(0)
    while writer.journaled + batch_size < n:  # noqa: ASYNC110 (the writer has no event)
        await asyncio.sleep(0.001)
    journalled = time.perf_counter() - began
    await holder.execute("ROLLBACK")
    await holder.close()
    began = time.perf_counter()
    assert await writer.flush(timeout=120)
    replayed = time.perf_counter() - began
    await writer.close(timeout=60)
    return journalled, replayed, await _stored(path)


async def _stored(path: Path) -> int:
    conn = await open_db(path)
    try:
        rows = await conn.execute_fetchall("SELECT COUNT(*) FROM usage")
    finally:
        await conn.close()
    return int(next(iter(rows))[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--journal", choices=["off", "durable", "spill", "all"], default="off")
    args = parser.parse_args()
    modes = ["off", "durable", "spill"] if args.journal == "all" else [args.journal]
    for mode in modes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.db"
            if mode == "spill":
                spill = _run_spill(args.n, args.batch_size, path)
                journalled, replayed, stored = asyncio.run(spill)
                print(
                    f"bench_writer[spill]: {args.n:,} records journalled while the database "
                    f"was locked: {args.n / journalled:,.0f} records/s; replayed "
                    f"{stored:,} into it: {stored / replayed:,.0f} records/s"
                )
                continue
            run = _run_durable if mode == "durable" else _run
            elapsed, dropped, stored = asyncio.run(run(args.n, args.batch_size, path))
        print(
            f"bench_writer[{mode}]: {stored:,} of {args.n:,} records stored in {elapsed:.2f}s: "
            f"{stored / elapsed:,.0f} records/s (batch_size={args.batch_size}, dropped={dropped})"
        )


if __name__ == "__main__":
    main()
