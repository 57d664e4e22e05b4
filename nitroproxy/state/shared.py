"""``SharedState``: the ``state.backend: redis`` component, one per process.

It owns the Redis link and builds, on the gateway's clock, the shared limiter and the shared
health book; it wires propagation (an accounts write anywhere reloads keys everywhere) and
the recovery steps (replay held settlements, re-seed budgets into a Redis that lost its
data). ``web/app.py`` starts it before the gateway and closes it after.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry

from nitroproxy.config import Settings, StartupError
from nitroproxy.proxy.clock import Clock
from nitroproxy.state.bus import Bus
from nitroproxy.state.health import SharedHealth
from nitroproxy.state.limiter import RedisLimiter
from nitroproxy.state.link import RedisLink, StateUnavailable

__all__ = ["SharedState"]

Reseed = Callable[[], Awaitable[None]]


class SharedState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.link = RedisLink(settings.state)
        self.bus = Bus(self.link, resync_interval=settings.state.resync_interval)
        self.limiter: RedisLimiter | None = None
        self.health: SharedHealth | None = None
        self._registry: CollectorRegistry | None = None
        self._reseed: Reseed | None = None

    async def start(self, registry: CollectorRegistry) -> None:
        try:
            await self.link.check()
        except Exception as exc:
            await self.link.close()
            raise StartupError(
                f"state.backend redis: cannot reach {_where(self.settings.state.url)}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        registry.register(self.link)
        self._registry = registry
        self.bus.start()

    def bind(self, clock: Clock) -> tuple[RedisLimiter, SharedHealth]:
        """The limiter and health book for a gateway running on ``clock``."""
        r = self.settings.routing
        self.limiter = RedisLimiter(self.link, clock, self.settings.state.fail)
        names = [d.name for m in self.settings.models.values() for d in m.deployments]
        self.health = SharedHealth(
            self.link,
            clock,
            names,
            alpha=r.ewma_alpha,
            min_samples=r.min_samples,
            failure_threshold=r.failure_threshold,
            base_cooldown=r.base_cooldown,
            max_cooldown=r.max_cooldown,
        )
        self.bus.on("health", self._sync_health)
        return self.limiter, self.health

    async def serve(self, reseed: Reseed | None) -> None:
        """After the recorded spend was handed to ``limiter.seed_spend``: load it into Redis
        (unless another process already did), then start the background loops. ``reseed``
        re-reads the spend from the database when Redis turns out to have lost it."""
        assert self.limiter is not None and self.health is not None
        self._reseed = reseed
        # Down since start(): the recovery step seeds once Redis answers again.
        with contextlib.suppress(StateUnavailable):
            await self.limiter.flush_seeds()
        self.link.on_up(self._check_seeded)
        self.bus.on("resync", self._check_seeded)
        self.limiter.start()
        self.health.start(self.settings.state.health_interval)

    def watch_accounts(self, refresh: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Reload keys on every ``accounts`` message; returns the hook an accounts write
        calls to announce itself."""
        self.bus.on("accounts", refresh)
        return lambda: self.bus.announce("accounts")

    def watch_config(self, reload: Callable[[], None]) -> Callable[[], None]:
        """Run ``reload`` when another process announces a config reload; returns what
        SIGHUP should call here: reload, and announce it to the others."""

        async def on_message() -> None:
            reload()

        self.bus.on("config", on_message, resync=False)

        def here() -> None:
            reload()
            self.bus.announce("config")

        return here

    async def _check_seeded(self) -> None:
        limiter = self.limiter
        if limiter is None or self._reseed is None:
            return
        if await limiter.needs_seed():
            await self._reseed()
            await limiter.flush_seeds()

    async def _sync_health(self) -> None:
        if self.health is not None:
            try:
                await self.health.sync()
            except StateUnavailable:
                return

    async def close(self) -> None:
        await self.bus.close()
        if self.health is not None:
            await self.health.close()
        if self.limiter is not None:
            await self.limiter.close()
        if self._registry is not None:
            self._registry.unregister(self.link)
        await self.link.close()


def _where(url: str) -> str:
    """The URL without its password, for an error line."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"
