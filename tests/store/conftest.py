"""A PostgreSQL schema of the test's own on the machine's server (dropped afterwards), for
the tests of ``storage.backend: postgres``; skipped, naming it, without PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.services import POSTGRES, POSTGRES_MISSING, postgres_answers


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    if not postgres_answers():
        pytest.skip(POSTGRES_MISSING)
    name = f"nptest_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES)
    await admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        await admin.execute(f"DROP SCHEMA {name} CASCADE")
        await admin.close()
