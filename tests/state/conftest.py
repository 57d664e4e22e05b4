"""Real Redis for the shared-state tests: the machine's (127.0.0.1:6379) under a prefix of
the test's own, or a private ``redis-server`` on a free port that a test may stop and start.
Without them the tests skip, naming what is missing."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from tests.services import REDIS_MISSING, SHARED_REDIS, PrivateRedis, redis_answers


@pytest.fixture
def redis_url() -> str:
    if not redis_answers():
        pytest.skip(REDIS_MISSING)
    return SHARED_REDIS


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own, deleted afterwards, so runs never collide."""
    name = f"nptest-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{name}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (needed to stop Redis mid-test)")
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
