"""The response cache on the request path: decide, serve a hit, store a complete answer.

The cache is the only place prompt-derived data may live, so every step here is opt-in:
no ``cache`` component (the default), no key, or mode ``skip`` means nothing is read or
written, and the response says ``x-nitroproxy-cache: skip``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from nitroproxy.cache.store import CachedEntry, ResponseCache
from nitroproxy.core import cache_policy, pricing, replay, sse
from nitroproxy.core.accounting import settle
from nitroproxy.core.assembler import StreamAssembler
from nitroproxy.core.cache_policy import HEADER, CacheResult, CacheScope, Mode
from nitroproxy.core.types import Outcome
from nitroproxy.proxy.gateway import Call
from nitroproxy.web.appkeys import CACHE, SETTINGS

SAVED_HEADER = "x-nitroproxy-cache-saved-usd"


@dataclass(slots=True)
class CachePlan:
    cache: ResponseCache
    scope: CacheScope
    material: bytes
    mode: Mode

    def assembler(self, call: Call) -> StreamAssembler:
        return StreamAssembler(call.endpoint, max_bytes=self.cache.max_entry_bytes)


def plan(request: web.Request, call: Call) -> CachePlan | None:
    """What this call may do with the cache; a bad header is a 400 even with no cache."""
    header = request.headers.get(HEADER)
    cache = request.app.get(CACHE)
    principal = call.principal
    scope = None
    if cache is not None:
        scope = cache_policy.scope_for(
            principal.key_id, principal.user_id, request.app[SETTINGS].cache.scope
        )
    mode = cache_policy.decide(
        header, key_opt_in=principal.cache, body=call.body, endpoint=call.endpoint
    )
    if cache is None or scope is None or mode is Mode.SKIP:
        call.extra_headers[HEADER] = CacheResult.SKIP.value
        return None
    call.extra_headers[HEADER] = CacheResult.MISS.value
    material = cache_policy.canonical_request(call.endpoint, call.model.name, call.body)
    return CachePlan(cache, scope, material, mode)


async def serve_hit(
    request: web.Request, call: Call, cache_plan: CachePlan
) -> web.StreamResponse | None:
    """The stored answer, as JSON or replayed as a stream; None on a miss."""
    if cache_plan.mode is not Mode.USE:
        return None
    entry = await cache_plan.cache.lookup(cache_plan.scope, cache_plan.material)
    if entry is None or entry.endpoint is not call.endpoint:
        return None
    tally = call.tally
    tally.fail(200, Outcome.CACHE_HIT, None)
    tally.completed = True
    call.extra_headers[HEADER] = CacheResult.HIT.value
    call.extra_headers[SAVED_HEADER] = f"{entry.cost_nanos / 1e9:.9f}"
    tally.saved_nanos = entry.cost_nanos
    headers = {"x-request-id": call.request_id, **call.extra_headers}
    if not call.stream:
        return web.Response(
            body=orjson.dumps(entry.body), content_type="application/json", headers=headers
        )
    response = web.StreamResponse(status=200, headers={**sse.HEADERS, **headers})
    await response.prepare(request)
    for event in replay.replay_stream(call.endpoint, entry.body, include_usage=call.wants_usage):
        await response.write(event)
    return response


def store(cache_plan: CachePlan, call: Call, body: dict[str, Any] | None) -> None:
    """Queue a complete, successful answer (never blocks; a full queue drops it)."""
    if body is None or call.tally.outcome is not Outcome.OK:
        return
    tally = call.tally
    usage, _ = settle(tally)
    cost = pricing.cost_nanos(tally.price, usage) if tally.price is not None else 0
    cache_plan.cache.store(
        cache_plan.scope,
        cache_plan.material,
        CachedEntry(
            endpoint=call.endpoint,
            body=body,
            usage=usage,
            cost_nanos=cost,
            model=call.model.name,
            provider=tally.provider,
            deployment=tally.deployment,
            upstream_model=tally.upstream_model,
        ),
    )
