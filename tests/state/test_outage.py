"""Redis stopped mid-load under two real processes: the configured policy holds (a budget
fails closed with a 503, requests/min fails open), no request waits past the timeout, and
once Redis is back the shared limits are in force again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.services import PrivateRedis
from tests.state.fleet import Fleet, Mock, fleet_config

OPEN_KEY = "np-outage-open-key-abcdefghijklmnopqrstuvwxyz012345678"
CLOSED_KEY = "np-outage-closed-key-abcdefghijklmnopqrstuvwxyz01234567"
RESUME_KEY = "np-outage-resume-key-abcdefghijklmnopqrstuvwxyz01234567"
BODY = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def outage_fleet(private_redis: PrivateRedis, tmp_path: Path) -> Iterator[Fleet]:
    mock = Mock(tmp_path)
    mock.wait()
    cfg = fleet_config(mock.url, tmp_path / "usage.db", private_redis.url, "nptest-outage")
    cfg["state"].update({"timeout": 0.1, "retry_interval": 0.2})
    cfg["keys"] = [
        {"name": "open", "key": OPEN_KEY, "rpm": 100_000},
        {"name": "closed", "key": CLOSED_KEY, "budget_day_usd": 100.0},
        {"name": "resume", "key": RESUME_KEY, "rpm": 10},
    ]
    fleet = Fleet(tmp_path, cfg, 2)
    try:
        fleet.wait()
        yield fleet
    finally:
        fleet.stop()
        mock.stop()


async def test_redis_stopped_mid_load_policy_holds_and_limits_resume(
    outage_fleet: Fleet, private_redis: PrivateRedis
) -> None:
    fleet = outage_fleet
    seen: list[tuple[float, str, int, str | None, float]] = []
    stop = asyncio.Event()

    async def load(session: aiohttp.ClientSession, url: str, key: str, name: str) -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            async with session.post(
                url + "/v1/chat/completions",
                json=BODY,
                headers={"Authorization": f"Bearer {key}"},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as r:
                answer = await r.json()
            code = answer.get("error", {}).get("code") if r.status != 200 else None
            seen.append((t0, name, r.status, code, time.monotonic() - t0))
            await asyncio.sleep(0.01)

    async with aiohttp.ClientSession() as session:
        workers = [
            asyncio.create_task(load(session, url, key, name))
            for url in fleet.urls
            for key, name in ((OPEN_KEY, "open"), (CLOSED_KEY, "closed"))
        ]
        await asyncio.sleep(1.0)
        down_at = time.monotonic()
        private_redis.stop()
        await asyncio.sleep(1.5)
        restart_at = time.monotonic()
        await asyncio.to_thread(private_redis.start)  # returns once it answers PING
        up_at = time.monotonic()
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*workers)

        # Limits resume: 20 requests over both processes, 10 allowed.
        statuses = []
        for i in range(20):
            async with session.post(
                fleet.urls[i % 2] + "/v1/chat/completions",
                json=BODY,
                headers={"Authorization": f"Bearer {RESUME_KEY}"},
            ) as r:
                statuses.append(r.status)
    assert statuses.count(200) == 10, statuses

    # Nobody waited on the dead Redis: refusals came at once, and nothing hung.
    assert max(d for _, name, status, _, d in seen if status == 503) < 0.5
    assert max(d for *_, d in seen) < 3.0
    before = [s for s in seen if s[0] + s[4] < down_at]  # answered before the stop
    during = [s for s in seen if down_at + 0.3 < s[0] < restart_at]
    after = [s for s in seen if s[0] > up_at + 1.0]
    assert before and during and after
    assert {s[2] for s in before} == {200}
    assert {s[2] for s in during if s[1] == "open"} == {200}
    assert {(s[2], s[3]) for s in during if s[1] == "closed"} == {(503, "limits_unavailable")}
    late = [(round(s[0] - up_at, 3), s[1], s[2], s[3]) for s in after if s[2] != 200]
    assert not late, late  # answered again by the shared limiter, not refused
