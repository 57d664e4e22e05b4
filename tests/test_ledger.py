"""The ledger's invariants under a seeded random driver, on a real proxy and the mock's
faults, disconnects and concurrency:

1. every request the client saw has exactly one record;
2. recorded completion tokens equal the tokens the client received;
3. spend never passes a budget by more than the stated bound (zero: max_tokens is sent);
4. the sum of record costs equals the spend the budgets saw.

Each mock word is one token, so the client counts what it received by splitting the text.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from typing import Any

import pytest

from nitroproxy.web.appkeys import GATEWAY
from tests.conftest import CLIENT_KEY, Proxy, ProxyFactory, wait_records

MESSAGES = [{"role": "user", "content": "hello"}]
BUDGET_USD = 0.003

# (upstream model, how the client reads it); delays keep disconnects measurable.
MODELS = {
    "ok": ["mock+tokens=8+delay=5"],
    "long": ["mock+tokens=30+delay=25"],
    "quiet": ["mock+tokens=6+nousage"],
    "junk": ["mock+garbage"],
    "drop": ["mock+tokens=12+drop"],
    "down": ["mock+fail500"],
    "busy": ["mock+fail429"],
    "gone": ["mock+reset"],
    "chain": ["mock+fail503", "mock+reset", "mock+tokens=5"],  # two failures, then an answer
}


@dataclass
class Seen:
    request_id: str
    status: int
    tokens: int


def _words(raw: str) -> int:
    total = 0
    for line in raw.splitlines():
        if not line.startswith("data: {"):
            continue
        event = json.loads(line[6:])
        for choice in event.get("choices") or []:
            total += len((choice.get("delta", {}).get("content") or "").split())
    return total


async def _one(proxy: Proxy, rng: random.Random, n: int) -> Seen:
    model = rng.choice(list(MODELS))
    stream = rng.random() < 0.7
    leave_after = rng.choice([None, None, 3]) if stream and model == "long" else None
    request_id = f"ledger-{n}"
    body: dict[str, Any] = {
        "model": model,
        "messages": MESSAGES,
        "max_tokens": 40,
        "stream": stream,
    }
    if rng.random() < 0.5:
        body["stream_options"] = {"include_usage": True} if stream else None
        body = {k: v for k, v in body.items() if v is not None}
    headers = {"x-request-id": request_id}
    async with await proxy.post("/v1/chat/completions", body, headers=headers) as r:
        if r.status != 200:
            await r.read()
            return Seen(request_id, r.status, 0)
        if not stream:
            answer = await r.json()
            text = answer["choices"][0]["message"]["content"] or ""
            return Seen(request_id, 200, len(text.split()))
        if leave_after is None:
            return Seen(request_id, 200, _words((await r.read()).decode()))
        words = 0
        while words < leave_after:
            line = await r.content.readline()
            words += _words(line.decode())
        r.close()
        return Seen(request_id, 200, words)


@pytest.mark.parametrize("seed", [7, 20261201])
async def test_the_ledger_holds_under_faults_disconnects_and_concurrency(
    seed: int, make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    rng = random.Random(seed)
    cfg = proxy_config
    cfg["keys"] = [
        {"name": "test", "key": CLIENT_KEY, "budget_day_usd": BUDGET_USD, "max_concurrent": 6}
    ]
    for name, upstreams in MODELS.items():
        cfg["models"][name] = {
            "deployments": [
                {
                    "name": f"{name}-{i}",
                    "provider": "mock-openai",
                    "model": m,
                    "price": {"input": 2.5, "output": 10},
                }
                for i, m in enumerate(upstreams)
            ]
        }
    cfg["routing"] = {"failure_threshold": 1000}  # no cool-down: every fault stays reachable
    proxy = await make_proxy(cfg)
    seen: list[Seen] = []
    n = 0
    for _ in range(8):  # bursts of concurrent calls
        burst = rng.randint(3, 10)
        seen += await asyncio.gather(*(_one(proxy, rng, n + i) for i in range(burst)))
        n += burst
    records = await wait_records(proxy, len(seen), within=10)
    by_id = {r.request_id: r for r in records}

    # 1. one record per request the client saw
    assert sorted(by_id) == sorted(s.request_id for s in seen)
    assert len(records) == len(seen)
    # 2. recorded completion tokens are delivered tokens
    for s in seen:
        record = by_id[s.request_id]
        assert record.completion_tokens == s.tokens, (s, record)
        if s.status != 200 or record.outcome in ("upstream_error", "rate_limited"):
            assert record.cost_nanos == 0 or record.outcome == "stream_error", record
    # 3. the budget holds (max_tokens sent: zero overshoot)
    spent = sum(r.cost_nanos for r in records)
    assert spent <= round(BUDGET_USD * 1e9)
    assert any(r.outcome == "rate_limited" for r in records) or spent > 0
    # 4. the sum of record costs is the spend the budgets saw, and nothing is left reserved
    await proxy.app[GATEWAY].settler.close()
    limiter = proxy.app[GATEWAY].limiter
    day, _ = limiter.spent("key:cfg:test", records[0].ts)
    assert round(day * 1e9) == spent
    assert limiter.reserved_nanos("key:cfg:test") == 0
    # and every outcome was exercised
    outcomes = {r.outcome for r in records}
    assert {"ok", "upstream_error", "stream_error"} <= outcomes
