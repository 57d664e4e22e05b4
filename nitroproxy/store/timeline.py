"""Usage over time for the dashboard's charts: per time bucket, requests, errors, tokens,
cost, and nearest-rank p50/p99 of latency and time to first token; and usage per
deployment, which only raw rows know.

Read from raw ``usage`` rows only: the daily roll-up keeps no latencies, so the charts cover
the requests-retention window, while ``store.usage.query_usage`` (the usage tables) adds the
roll-ups. Percentiles are ranked by SQLite's window functions in aiosqlite's thread, so the
event loop only receives one row per bucket and percentile, however many rows the range has.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from nitroproxy.store.usage import ERROR_SQL, TOKEN_COLUMNS, UsageRow


# Bucket widths a chart may use, in seconds: the smallest that gives at most MAX_BUCKETS.
class Rows(Protocol):
    """What these reports read through: a SQLite connection, or ``store.pg.reports``'s
    ``PgQueries`` over records kept in PostgreSQL."""

    async def execute_fetchall(self, sql: str, parameters: Any = ...) -> Iterable[Any]: ...


STEPS: tuple[int, ...] = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)
MAX_BUCKETS = 120
PERCENTILES: tuple[int, ...] = (50, 99)


def step_for(start: float, end: float) -> int:
    """The bucket width for ``[start, end)``: at most ``MAX_BUCKETS`` buckets, or the widest."""
    span = max(end - start, 1.0)
    for step in STEPS:
        if span / step <= MAX_BUCKETS:
            return step
    return STEPS[-1]


@dataclass(frozen=True, slots=True)
class Point:
    """One bucket, starting at ``ts`` (Unix seconds, a multiple of the step). Latencies are
    milliseconds; a percentile is None where the bucket has no value to rank."""

    ts: int
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_nanos: int
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "requests": self.requests,
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_nanos / 1e9, 9),
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "ttft_p50_ms": self.ttft_p50_ms,
            "ttft_p99_ms": self.ttft_p99_ms,
        }


def _where(key_id: str | None) -> str:
    return "ts >= :start AND ts < :end" + (" AND key_id = :key_id" if key_id is not None else "")


_BUCKET = "CAST(ts / :step AS INTEGER) * :step"


def _totals_sql(key_id: str | None) -> str:
    return f"""
    SELECT {_BUCKET} AS bucket, COUNT(*), SUM({ERROR_SQL}), SUM(prompt_tokens),
        SUM(completion_tokens), SUM(cost_nanos)
    FROM usage WHERE {_where(key_id)} GROUP BY bucket ORDER BY bucket
    """


def _percentile_sql(column: str, key_id: str | None) -> str:
    # Nearest rank: the value at rank ceil(p/100 * n), in integer arithmetic.
    wanted = " OR ".join(f"rn = (n * {p} + 99) / 100" for p in PERCENTILES)
    return f"""
    SELECT bucket, n, rn, value FROM (
        SELECT {_BUCKET} AS bucket, {column} AS value,
            ROW_NUMBER() OVER (PARTITION BY {_BUCKET} ORDER BY {column}) AS rn,
            COUNT(*) OVER (PARTITION BY {_BUCKET}) AS n
        FROM usage WHERE {_where(key_id)} AND {column} IS NOT NULL
    ) WHERE {wanted}
    """


async def _percentiles(
    conn: Rows, column: str, key_id: str | None, params: dict[str, Any]
) -> dict[int, dict[int, float]]:
    """bucket -> percentile -> value."""
    out: dict[int, dict[int, float]] = {}
    for bucket, n, rn, value in await conn.execute_fetchall(
        _percentile_sql(column, key_id), params
    ):
        for p in PERCENTILES:
            if rn == (n * p + 99) // 100:
                out.setdefault(int(bucket), {})[p] = round(float(value), 2)
    return out


async def query_timeline(
    conn: Rows,
    *,
    start: float,
    end: float,
    step: int,
    key_id: str | None = None,
) -> list[Point]:
    """One point per bucket of ``step`` seconds in ``[start, end)`` that has a record, oldest
    first; ``key_id`` keeps one key's records only."""
    if step <= 0:
        raise ValueError("step must be > 0")
    params: dict[str, Any] = {"start": start, "end": end, "step": step, "key_id": key_id}
    rows = await conn.execute_fetchall(_totals_sql(key_id), params)
    latency = await _percentiles(conn, "latency_ms", key_id, params)
    ttft = await _percentiles(conn, "ttft_ms", key_id, params)
    points = []
    for bucket, requests, errors, prompt, completion, cost in rows:
        b = int(bucket)
        lat, first = latency.get(b, {}), ttft.get(b, {})
        points.append(
            Point(
                ts=b,
                requests=int(requests),
                errors=int(errors or 0),
                prompt_tokens=int(prompt or 0),
                completion_tokens=int(completion or 0),
                cost_nanos=int(cost or 0),
                latency_p50_ms=lat.get(50),
                latency_p99_ms=lat.get(99),
                ttft_p50_ms=first.get(50),
                ttft_p99_ms=first.get(99),
            )
        )
    return points


async def usage_by_deployment(
    conn: Rows,
    *,
    start: float | None,
    end: float | None,
    key_id: str | None = None,
    user_id: str | None = None,
) -> list[UsageRow]:
    """Totals per deployment over ``[start, end)``, in ``query_usage``'s shape. Raw rows only:
    the daily roll-up keeps no deployment, so this covers the requests-retention window."""
    clauses, params = [], list[Any]()
    for clause, value in (
        ("ts >= ?", start),
        ("ts < ?", end),
        ("key_id = ?", key_id),
        ("user_id = ?", user_id),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    sums = ", ".join(f"SUM({c})" for c in TOKEN_COLUMNS)
    sql = f"""
    SELECT COALESCE(deployment, ''), COUNT(*), SUM({ERROR_SQL}), {sums}
    FROM usage WHERE {" AND ".join(clauses) or "1"} GROUP BY 1 ORDER BY 1
    """
    rows = await conn.execute_fetchall(sql, params)
    return [UsageRow(str(r[0]), *(int(v or 0) for v in r[1:])) for r in rows]
