"""One connection to the shared state (Redis) and the rule that keeps requests off it when
it is slow or gone.

Every command runs under ``timeout`` (``state.timeout``, 100 ms by default): a request never
waits on Redis longer than that, and one that timed out gets its failure policy. A refused or
broken connection, or three timeouts in a row (one alone may be this process's own busy
event loop, not Redis), mark the link *down*; from then on calls
fail at once with :class:`StateUnavailable` (callers apply their failure policy) while one
owned task probes Redis every ``retry_interval``. When a probe answers, the link is *up*
again and the ``on_up`` callbacks run (replaying settlements that could not be sent,
re-seeding budgets if Redis lost its data). Each transition is one log line and moves the
``nitroproxy_state_up`` gauge; the failures are counted.

redis-py's own retries are off: a retry would multiply the wait a request can see.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import redis.asyncio as redis
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from nitroproxy.config import StateSettings
from nitroproxy.telemetry import logs

__all__ = ["RedisLink", "StateUnavailable"]

T = TypeVar("T")
BACKGROUND_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 32
TIMEOUTS_DOWN = 3


class StateUnavailable(Exception):
    """Redis did not answer within the timeout, or is known to be down."""


class RedisLink:
    def __init__(self, settings: StateSettings, *, name: str = "state") -> None:
        self.settings = settings
        self.prefix = settings.prefix
        self.timeout = settings.timeout
        # A bounded pool that makes a burst queue for a connection (within the timeout)
        # rather than open one per request in flight.
        tls: dict[str, str] = {}
        if settings.url.startswith("rediss://") and settings.ca_bundle:
            tls["ssl_ca_certs"] = settings.ca_bundle
        pool = redis.BlockingConnectionPool.from_url(
            settings.url,
            **tls,
            max_connections=MAX_CONNECTIONS,
            timeout=None,  # the wait for a free connection is inside each call's timeout
            socket_timeout=max(settings.timeout, 1.0),
            socket_connect_timeout=settings.timeout,
            retry=Retry(NoBackoff(), 0),
            client_name=f"nitroproxy-{name}",
        )
        self.client: redis.Redis = redis.Redis(connection_pool=pool)
        self.up = True
        self.failures = 0
        self._timeouts_in_a_row = 0
        self.fallbacks: dict[str, int] = {}
        self._on_up: list[Callable[[], Awaitable[None]]] = []
        self._probe: asyncio.Task[None] | None = None
        self._log = logs.get_logger("nitroproxy.state")
        self._gauges: list[Callable[[], Iterable[Metric]]] = []

    def on_up(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` each time Redis answers again after being down."""
        self._on_up.append(fn)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` under the timeout; :class:`StateUnavailable` when down or slow."""
        if not self.up:
            raise StateUnavailable("the shared state (Redis) is unreachable")
        try:
            async with asyncio.timeout(self.timeout):
                result = await fn()
        except (TimeoutError, RedisTimeout) as exc:
            self.failures += 1
            self._timeouts_in_a_row += 1
            if self._timeouts_in_a_row >= TIMEOUTS_DOWN:
                self._down(exc)
            raise StateUnavailable("the shared state (Redis) did not answer in time") from exc
        except (RedisError, OSError) as exc:
            self._down(exc)
            raise StateUnavailable("the shared state (Redis) is unreachable") from exc
        self._timeouts_in_a_row = 0
        return result

    async def background(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Like :meth:`run` for work no request waits on (sync loops, replays): a longer
        timeout, and a failure still marks the link down."""
        if not self.up:
            raise StateUnavailable("the shared state (Redis) is unreachable")
        try:
            async with asyncio.timeout(BACKGROUND_TIMEOUT_S):
                return await fn()
        except (RedisError, OSError, TimeoutError) as exc:
            self._down(exc)
            raise StateUnavailable("the shared state (Redis) is unreachable") from exc

    def fell_back(self, policy: str) -> None:
        self.fallbacks[policy] = self.fallbacks.get(policy, 0) + 1

    def _down(self, exc: BaseException) -> None:
        self.failures += 1
        self._timeouts_in_a_row = 0
        if not self.up:
            return
        self.up = False
        self._log.warning(
            "state backend unreachable",
            error=type(exc).__name__,
            detail=str(exc)[:200],
            retry_s=self.settings.retry_interval,
        )
        with contextlib.suppress(RuntimeError):  # no loop: the next start() probes
            self._probe = asyncio.get_running_loop().create_task(
                self._probe_until_up(), name="nitroproxy-state-probe"
            )

    async def _probe_until_up(self) -> None:
        while True:
            await asyncio.sleep(self.settings.retry_interval)
            try:
                async with asyncio.timeout(max(self.timeout, 0.5)):
                    await self.client.ping()
            except (RedisError, OSError, TimeoutError):
                self.failures += 1
                continue
            break
        # Connections pooled before the outage point at a server that is gone (a restart):
        # each would fail once and mark the link down again. Start them all afresh.
        with contextlib.suppress(RedisError, OSError):
            await self.client.connection_pool.disconnect()
        self.up = True
        self._log.info("state backend reachable again")
        for fn in self._on_up:
            try:
                await fn()
            except StateUnavailable:
                return  # down again; that failure started a new probe
            except Exception:
                self._log.exception("state recovery step failed")

    async def check(self) -> None:
        """At start-up: Redis must answer (a StartupError otherwise, from the caller)."""
        async with asyncio.timeout(max(self.timeout, 2.0)):
            await self.client.ping()

    async def close(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe
        await self.client.aclose()
        await self.client.connection_pool.disconnect()

    # -- metrics (a collector on the app's registry) -------------------------------------

    def add_gauge(self, fn: Callable[[], Iterable[Metric]]) -> None:
        self._gauges.append(fn)

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "nitroproxy_state_up",
            "1 while the shared state backend (Redis) answers, else 0.",
            1.0 if self.up else 0.0,
        )
        yield CounterMetricFamily(
            "nitroproxy_state_errors",
            "Calls to the shared state backend that failed or timed out.",
            self.failures,
        )
        fallbacks = CounterMetricFamily(
            "nitroproxy_state_fallbacks",
            "Admissions decided by the failure policy while the shared state was down.",
            labels=("policy",),
        )
        for policy, n in sorted(self.fallbacks.items()):
            fallbacks.add_metric((policy,), n)
        yield fallbacks
        for fn in self._gauges:
            yield from fn()

    def describe(self) -> Iterable[Metric]:
        return [Metric(m.name, m.documentation, m.type) for m in self.collect()]


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
