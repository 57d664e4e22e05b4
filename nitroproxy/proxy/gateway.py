"""One call end to end, without aiohttp.web: choose deployments, attempt, fail over, and
settle the account exactly once."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from nitroproxy import data
from nitroproxy.config import Deployment, ModelSettings, Settings
from nitroproxy.core import anthropic_request, chat_request, selection, tokens
from nitroproxy.core.accounting import RequestFacts, Tally, build_record
from nitroproxy.core.errors import (
    InvalidRequest,
    NoDeploymentAvailable,
    ProxyError,
    UpstreamError,
    UpstreamTimeout,
    status_of,
)
from nitroproxy.core.health import HealthBook
from nitroproxy.core.limits import ratelimit_headers, to_error
from nitroproxy.core.principal import Principal
from nitroproxy.core.spend import SpendBook
from nitroproxy.core.types import ApiFormat, Endpoint, Outcome, UsageRecord
from nitroproxy.proxy.limiter import InMemoryLimiter, Limiter, Ticket
from nitroproxy.security.ids import IdSource
from nitroproxy.telemetry import logs
from nitroproxy.telemetry.metrics import Metrics
from nitroproxy.upstream.client import UpstreamClient
from nitroproxy.upstream.provider import Provider, is_retryable

RecordSink = Callable[[UsageRecord], object]
_OPENAI_ONLY = frozenset({Endpoint.EMBEDDINGS, Endpoint.COMPLETIONS})


@dataclass(slots=True)
class Call:
    """One client request, decoded. ``body`` is the client's JSON in its own format."""

    request_id: str
    endpoint: Endpoint
    client_format: ApiFormat
    body: dict[str, Any]
    model: ModelSettings
    strategy: selection.Strategy
    prefs: selection.ProviderPrefs
    stream: bool
    principal: Principal
    tally: Tally
    client_ip: str | None = None
    user_agent: str | None = None
    path: str = ""
    method: str = "POST"
    wants_usage: bool = False
    facts: RequestFacts | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    ticket: Ticket | None = None

    @property
    def max_output_tokens(self) -> int:
        for name in ("max_completion_tokens", "max_tokens"):
            value = self.body.get(name)
            if isinstance(value, int):
                return value
        return self.model.default_max_tokens


@dataclass(slots=True)
class Exchange:
    """A successful upstream response, not yet read. The caller closes it."""

    provider: Provider
    deployment: Deployment
    response: aiohttp.ClientResponse
    first_chunk: bytes = b""

    def close(self) -> None:
        self.response.close()


class Gateway:
    def __init__(
        self,
        settings: Settings,
        client: UpstreamClient,
        metrics: Metrics,
        sink: RecordSink | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        limiter: Limiter | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.metrics = metrics
        self.sink = sink
        self.clock = clock
        self.wall_clock = wall_clock
        self.limiter: Limiter = limiter if limiter is not None else InMemoryLimiter(clock)
        self.spend = SpendBook()
        self.new_id = IdSource()
        self.providers = {n: Provider(p) for n, p in settings.providers.items()}
        r = settings.routing
        self.health = HealthBook(
            alpha=r.ewma_alpha,
            min_samples=r.min_samples,
            failure_threshold=r.failure_threshold,
            base_cooldown=r.base_cooldown,
            max_cooldown=r.max_cooldown,
        )
        self._candidates: dict[str, tuple[selection.Candidate, ...]] = {}
        for model in settings.models.values():
            self._candidates[model.name] = tuple(
                selection.Candidate(
                    name=d.name,
                    provider=d.provider,
                    upstream_model=d.upstream_model,
                    weight=d.weight,
                    price=d.price,
                    position=i,
                )
                for i, d in enumerate(model.deployments)
            )
            for d in model.deployments:
                self.health.seed(d.name, ttft_s=d.seed_ttft, tokens_per_s=d.seed_tokens_per_s)
        self._deployments = {
            m.name: {d.name: d for d in m.deployments} for m in settings.models.values()
        }
        self._in_order = {m.name: m.deployments for m in settings.models.values()}
        self._rng = random.Random(r.seed)
        self._log = logs.get_logger("nitroproxy.access")
        self._pending: set[asyncio.Task[None]] = set()

    # -- choosing -------------------------------------------------------------------------

    def plan(self, call: Call) -> list[Deployment]:
        now = self.clock()
        static = self._in_order[call.model.name]
        # The common case needs no ranking: config order, unless something cools down.
        if call.prefs == selection.NO_PREFS and (
            len(static) == 1
            or (
                call.strategy is selection.Strategy.FALLBACK
                and all(self.health.available(d.name, now) for d in static)
            )
        ):
            return self._serving(call, static)
        prompt = call.tally.prompt_estimate
        if prompt is None:
            # Only price routing and max_price filters look at it: skip the walk otherwise.
            needs = call.strategy is selection.Strategy.PRICE or (
                call.prefs.max_price_prompt is not None
                or call.prefs.max_price_completion is not None
            )
            prompt = tokens.prompt_chars(call.body) // 4 if needs else 0
        chosen = selection.choose(
            self._candidates[call.model.name],
            strategy=call.strategy,
            prefs=call.prefs,
            measurements={
                c.name: self.health.measurement(c.name) for c in self._candidates[call.model.name]
            },
            available=lambda name: self.health.available(name, now),
            prompt_tokens=prompt,
            max_output_tokens=call.max_output_tokens,
            rng=self._rng.random,
        )
        deployments = self._deployments[call.model.name]
        return self._serving(call, [deployments[c.name] for c in chosen])

    def _serving(self, call: Call, plan: Sequence[Deployment]) -> list[Deployment]:
        """Only deployments whose API has this endpoint: Anthropic has no embeddings and no
        legacy completions, so those calls skip its deployments instead of failing there."""
        if call.endpoint not in _OPENAI_ONLY:
            return list(plan)
        usable = [d for d in plan if self.providers[d.provider].kind is ApiFormat.OPENAI]
        if not usable:
            raise InvalidRequest(
                f"model '{call.model.name}' has no deployment that serves "
                f"/v1/{call.endpoint.value}",
                param="model",
            )
        return usable

    # -- admitting ------------------------------------------------------------------------

    async def admit(self, call: Call) -> None:
        """Rate limits, concurrency and budget for the caller's key, checked atomically;
        refused calls raise 429 with OpenAI's x-ratelimit headers."""
        principal = call.principal
        limits = principal.limits
        if principal.key_id is None or limits.unlimited:
            return
        if limits.tpm is not None and call.tally.prompt_estimate is None:
            call.tally.prompt_estimate = await self.count_prompt_async(call)
        day, month = self.spend.totals(principal.key_id, self.wall_clock())
        ticket = await self.limiter.admit(
            principal.key_id,
            limits,
            tokens=call.tally.prompt_estimate or 0,
            concurrent=call.stream,
            spent_day_usd=day,
            spent_month_usd=month,
        )
        call.extra_headers.update(ratelimit_headers(ticket.admission))
        if not ticket.allowed:
            self.metrics.rate_limited(ticket.admission.reason or "requests")
            raise to_error(ticket.admission)
        call.ticket = ticket

    async def count_prompt_async(self, call: Call) -> int:
        if tokens.prompt_chars(call.body) > self.settings.tokens.offload_chars:
            return await asyncio.get_running_loop().run_in_executor(None, count_prompt, call)
        return count_prompt(call)

    # -- attempting -----------------------------------------------------------------------

    async def open(self, call: Call) -> Exchange:
        """Try deployments in order until one answers (call ``admit`` first). Before any byte
        reaches the client, a retryable failure moves on to the next deployment; others go
        to the client."""
        plan = self.plan(call)
        limit = self.settings.routing.max_attempts
        deadline = self.clock() + self.settings.routing.deadline
        last: ProxyError | None = None
        for deployment in plan[:limit]:
            if self.clock() >= deadline:
                last = last or UpstreamTimeout("routing deadline exceeded before any attempt")
                break
            provider = self.providers[deployment.provider]
            if last is not None:
                self.metrics.fallback(call.model.name, call.tally.provider or "", provider.name)
            self._mark_attempt(call.tally, deployment, provider)
            self.health.begin_attempt(deployment.name, self.clock())
            try:
                if len(plan) == 1:  # the provider's own timeouts bound a single attempt
                    return await self._attempt(call, deployment, provider)
                async with asyncio.timeout_at(self._loop_deadline(deadline)):
                    return await self._attempt(call, deployment, provider)
            except TimeoutError:
                last = UpstreamTimeout(f"provider '{provider.name}' exceeded the routing deadline")
            except ProxyError as exc:
                last = exc
            self._failed(call, deployment, provider, last)
            if not is_retryable(last):
                raise last
            self.metrics.retry(call.model.name, provider.name)
        if last is None:
            raise NoDeploymentAvailable(f"no deployment available for model '{call.model.name}'")
        raise last

    def _loop_deadline(self, deadline: float) -> float:
        loop = asyncio.get_running_loop()
        return loop.time() + (deadline - self.clock())

    @staticmethod
    def _mark_attempt(tally: Tally, deployment: Deployment, provider: Provider) -> None:
        tally.attempts += 1
        tally.deployment = deployment.name
        tally.provider = provider.name
        tally.upstream_model = deployment.upstream_model
        tally.price = deployment.price

    def _failed(
        self, call: Call, deployment: Deployment, provider: Provider, error: ProxyError
    ) -> None:
        if is_retryable(error):
            self.health.record_failure(deployment.name, self.clock(), retry_after=error.retry_after)
        else:
            self.health.end_attempt(deployment.name)
        self.metrics.upstream_error(provider.name, error.code or error.error_class)

    async def _attempt(self, call: Call, deployment: Deployment, provider: Provider) -> Exchange:
        body = self._upstream_body(call, deployment, provider)
        resp = await self.client.send(
            provider, upstream_endpoint(call.endpoint, provider.kind), body
        )
        exchange = Exchange(provider, deployment, resp)
        if call.stream:
            # Read the first chunk here, inside the attempt: an upstream that accepts the
            # request and then fails before sending anything can still be failed over.
            try:
                exchange.first_chunk = await self.client.first_chunk(provider, resp)
            except BaseException:
                exchange.close()
                raise
            if not exchange.first_chunk:
                exchange.close()
                raise UpstreamError(f"provider '{provider.name}' sent an empty stream")
        return exchange

    def _upstream_body(self, call: Call, deployment: Deployment, provider: Provider) -> bytes:
        model = deployment.upstream_model
        if provider.kind is call.client_format:
            body = dict(call.body)
            body["model"] = model
            body.pop("provider", None)
            if (
                call.stream
                and provider.kind is ApiFormat.OPENAI
                and provider.settings.stream_usage
                and call.endpoint is not Endpoint.EMBEDDINGS
                and not call.wants_usage
            ):
                options = dict(body.get("stream_options") or {})
                options["include_usage"] = True
                body["stream_options"] = options
            return orjson.dumps(body)
        if provider.kind is ApiFormat.ANTHROPIC:
            return orjson.dumps(
                anthropic_request.chat_to_messages_request(
                    call.body,
                    upstream_model=model,
                    default_max_tokens=call.model.default_max_tokens,
                )
            )
        return orjson.dumps(chat_request.messages_to_chat_request(call.body, upstream_model=model))

    # -- settling -------------------------------------------------------------------------

    def finish(self, call: Call) -> None:
        """Settle the call exactly once: record, metrics, health, access line. Never awaits:
        a large prompt that still needs counting is counted in a thread, then recorded."""
        tally = call.tally
        if tally.ended_at is None:
            tally.ended_at = self.clock()
        needs_prompt = tally.prompt_estimate is None and not (
            tally.provider_usage is not None and tally.completed
        )
        if needs_prompt and tally.attempts > 0:
            if tokens.prompt_chars(call.body) > self.settings.tokens.offload_chars:
                self._spawn(self._count_then_record(call))
                return
            tally.prompt_estimate = count_prompt(call)
        self._record(call)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle_limits(self, ticket: Ticket, actual_tokens: int) -> None:
        await self.limiter.release(ticket)
        await self.limiter.settle(ticket, actual_tokens=actual_tokens)

    async def _count_then_record(self, call: Call) -> None:
        loop = asyncio.get_running_loop()
        try:
            call.tally.prompt_estimate = await loop.run_in_executor(None, count_prompt, call)
        finally:
            self._record(call)

    def _record(self, call: Call) -> None:
        tally = call.tally
        record = build_record(self._facts(call), tally)
        if self.sink is not None:
            self.sink(record)
        if record.key_id is not None:
            self.spend.add(record.key_id, record.ts, record.cost_nanos)
        if call.ticket is not None:
            self._spawn(
                self._settle_limits(call.ticket, record.prompt_tokens + record.completion_tokens)
            )
        self.metrics.observe_request(record)
        if record.cache_hit:
            self.metrics.cache_saved(record.model, tally.saved_nanos)
        if tally.deployment is not None and tally.outcome is not Outcome.OK:
            self.health.end_attempt(tally.deployment)
        if tally.deployment is not None and tally.outcome is Outcome.OK:
            self.health.record_success(
                tally.deployment,
                self.clock(),
                ttft_s=None if record.ttft_ms is None else record.ttft_ms / 1000,
                tokens_per_s=record.output_tps,
                latency_s=record.latency_ms / 1000,
            )
        if self.settings.logging.access_log:
            logs.access_log(self._log, record, method=call.method, path=call.path)

    def _facts(self, call: Call) -> RequestFacts:
        if call.facts is not None:
            return call.facts
        return RequestFacts(
            record_id=self.new_id(),
            request_id=call.request_id,
            key_id=call.principal.key_id,
            user_id=call.principal.user_id,
            model=call.model.name,
            endpoint=call.endpoint.value,
            stream=call.stream,
            client_ip=call.client_ip,
            user_agent=call.user_agent,
        )

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def count_prompt(call: Call) -> int:
    enc = data.encoding_for_model(call.tally.upstream_model or call.model.name)
    if call.endpoint is Endpoint.MESSAGES:
        return tokens.count_anthropic_prompt(enc, call.body)
    if call.endpoint is Endpoint.COMPLETIONS:
        return tokens.count_completion_prompt(enc, call.body.get("prompt", ""))
    if call.endpoint is Endpoint.EMBEDDINGS:
        return tokens.count_embedding_input(enc, call.body.get("input", ""))
    return tokens.count_chat_prompt(enc, call.body)


def upstream_endpoint(endpoint: Endpoint, kind: ApiFormat) -> Endpoint:
    if kind is ApiFormat.ANTHROPIC:
        return Endpoint.MESSAGES
    return Endpoint.CHAT if endpoint is Endpoint.MESSAGES else endpoint


def status_outcome(error: ProxyError) -> tuple[int, Outcome]:
    status = status_of(error)
    if isinstance(error, UpstreamTimeout):
        return status, Outcome.TIMEOUT
    if status == 429:
        return status, Outcome.RATE_LIMITED
    if status < 500:
        return status, Outcome.CLIENT_ERROR
    return status, Outcome.UPSTREAM_ERROR
