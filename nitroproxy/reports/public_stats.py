"""Public statistics read from the ``usage`` table, with a short-lived cached result.

The query selects only what ``core.stats`` may see (model, provider, time, outcome and the
two speed measurements) plus the record's subject (its user, or its key when it has no
user), which is replaced here by a small number used only to count distinct people: no key,
user, address or request id leaves this module. Subjects who object to analytics
(``store.preferences``) are left out in the query itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiosqlite
import orjson

from nitroproxy.config import Settings
from nitroproxy.core import stats
from nitroproxy.store.preferences import ANALYTICS_OBJECTORS_SQL, SUBJECT_SQL

__all__ = ["PublicStats", "load_rows", "public_pairs", "render"]

_COUNTED = ", ".join(f"'{o}'" for o in sorted(stats.COUNTED_OUTCOMES))
# Cache hits are answered without a provider, so they measure nothing about one. The range
# uses the usage_ts index.
_SQL = f"""
SELECT model, provider, ts, outcome, ttft_ms, output_tps, {SUBJECT_SQL} FROM usage
WHERE ts >= ? AND ts <= ? AND provider IS NOT NULL AND cache_hit = 0
    AND outcome IN ({_COUNTED})
    AND {SUBJECT_SQL} NOT IN ({ANALYTICS_OBJECTORS_SQL})
"""

_DEFINITIONS = {
    "requests": "requests that reached a provider and ended in success or a provider-side "
    "failure (upstream error, timeout, upstream rate limit, broken stream); client errors, "
    "client disconnects and cache hits are not counted",
    "success_rate": "successful requests / requests",
    "ttft_ms": "time to first token of successful requests, milliseconds, as measured by the proxy",
    "output_tokens_per_s": "completion tokens per second after the first token, successful "
    "requests",
    "suppressed": "true when the bucket has fewer than min_bucket requests or comes from "
    "fewer than min_users distinct people (users, or keys without a user): then no number "
    "is shown; a speed figure is null when fewer than min_bucket requests from min_users "
    "people measured it. People who object to analytics are never counted",
}


def public_pairs(settings: Settings) -> list[tuple[str, str]]:
    """Every (public model, provider) the config routes to, in config order."""
    pairs = (
        (model.name, d.provider) for model in settings.models.values() for d in model.deployments
    )
    return list(dict.fromkeys(pairs))


async def load_rows(conn: aiosqlite.Connection, *, start: float, end: float) -> list[Any]:
    """The counted records with ``start <= ts <= end``; one read statement, so safe on the
    shared connection."""
    return list(await conn.execute_fetchall(_SQL, (start, end)))


def render(
    settings: Settings, rows: Sequence[Sequence[Any]] | None, *, now: float
) -> dict[str, Any]:
    """The response body; ``rows`` None means there is no usage table (storage disabled)."""
    body: dict[str, Any] = {
        "object": "stats",
        "generated_at": int(now),
        "min_bucket": settings.stats.min_bucket,
        "min_users": settings.stats.min_users,
        "routing": (
            "`:nitro` routing reads the same per-request measurements: every usage record's "
            "ttft_ms and output_tps from a successful request also updates its deployment's "
            f"moving average (EWMA, alpha {settings.routing.ewma_alpha}) that ranks "
            "deployments; this endpoint takes medians and p90 of those values as stored"
        ),
    }
    if rows is None:
        body["available"] = False
        body["reason"] = "storage is disabled (storage.enabled: false): no request records"
        body["windows"] = {}
        return body
    people: dict[str, int] = {}  # subject -> a number, so no id goes further
    samples = (
        stats.Sample(
            str(r[0]),
            str(r[1]),
            float(r[2]),
            str(r[3]),
            r[4],
            r[5],
            people.setdefault(str(r[6]), len(people)),
        )
        for r in rows
    )
    buckets = stats.summarize(
        public_pairs(settings),
        samples,
        now=now,
        min_bucket=settings.stats.min_bucket,
        min_users=settings.stats.min_users,
    )
    body["available"] = True
    body["windows"] = {
        name: {
            "seconds": int(length),
            # The sweeper keeps raw records at least retention.requests; older ones are
            # rolled up into daily totals that have no speed figures.
            "complete": settings.retention.requests >= length,
            "buckets": [stats.bucket_json(b) for b in buckets[name]],
        }
        for name, length in stats.WINDOWS.items()
    }
    body["definitions"] = _DEFINITIONS
    return body


class PublicStats:
    """Computes the stats body at most once per ``ttl`` seconds; concurrent requests during
    a refresh wait for it instead of each running the query."""

    def __init__(self, settings: Settings, *, ttl: float = 5.0) -> None:
        self._settings = settings
        self._ttl = ttl
        self._lock = asyncio.Lock()
        self._body = b""
        self._expires = float("-inf")

    async def get(self, conn: aiosqlite.Connection | None, *, now: float, mono: float) -> bytes:
        """The JSON body; ``now`` is wall-clock time (the windows), ``mono`` a monotonic
        clock (the cache)."""
        if mono < self._expires:
            return self._body
        async with self._lock:
            if mono < self._expires:
                return self._body
            rows = None
            if conn is not None:
                start = now - max(stats.WINDOWS.values())
                rows = await load_rows(conn, start=start, end=now)
            # Sorting a day of samples is CPU work: keep it off the event loop.
            body = await asyncio.to_thread(render, self._settings, rows, now=now)
            self._body = orjson.dumps(body)
            self._expires = mono + self._ttl
        return self._body
