"""Metrics after a known mix of traffic, the access line, and readiness."""

from __future__ import annotations

import asyncio
import io
import os
import stat
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from nitroproxy.store.db import open_db
from nitroproxy.telemetry import logs
from tests.conftest import (
    ADMIN_KEY,
    CLIENT_KEY,
    Proxy,
    ProxyFactory,
    add_model,
    wait_records,
)

MESSAGES = [{"role": "user", "content": "hi"}]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(found: dict[tuple[str, Any], float], name: str, **labels: str) -> float:
    return sum(
        v for (n, ls), v in found.items() if n == name and labels.items() <= dict(ls).items()
    )


async def test_metrics_count_exactly_a_known_mix_of_traffic(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    add_model(proxy_config, "flaky", "a+fail500", "b")
    add_model(proxy_config, "broken", "x+fail400")
    proxy_config["keys"].append({"name": "tight", "key": "np-tight-key-0123456789", "rpm": 1})
    proxy = await make_proxy(proxy_config)
    calls = [
        ({"model": "gpt-test", "messages": MESSAGES}, CLIENT_KEY, 200),
        ({"model": "gpt-test", "messages": MESSAGES, "stream": True}, CLIENT_KEY, 200),
        ({"model": "broken", "messages": MESSAGES}, CLIENT_KEY, 400),
        ({"model": "flaky", "messages": MESSAGES}, CLIENT_KEY, 200),
        ({"model": "gpt-test", "messages": MESSAGES}, "np-tight-key-0123456789", 200),
        ({"model": "gpt-test", "messages": MESSAGES}, "np-tight-key-0123456789", 429),
    ]
    for body, key, status in calls:
        async with await proxy.post("/v1/chat/completions", body, key=key) as r:
            assert r.status == status
            await r.read()
    records = await wait_records(proxy, len(calls))
    async with proxy.session.get(proxy.url + "/metrics") as r:
        assert r.status == 200
        found = samples(await r.text())

    assert total(found, "nitroproxy_requests_total") == 6
    assert total(found, "nitroproxy_requests_total", model="gpt-test", status="200") == 3
    assert total(found, "nitroproxy_requests_total", model="gpt-test", status="429") == 1
    assert total(found, "nitroproxy_requests_total", model="broken", status="400") == 1
    assert total(found, "nitroproxy_requests_total", model="flaky", status="200") == 1
    assert total(found, "nitroproxy_fallbacks_total", model="flaky") == 1
    assert total(found, "nitroproxy_retries_total", model="flaky") == 1
    assert total(found, "nitroproxy_upstream_errors_total", provider="mock-openai") == 2
    assert total(found, "nitroproxy_rate_limited_requests_total") == 1
    assert total(found, "nitroproxy_request_duration_seconds_count") == 6
    assert total(found, "nitroproxy_time_to_first_token_seconds_count") == 1
    assert total(found, "nitroproxy_usage_records_written_total") == 6
    assert total(found, "nitroproxy_active_streams") == 0
    for kind, field in [("prompt", "prompt_tokens"), ("completion", "completion_tokens")]:
        assert total(found, "nitroproxy_tokens_total", kind=kind) == sum(
            getattr(rec, field) for rec in records
        )
    expected_cost = sum(rec.cost_nanos for rec in records) / 1e9
    assert abs(total(found, "nitroproxy_cost_usd_total") - expected_cost) < 1e-12
    assert not any("key" in dict(labels) for _, labels in found)  # no key ids by default
    assert total(found, "nitroproxy_event_loop_tasks") > 0


async def test_access_line_has_every_field_and_no_secret_or_prompt(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    out = io.StringIO()
    logs.configure_logging(level="info", fmt="json", stream=out)
    canary = "CANARY-prompt-7c1f0e"
    fake_key = "sk-live-CANARYKEY0123456789abcdef0123456789"
    proxy = await make_proxy(proxy_config)
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": canary}]}
    async with await proxy.post("/v1/chat/completions", body) as r:
        assert r.status == 200
    async with await proxy.post("/v1/chat/completions", body, key=fake_key) as r:
        assert r.status == 401
    await wait_records(proxy, 1)
    logs.flush()
    text = out.getvalue()
    logs.configure_logging(level="info", fmt="json")
    assert canary not in text and fake_key not in text and CLIENT_KEY not in text
    lines = [orjson.loads(line) for line in text.splitlines() if '"event":"request"' in line]
    assert len(lines) == 1
    line = lines[0]
    for field in (
        "request_id",
        "key_id",
        "model",
        "provider",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms",
        "ttft_ms",
        "attempts",
    ):
        assert field in line, field
    assert line["status"] == 200 and line["key_id"] == "cfg:test"


async def test_readyz_turns_503_while_usage_records_cannot_be_written(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["storage"].update(busy_timeout=0.05, journal_after=0.05)
    proxy = await make_proxy(proxy_config)
    async with proxy.session.get(proxy.url + "/readyz") as r:
        assert r.status == 200
        assert (await r.json())["status"] == "ready"
    db = Path(proxy.settings.storage.path)
    holder = await open_db(db)  # another process holds the write lock past busy_timeout
    await holder.execute("BEGIN IMMEDIATE")
    try:
        body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
        async with await proxy.post("/v1/chat/completions", body) as r:
            assert r.status == 200  # memory and the journal still take its record
        async with asyncio.timeout(5):
            while True:
                async with proxy.session.get(proxy.url + "/readyz") as r:
                    if r.status == 503:
                        checks = (await r.json())["checks"]
                        break
                await asyncio.sleep(0.02)
        assert checks["database"] == "not writable"
        assert checks["journal"] == "ok"
    finally:
        await holder.execute("ROLLBACK")
        await holder.close()
    await wait_records(proxy, 1)
    async with asyncio.timeout(5):
        while True:
            async with proxy.session.get(proxy.url + "/readyz") as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.02)
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(db.parent).st_mode) in (0o700, 0o755)  # tmp_path pre-exists


async def test_healthz_and_admin_status(proxy: Proxy) -> None:
    async with proxy.session.get(proxy.url + "/healthz") as r:
        assert r.status == 200
    async with proxy.session.get(proxy.url + "/admin/status", headers=proxy.headers()) as r:
        assert r.status == 403
    async with proxy.session.get(
        proxy.url + "/admin/status", headers=proxy.headers(ADMIN_KEY)
    ) as r:
        assert r.status == 200
        body = await r.json()
    assert "primary" in body["deployments"]
    assert body["deployments"]["primary"]["state"] == "healthy"
