"""Response cache policy, sans I/O: whether a request may use the cache, in which tenant
scope, and the canonical bytes that identify its answer.

Modes. The ``x-nitroproxy-cache`` request header wins: ``use`` (serve a stored answer, or
fetch and store one), ``refresh`` (skip the lookup, fetch and store the new answer), ``skip``
(neither). Without the header a key that opted in (``keys[].cache: true``) gets ``use``;
any other key gets ``skip``. Above both: a person who opted out of the cache (their
preference ``cache: false``) always gets ``skip``, whatever the key or the header says.

Sampling policy. A cache turns a sampled answer into a fixed one. A request *explicitly* asks
for variety when it sets ``temperature`` above 0 without a ``seed``, or asks for several
choices (``n`` or ``best_of`` above 1). Such a request uses the cache only when it sends
``x-nitroproxy-cache: use`` (or ``refresh``) itself; a key's opt-in alone never applies to it.
A request that leaves ``temperature`` unset is not explicit: the key's opt-in covers it. A
request with ``temperature: 0``, or with a ``seed``, is cached under opt-in, and the seed is
part of what identifies the answer. Parameters are compared as sent: an unset temperature
and an explicit provider default are different requests.

Never cached: requests for logprobs, audio output, OpenAI stored completions (``store:
true``, a side effect a hit would skip), and Anthropic requests with ``mcp_servers`` or a
``container`` (server-side tools with effects outside the answer). Callers without a key
(``auth.required: false``) have no scope, so nothing is ever shared across tenants.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nitroproxy.core.errors import InvalidRequest
from nitroproxy.core.types import Endpoint

HEADER = "x-nitroproxy-cache"
"""Request header (``use|refresh|skip``) and response header (``hit|miss|skip``)."""

# Bumped when the material's layout changes, so old entries simply stop matching.
_MATERIAL_VERSION = 1

# Fields that change routing, accounting or delivery, never the answer.
_EXCLUDED = frozenset(
    {
        "model",  # replaced by the public model name, without a routing suffix
        "stream",
        "stream_options",
        "user",
        "metadata",
        "provider",
        "service_tier",
        "store",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)


class Mode(StrEnum):
    USE = "use"
    REFRESH = "refresh"
    SKIP = "skip"


class CacheResult(StrEnum):
    """The ``x-nitroproxy-cache`` response header. ``refresh`` answers ``miss``."""

    HIT = "hit"
    MISS = "miss"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class CacheScope:
    """Whose entries a request may read and write. ``name`` goes into every lookup hash;
    ``key_id`` and ``user_id`` name the entry's owners, so revoking the key or erasing the
    user removes it whatever the scope setting was."""

    name: str
    key_id: str
    user_id: str | None


def scope_for(key_id: str | None, user_id: str | None, scope_setting: str) -> CacheScope | None:
    """``key:<id>``, or ``user:<id>`` under ``cache.scope: user`` when the key has a user.
    None for an anonymous caller: it has no tenant, so it gets no cache."""
    if key_id is None:
        return None
    if scope_setting == "user" and user_id is not None:
        return CacheScope(f"user:{user_id}", key_id, user_id)
    return CacheScope(f"key:{key_id}", key_id, user_id)


def mode_from(header: str | None, key_opt_in: bool) -> Mode:
    """The requested mode; an empty header counts as absent."""
    value = (header or "").strip().lower()
    if not value:
        return Mode.USE if key_opt_in else Mode.SKIP
    try:
        return Mode(value)
    except ValueError:
        raise InvalidRequest(
            f"'{HEADER}' must be one of use, refresh, skip", param=HEADER
        ) from None


def decide(
    header: str | None,
    *,
    key_opt_in: bool,
    body: Mapping[str, Any],
    endpoint: Endpoint,
    refused: bool = False,
) -> Mode:
    """``mode_from``, then the body rules: not ``cacheable`` → skip; an explicitly sampled
    request without the header → skip (see the module docstring). ``refused``: the caller's
    person opted out of the cache → skip (a bad header is still a 400)."""
    mode = mode_from(header, key_opt_in)
    if refused or mode is Mode.SKIP or not cacheable(body, endpoint):
        return Mode.SKIP
    explicit = bool((header or "").strip())
    if not explicit and sampled(body):
        return Mode.SKIP
    return mode


def sampled(body: Mapping[str, Any]) -> bool:
    """The request explicitly asks for a random answer: temperature > 0 without a seed, or
    more than one choice."""
    if _number(body.get("temperature")) > 0 and body.get("seed") is None:
        return True
    return _number(body.get("n")) > 1 or _number(body.get("best_of")) > 1


def cacheable(body: Mapping[str, Any], endpoint: Endpoint) -> bool:
    """False when a stored answer could not stand in for a fresh one (see the docstring)."""
    if body.get("store") is True:
        return False
    if endpoint is Endpoint.RESPONSES or endpoint.counts_tokens:
        # Responses answers have no replay yet, and counting costs nothing to repeat.
        return False
    if endpoint is Endpoint.CHAT:
        modalities = body.get("modalities")
        return not (
            body.get("logprobs")
            or body.get("top_logprobs") is not None
            or body.get("audio") is not None
            or (isinstance(modalities, list) and "audio" in modalities)
        )
    if endpoint is Endpoint.COMPLETIONS:
        return body.get("logprobs") is None
    if endpoint is Endpoint.MESSAGES:
        return not (body.get("mcp_servers") or body.get("container") is not None)
    return True


def canonical_request(endpoint: Endpoint, public_model: str, body: Mapping[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, compact, UTF-8) of what determines the answer.

    ``public_model`` is the resolved public name (``gpt-4o``, not ``gpt-4o:floor``): the
    suffix changes routing, not the answer. Every body field is kept except the routing and
    delivery fields in ``_EXCLUDED``, so a parameter this proxy does not know still separates
    entries; stream and non-stream requests share one. Numbers equal in JSON (``0`` and
    ``0.0``) encode alike."""
    fields = {k: _normalize(v) for k, v in body.items() if k not in _EXCLUDED}
    material = {
        "v": _MATERIAL_VERSION,
        "endpoint": endpoint.value,
        "model": public_model,
        "request": fields,
    }
    return json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(scope: CacheScope, material: bytes) -> str:
    """SHA-256 of scope and material: the (still secret) input of the keyed lookup hash."""
    h = hashlib.sha256(scope.name.encode())
    h.update(b"\x00")
    h.update(material)
    return h.hexdigest()


def _normalize(value: Any) -> Any:
    if type(value) is float and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def _number(value: Any) -> float:
    """A JSON number as a float; anything else (absent, a bool, junk) as 0."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0
