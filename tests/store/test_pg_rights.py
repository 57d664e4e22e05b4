"""Data rights with usage records in PostgreSQL, through the admin API of a real proxy: a
user's and an end user's exports hold their records, an erase leaves none of the user's
(records, aggregates, billing lines) and keeps the totals under a pseudonym, an end user's
erase clears them."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import asyncpg

from nitroproxy.reports.usage import usage_report
from tests.conftest import ADMIN_KEY, ProxyFactory
from tests.services import POSTGRES

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def _count(conn: asyncpg.Connection, n: int) -> None:
    async with asyncio.timeout(10):
        while True:
            if await conn.fetchval("SELECT count(*) FROM usage") >= n:
                return
            await asyncio.sleep(0.05)


async def test_export_and_erase_reach_the_records_in_postgres(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], pg_schema: str
) -> None:
    proxy_config["storage"].update(
        {"backend": "postgres", "url": f"postgresql://127.0.0.1:5432/test?search_path={pg_schema}"}
    )
    proxy = await make_proxy(proxy_config)
    s = proxy.session
    async with s.post(proxy.url + "/admin/users", json={}, headers=ADMIN) as r:
        user = await r.json()
        assert r.status == 201, user
    async with s.post(
        proxy.url + "/admin/keys", json={"name": "erin", "user_id": user["id"]}, headers=ADMIN
    ) as r:
        key = (await r.json())["secret"]
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "user": "eu-7"}
    for _ in range(3):
        async with await proxy.post("/v1/chat/completions", body, key=key) as r:
            assert r.status == 200
    async with await proxy.post("/v1/chat/completions", body) as r:  # another user's call
        assert r.status == 200

    conn = await asyncpg.connect(POSTGRES, server_settings={"search_path": pg_schema})
    try:
        await _count(conn, 4)
        cost = await conn.fetchval("SELECT sum(cost_nanos) FROM usage")
        async with s.get(f"{proxy.url}/admin/users/{user['id']}/export", headers=ADMIN) as r:
            exported = await r.json()
        assert len(exported["usage_records"]) == 3
        async with s.post(
            proxy.url + "/admin/end-users/export", json={"end_user": "eu-7"}, headers=ADMIN
        ) as r:
            assert len((await r.json())["usage_records"]) == 4  # everyone's calls as eu-7

        async with s.delete(f"{proxy.url}/admin/users/{user['id']}", headers=ADMIN) as r:
            assert r.status == 200, await r.text()
            erased = await r.json()
        assert erased["usage_records_deleted"] == 3
        for table in ("usage", "usage_daily", "billing_lines"):
            left = await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE user_id = $1", user["id"]
            )
            assert left == 0, table
        assert await conn.fetchval("SELECT count(*) FROM usage") == 1  # the other user's
        billed = await conn.fetchval("SELECT coalesce(sum(cost_nanos), 0) FROM billing_lines")
        raw = await conn.fetchval("SELECT sum(cost_nanos) FROM usage")
        assert billed + raw == cost  # what is owed is kept, under the pseudonym

        async with s.post(
            proxy.url + "/admin/end-users/erase", json={"end_user": "eu-7"}, headers=ADMIN
        ) as r:
            assert r.status == 200, await r.text()
        assert await conn.fetchval("SELECT count(*) FROM usage WHERE end_user IS NOT NULL") == 0
    finally:
        await conn.close()


async def test_the_usage_api_reads_the_records_in_postgres_as_sqlite_would(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], pg_schema: str
) -> None:
    """The same calls through a SQLite proxy and a PostgreSQL one: the same totals."""
    lite_cfg = copy.deepcopy(proxy_config)
    proxy_config["storage"].update(
        {"backend": "postgres", "url": f"postgresql://127.0.0.1:5432/test?search_path={pg_schema}"}
    )
    answers = {}
    for name, cfg in (("sqlite", lite_cfg), ("postgres", proxy_config)):
        proxy = await make_proxy(cfg)
        for model in ("gpt-test", "gpt-test", "claude-test"):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            async with await proxy.post("/v1/chat/completions", body) as r:
                assert r.status == 200
        async with asyncio.timeout(10):
            while True:
                async with proxy.session.get(
                    proxy.url + "/admin/usage/records", headers=ADMIN
                ) as r:
                    records = (await r.json())["data"]
                if len(records) == 3:
                    break
                await asyncio.sleep(0.05)
        async with proxy.session.get(proxy.url + "/admin/usage?group_by=model", headers=ADMIN) as r:
            rows = (await r.json())["rows"]
        answers[name] = [{k: v for k, v in row.items() if k != "cost_usd"} for row in rows]
        assert {rec["model"] for rec in records} == {"gpt-test", "claude-test"}
    assert answers["postgres"] == answers["sqlite"]
    assert [row["group"] for row in answers["postgres"]] == ["claude-test", "gpt-test"]
    # `nitroproxy usage` reads them there too.
    printed = json.loads(await usage_report(proxy.settings, None, None, "model", "json"))
    assert [row["group"] for row in printed["rows"]] == ["claude-test", "gpt-test"]
