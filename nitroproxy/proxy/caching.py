"""The response cache on the call path: decide, look up, and store a complete answer.

The cache is the only place prompt-derived data may live, so every step here is opt-in: no
cache component (the default), no key, or mode ``skip`` means nothing is read or written,
and the response says ``x-nitroproxy-cache: skip``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nitroproxy.cache.store import CachedEntry, ResponseCache
from nitroproxy.core import cache_policy
from nitroproxy.core.cache_policy import CacheResult, CacheScope, Mode
from nitroproxy.core.types import Usage
from nitroproxy.proxy.call import Call

HEADER = cache_policy.HEADER
SAVED_HEADER = "x-nitroproxy-cache-saved-usd"


@dataclass(slots=True)
class CachePlan:
    cache: ResponseCache
    scope: CacheScope
    material: bytes
    mode: Mode


def plan(
    cache: ResponseCache | None, call: Call, scope_setting: str, headers: dict[str, str]
) -> CachePlan | None:
    """What this call may do with the cache; writes the answer's cache header into
    ``headers``. A bad header is a 400 even with no cache."""
    principal = call.principal
    mode = cache_policy.decide(
        call.cache_header,
        key_opt_in=principal.cache,
        body=call.body,
        endpoint=call.endpoint,
        refused=principal.cache_refused,  # the person's opt-out beats key and header
    )
    scope = None
    if cache is not None:
        scope = cache_policy.scope_for(principal.key_id, principal.user_id, scope_setting)
    if cache is None or scope is None or mode is Mode.SKIP:
        headers[HEADER] = CacheResult.SKIP.value
        return None
    headers[HEADER] = CacheResult.MISS.value
    material = cache_policy.canonical_request(call.endpoint, call.model.name, call.body)
    return CachePlan(cache, scope, material, mode)


async def lookup(cache_plan: CachePlan, call: Call) -> CachedEntry | None:
    """The stored answer for this call, or None on a miss (or when refreshing)."""
    if cache_plan.mode is not Mode.USE:
        return None
    entry = await cache_plan.cache.lookup(cache_plan.scope, cache_plan.material)
    if entry is None or entry.endpoint is not call.endpoint:
        return None
    return entry


def store(
    cache_plan: CachePlan, call: Call, body: dict[str, Any], usage: Usage, cost_nanos: int
) -> None:
    """Queue a complete, successful answer (never blocks; a full queue drops it)."""
    meter = call.meter
    cache_plan.cache.store(
        cache_plan.scope,
        cache_plan.material,
        CachedEntry(
            endpoint=call.endpoint,
            body=body,
            usage=usage,
            cost_nanos=cost_nanos,
            model=call.model.name,
            provider=meter.provider,
            deployment=meter.deployment,
            upstream_model=meter.upstream_model,
        ),
    )
