"""The gateway: one call end to end, without ``aiohttp.web``.

``async with gateway.exchange(call) as ex:`` is the only way in. Entering admits the call
(limits, concurrency, budget), consults the opt-in cache, plans the deployments and attempts
them in order, failing over before the first byte reaches the client; leaving releases the
exchange and settles the call exactly once (``proxy.settle``), whatever happened in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable

from nitroproxy.cache.store import ResponseCache
from nitroproxy.config import Settings
from nitroproxy.core import pricing, usage_wire
from nitroproxy.core.accounting import Meter
from nitroproxy.core.end_users import EndUsers
from nitroproxy.core.errors import (
    InvalidRequest,
    ModelNotFound,
    NoDeploymentAvailable,
    ProxyError,
    ServerShuttingDown,
    StorageUnavailable,
    UpstreamError,
    UpstreamTimeout,
    status_of,
)
from nitroproxy.core.health import HealthBook
from nitroproxy.core.limits import ratelimit_headers, to_error
from nitroproxy.core.types import Outcome, Usage
from nitroproxy.proxy import caching, counting
from nitroproxy.proxy.caching import CachePlan
from nitroproxy.proxy.call import Call
from nitroproxy.proxy.clock import Clock
from nitroproxy.proxy.counted import COUNT_HEADER, CountedExchange
from nitroproxy.proxy.exchange import (
    CachedExchange,
    Exchange,
    Opened,
    Parts,
    UpstreamExchange,
    context_for,
)
from nitroproxy.proxy.limiter import (
    InMemoryLimiter,
    Limiter,
    Reservation,
    Scope,
    Ticket,
    end_user_scope,
    key_scope,
)
from nitroproxy.proxy.routing import Route, Router
from nitroproxy.proxy.settle import DurableSink, RecordSink, Settler, note_exit
from nitroproxy.telemetry.metrics import Metrics
from nitroproxy.telemetry.traces import CallTrace, Tracing
from nitroproxy.upstream.client import AiohttpTransport, Transport, UpstreamClient
from nitroproxy.upstream.errors import is_retryable
from nitroproxy.upstream.http1 import Http1Transport
from nitroproxy.upstream.provider import Provider


class Gateway:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        sink: RecordSink | None = None,
        *,
        clock: Clock | Callable[[], float] | None = None,
        limiter: Limiter | None = None,
        transport: Transport | None = None,
        cache: ResponseCache | None = None,
        end_users: EndUsers | None = None,
        tracing: Tracing | None = None,
        can_record: Callable[[], bool] | None = None,
        durable_sink: DurableSink | None = None,
        health: HealthBook | None = None,
    ) -> None:
        self.settings = settings
        self.forward_names = _forward_names(settings)
        """The client headers some provider forwards (``forward_headers``), for decoding."""
        self.tracing = tracing
        self._can_record = can_record
        self.metrics = metrics
        self.clock = clock if isinstance(clock, Clock) else Clock(clock or time.monotonic)
        self.limiter: Limiter = limiter if limiter is not None else InMemoryLimiter(self.clock)
        self.cache = cache
        self.end_users = end_users or EndUsers(settings.privacy.end_user, os.urandom(32))
        # Per model, the dearest rate any deployment bills a prompt and an output token at.
        self._ceilings = {
            m.name: pricing.ceiling_price(d.price for d in m.deployments)
            for m in settings.models.values()
        }
        r = settings.routing
        self.health = health or HealthBook(
            alpha=r.ewma_alpha,
            min_samples=r.min_samples,
            failure_threshold=r.failure_threshold,
            base_cooldown=r.base_cooldown,
            max_cooldown=r.max_cooldown,
        )
        self.providers = {n: Provider(p) for n, p in settings.providers.items()}
        self.router = Router(settings, self.providers, self.health)
        self.client = UpstreamClient(transport or _transport(settings))
        self.settler = Settler(
            settings,
            clock=self.clock,
            metrics=metrics,
            health=self.health,
            limiter=self.limiter,
            end_users=self.end_users,
            sink=sink,
            durable_sink=durable_sink,
        )
        self._parts = Parts(settings, self.clock, metrics, self.client)
        self._streams: set[UpstreamExchange] = set()
        self.ending = False  # the shutdown grace is over (end_streams)
        metrics.set_health_source(self._report_health)

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.settler.close()
        await self.client.close()

    async def reload(self, settings: Settings) -> None:
        """Routing from a reloaded config file (SIGHUP): providers and models, with their
        deployments and prices. Calls in flight keep the routes they hold; health and
        measurements carry over by deployment name. Raises ``ConfigError`` (and changes
        nothing) if a provider's trust settings cannot be loaded."""
        await self.client.configure(settings.providers.values())
        self.providers = {n: Provider(p) for n, p in settings.providers.items()}
        self.router = Router(settings, self.providers, self.health)
        self._ceilings = {
            m.name: pricing.ceiling_price(d.price for d in m.deployments)
            for m in settings.models.values()
        }
        self.settings = self._parts.settings = settings
        self.forward_names = _forward_names(settings)

    def end_streams(self) -> int:
        """The server's shutdown grace is over: end every upstream stream still running
        (each gets an in-band error; its record says ``server_shutdown``), and record any
        call cancelled from now on the same way. Returns how many streams were ended."""
        self.ending = True
        streams = list(self._streams)
        for ex in streams:
            ex.end()
        return len(streams)

    def new_meter(self) -> Meter:
        """The meter a new call starts with, on the gateway's clock."""
        return Meter(started=self.clock.now(), ts=self.clock.wall())

    # -- the call -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def exchange(self, call: Call) -> AsyncIterator[Exchange]:
        """Admit, look up, attempt; yield the exchange; release and settle once."""
        ex: Exchange | None = None
        ticket: Ticket | None = None
        trace = None
        if self.tracing is not None:
            trace = self.tracing.call(
                request_id=call.request_id,
                endpoint=call.endpoint,
                model=call.model.name,
                stream=call.stream,
            )
        try:
            if self._can_record is not None and not self._can_record():
                # storage.on_failure: refuse. An answer now could not be billed.
                self.metrics.refused("storage")
                raise StorageUnavailable(
                    "usage records cannot be stored right now; retry shortly", retry_after=5
                )
            if call.model.name not in self.settings.models:  # a reload removed it just now
                raise ModelNotFound(f"the model '{call.model.name}' does not exist", param="model")
            headers: dict[str, str] = {}
            plan = caching.plan(self.cache, call, self.settings.cache.scope, headers)
            ticket = await self.admit(call, headers)
            ex = await self._open(call, headers, plan, trace)
            if isinstance(ex, UpstreamExchange) and ex.streaming:
                self._streams.add(ex)
            yield ex
        except BaseException as exc:
            if self.ending and isinstance(exc, asyncio.CancelledError):
                call.meter.fail(503, Outcome.SERVER_SHUTDOWN, ServerShuttingDown.__name__)
            else:
                note_exit(call.meter, exc)
            raise
        finally:
            try:
                if ex is not None:
                    self._streams.discard(ex)
                    await ex.release()
            finally:
                if trace is not None and ex is not None:
                    trace.finish_reasons = ex.finish_reasons()
                durable = self.settler.settle(
                    call, ticket, ex.cache_write() if ex is not None else None, trace
                )
                if durable is not None:  # storage.journal_before_answer
                    await durable

    async def admit(self, call: Call, headers: dict[str, str]) -> Ticket | None:
        """Reserve the call's worst case against its key's (and end user's) limits and
        budgets, atomically; refused calls raise 429 with OpenAI's x-ratelimit headers.

        Tokens/min hold OpenAI's estimate of the prompt (a token per four request bytes)
        plus the call's max_tokens (the model's default_max_tokens when it sends none);
        budgets hold the cost of the prompt's ceiling (``core.tokens.prompt_size``) and those
        output tokens at the dearest price among the model's deployments. No tokenizer runs
        here; settlement puts the real counts in their place."""
        scopes = self._scopes(call)
        if not scopes:
            return None
        meter = call.meter
        tokens = cost = 0
        # Token counting is never billed: it takes a request slot, no tokens, no budget.
        if not call.endpoint.counts_tokens:
            output = call.max_output_tokens
            tokens = call.prompt.guess + output
            cost = pricing.estimate_cost_nanos(
                self._ceilings[call.model.name], call.prompt.ceiling, output
            )
        ticket = await self.limiter.reserve(
            Reservation(scopes, tokens=tokens, cost_nanos=cost, wall=meter.ts)
        )
        headers.update(ratelimit_headers(ticket.admission))
        if not ticket.allowed:
            self.metrics.rate_limited(ticket.admission.reason or "requests")
            raise to_error(ticket.admission)
        return ticket

    def _scopes(self, call: Call) -> tuple[Scope, ...]:
        principal = call.principal
        key_id = principal.key_id
        if key_id is None:
            return ()
        scopes = []
        if not principal.limits.unlimited:
            scopes.append(Scope(key_scope(key_id), principal.limits))
        if call.end_user is not None and not self.settings.end_users.unlimited:
            tag = self.end_users.pseudonym(call.end_user)
            scopes.append(Scope(end_user_scope(key_id, tag), self.settings.end_users))
        return tuple(scopes)

    async def _open(
        self, call: Call, headers: dict[str, str], plan: CachePlan | None, trace: CallTrace | None
    ) -> Exchange:
        if call.endpoint.counts_tokens:
            return await self._count(call, headers, trace)
        if plan is not None:
            entry = await caching.lookup(plan, call)
            if entry is not None:
                return CachedExchange(call, headers, entry)
        keepalive = self.settings.server.keepalive_interval
        if call.stream and keepalive > 0:
            return UpstreamExchange(
                self._parts,
                call,
                headers,
                opened=None,
                opener=lambda: self._attempts(call, trace),
                cache_plan=plan,
            )
        opened = await self._attempts(call, trace)
        ex = UpstreamExchange(self._parts, call, headers, opened=opened, cache_plan=plan)
        if opened.answer is not None:
            await self._account_answer(call, ex, opened)
        return ex

    async def _count(
        self, call: Call, headers: dict[str, str], trace: CallTrace | None
    ) -> Exchange:
        """Token counting (``proxy.counted``): an upstream that counts answers if the model
        routes to one; otherwise, or when it fails, the proxy counts. Never a generating
        route, never billed (``meter.produced`` stays false)."""
        if self.router.plan(call, self.clock.now(), optional=True):
            try:
                opened = await self._attempts(call, trace)
            except ProxyError as exc:
                # The client's own mistake stays its error; the upstream's is not worth one.
                if isinstance(exc, InvalidRequest) or status_of(exc) in (400, 413):
                    raise
            else:
                headers[COUNT_HEADER] = "provider"
                return UpstreamExchange(self._parts, call, headers, opened=opened)
        offload = self.settings.tokens.offload_chars
        return CountedExchange(call, headers, await counting.count_prompt_async(call, offload))

    async def _account_answer(self, call: Call, ex: UpstreamExchange, opened: Opened) -> None:
        answer = opened.answer
        assert answer is not None
        meter = call.meter
        meter.provider_usage = answer.usage
        meter.completed = True
        if answer.usage is not None or not self.settings.tokens.count:
            return
        # No usage from the provider: count, and give the client the same numbers the record
        # will carry, in its own format (usage_source "estimated").
        offload = self.settings.tokens.offload_chars
        meter.counted = True
        meter.completion_estimate = await counting.count_output(call, answer.output_text, offload)
        if meter.prompt_estimate is None:
            meter.prompt_estimate = await counting.count_prompt_async(call, offload)
        usage = Usage(
            prompt_tokens=meter.prompt_estimate, completion_tokens=meter.completion_estimate
        )
        ex.answer_with(usage_wire.attach(answer.document, call.client_format, call.endpoint, usage))

    # -- attempting -----------------------------------------------------------------------

    async def _attempts(self, call: Call, trace: CallTrace | None = None) -> Opened:
        """Try deployments in order until one answers. Before any byte reaches the client, a
        retryable failure moves on to the next deployment; others go to the client."""
        plan = self.router.plan(call, self.clock.now())
        limit = self.settings.routing.max_attempts
        deadline = self.clock.now() + self.settings.routing.deadline
        meter = call.meter
        last: ProxyError | None = None
        for route in plan[:limit]:
            if self.clock.now() >= deadline:
                last = last or UpstreamTimeout("routing deadline exceeded before any attempt")
                break
            provider = route.provider
            if last is not None:
                self.metrics.fallback(call.model.name, meter.provider or "", provider.name)
            d = route.deployment
            meter.attempt(d.name, provider.name, d.upstream_model, d.price)
            if trace is not None:
                trace.attempt(
                    number=meter.attempts,
                    deployment=d.name,
                    provider=provider.name,
                    kind=provider.settings.kind.value,
                    upstream_model=d.upstream_model,
                    base_url=provider.settings.base_url,
                )
            self.health.begin_attempt(route.deployment.name, self.clock.now())
            try:
                if len(plan) == 1:  # the provider's own timeouts bound a single attempt
                    return await self._attempt(call, route)
                async with asyncio.timeout_at(self._loop_deadline(deadline)):
                    return await self._attempt(call, route)
            except TimeoutError:
                last = UpstreamTimeout(f"provider '{provider.name}' exceeded the routing deadline")
            except ProxyError as exc:
                last = exc
            self._failed(route, last)
            if trace is not None:
                trace.attempt_failed(last.error_class, status_of(last))
            if not is_retryable(last):
                raise last
            self.metrics.retry(call.model.name, provider.name)
        if last is None:
            raise NoDeploymentAvailable(f"no deployment available for model '{call.model.name}'")
        raise last

    def _loop_deadline(self, deadline: float) -> float:
        loop = asyncio.get_running_loop()
        return loop.time() + (deadline - self.clock.now())

    def _failed(self, route: Route, error: ProxyError) -> None:
        name = route.deployment.name
        if is_retryable(error):
            self.health.record_failure(name, self.clock.now(), retry_after=error.retry_after)
        else:
            self.health.end_attempt(name)
        self.metrics.upstream_error(route.provider.name, error.code or error.error_class)

    async def _attempt(self, call: Call, route: Route) -> Opened:
        provider, deployment = route.provider, route.deployment
        body = provider.adapter.make_body(call, deployment.upstream_model, provider.settings)
        resp = await self.client.send(provider, call.endpoint, body, provider.request_headers(call))
        opened = Opened(route, resp)
        try:
            if call.stream:
                opened.first_chunk = await self.client.first_chunk(provider, resp)
                if not opened.first_chunk:
                    raise UpstreamError(f"provider '{provider.name}' sent an empty stream")
            else:
                raw = await self.client.read(provider, resp)
                ctx = context_for(self.clock, call, route)
                opened.answer = provider.adapter.parse_answer(raw, call, ctx)
                # A usable answer: from here on, it is billed (a count never is).
                call.meter.produced = not call.endpoint.counts_tokens
        except BaseException:
            opened.close()
            raise
        return opened

    def _report_health(self) -> None:
        """At scrape time: which deployments are cooling down now."""
        now = self.clock.now()
        for name in self.health.measurements():
            self.metrics.set_deployment_health(
                name, cooling_down=self.health.state(name, now) == "cooling_down"
            )


def _transport(settings: Settings) -> Transport:
    if settings.upstream.client == "aiohttp":
        return AiohttpTransport(settings.upstream, settings.providers.values())
    return Http1Transport(settings.upstream, settings.providers.values())


def _forward_names(settings: Settings) -> frozenset[str]:
    return frozenset(name for p in settings.providers.values() for name in p.forward_headers)
