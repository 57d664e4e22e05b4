"""What one request cost: which token numbers win, and the metadata record that results."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from nitroproxy.core import pricing
from nitroproxy.core.types import Outcome, Price, Usage, UsageRecord, UsageSource

_UA_MAX = 256


@dataclass(slots=True)
class Meter:
    """A call's one mutable part: what it did and cost, filled in as it goes and read once,
    when the call is settled.

    Times are monotonic seconds from the proxy's clock; ``ts`` is the same clock's wall
    time (epoch seconds) at the start, for the record.
    """

    started: float
    ts: float
    attempts: int = 0
    deployment: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    price: Price | None = None
    first_output_at: float | None = None
    ended_at: float | None = None
    status: int = 200
    outcome: Outcome = Outcome.OK
    error_class: str | None = None
    provider_usage: Usage | None = None
    completed: bool = False
    completion_estimate: int = 0
    prompt_estimate: int | None = None
    saved_nanos: int = 0
    """On a cache hit: what the stored answer cost when it was produced."""
    produced: bool = False
    """A provider's output reached the client (a usable answer, or stream bytes written).
    Until then nothing is billed: failed attempts (refused, reset, timed out, 5xx, 429, a
    body that is not the API's) cost nothing."""
    counted: bool = False
    """``completion_estimate`` is the proxy's count of what reached the client."""
    completion_text: str | None = None
    """A stream's delivered text, left for settlement to count (a stream cut short, or one
    whose provider sent no usage); None when the provider's count stands."""

    def attempt(self, deployment: str, provider: str, upstream_model: str, price: Price) -> None:
        """A new attempt starts: the record names the last deployment tried."""
        self.attempts += 1
        self.deployment = deployment
        self.provider = provider
        self.upstream_model = upstream_model
        self.price = price

    def fail(self, status: int, outcome: Outcome, error_class: str | None) -> None:
        self.status = status
        self.outcome = outcome
        self.error_class = error_class


def settle(meter: Meter) -> tuple[Usage, UsageSource]:
    """What the call is billed for.

    Nothing when no provider answered. Provider-reported usage when the exchange completed.
    A stream cut short (a disconnect, a broken upstream) keeps the provider's prompt count if
    it sent one (Anthropic does, up front) and takes the proxy's count of the completion
    tokens that reached the client, never more: that is an estimate, and the record says so.
    """
    if not meter.produced:
        return Usage(), UsageSource.NONE
    provider = meter.provider_usage
    if provider is not None and meter.completed:
        return provider, UsageSource.PROVIDER
    if provider is None and meter.prompt_estimate is None and not meter.counted:
        return Usage(), UsageSource.NONE
    if meter.counted or provider is None:
        completion = meter.completion_estimate
    else:
        completion = provider.completion_tokens
    usage = Usage(
        prompt_tokens=provider.prompt_tokens if provider else (meter.prompt_estimate or 0),
        completion_tokens=completion,
        cached_tokens=provider.cached_tokens if provider else 0,
        cache_write_tokens=provider.cache_write_tokens if provider else 0,
        cache_write_1h_tokens=provider.cache_write_1h_tokens if provider else 0,
    )
    return usage, UsageSource.ESTIMATED


@functools.lru_cache(maxsize=4096)
def client_ip(address: str | None, policy: str) -> str | None:
    """Apply the IP policy: ``none``, ``truncated`` (/24 for IPv4, /48 for IPv6), ``full``.
    Cached: the same few client addresses come again and again, and parsing is not free."""
    if not address or policy == "none":
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if policy == "full":
        return str(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@dataclass(slots=True)
class RequestFacts:
    """The parts of a record known when the request arrives (built once per call and read
    once: not frozen, which would cost a ``__setattr__`` per field)."""

    record_id: str
    request_id: str
    key_id: str | None
    user_id: str | None
    model: str
    endpoint: str
    stream: bool
    client_ip: str | None
    user_agent: str | None
    end_user: str | None = None


def build_record(facts: RequestFacts, meter: Meter) -> UsageRecord:
    cache_hit = meter.outcome is Outcome.CACHE_HIT
    # A hit cost nothing upstream: no tokens, no cost (the saving is reported elsewhere).
    usage, source = (Usage(), UsageSource.NONE) if cache_hit else settle(meter)
    ended = meter.ended_at if meter.ended_at is not None else meter.started
    ttft = None
    tps = None
    if meter.first_output_at is not None:
        ttft = (meter.first_output_at - meter.started) * 1000.0
        generating = ended - meter.first_output_at
        if generating > 0 and usage.completion_tokens > 1:
            tps = usage.completion_tokens / generating
    cost = pricing.cost_nanos(meter.price, usage) if meter.price is not None else 0
    ua = facts.user_agent[:_UA_MAX] if facts.user_agent else None
    return UsageRecord(
        id=facts.record_id,
        request_id=facts.request_id,
        ts=meter.ts,
        key_id=facts.key_id,
        user_id=facts.user_id,
        model=facts.model,
        provider=meter.provider,
        deployment=meter.deployment,
        upstream_model=meter.upstream_model,
        endpoint=facts.endpoint,
        stream=facts.stream,
        status=meter.status,
        outcome=meter.outcome.value,
        error_class=meter.error_class,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        usage_source=source.value,
        cost_nanos=cost,
        latency_ms=(ended - meter.started) * 1000.0,
        ttft_ms=ttft,
        output_tps=tps,
        attempts=meter.attempts,
        client_ip=facts.client_ip,
        user_agent=ua,
        cache_hit=cache_hit,
        end_user=facts.end_user,
    )
