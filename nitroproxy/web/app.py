"""``create_app``: the application, its components and their lifetimes, in order.

Components start in the order listed in ``cleanup_ctx`` and stop in reverse: the gateway
stops first (pending records are settled), then the writer drains, then the store and the
upstream session close.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiosqlite
from aiohttp import web, web_response

from nitroproxy.cache.store import ResponseCache, default_path
from nitroproxy.config import Settings
from nitroproxy.core.end_users import EndUsers
from nitroproxy.core.types import UsageRecord
from nitroproxy.mock import MockSettings, create_mock_app
from nitroproxy.proxy.clock import Clock
from nitroproxy.proxy.gateway import Gateway
from nitroproxy.proxy.limiter import Limiter, end_user_scope, key_scope
from nitroproxy.proxy.settle import DurableSink, RecordSink
from nitroproxy.state.shared import SharedState
from nitroproxy.store.db import open_db
from nitroproxy.store.meta import installation_secret
from nitroproxy.store.pg.records import PgRecords
from nitroproxy.store.pg.reports import PgReports
from nitroproxy.store.pg.retention import PgRetention
from nitroproxy.store.rights import erased_usage_step
from nitroproxy.store.sweeper import RetentionSweeper, retention_policy
from nitroproxy.store.usage import end_user_month_spend, seed_spend
from nitroproxy.store.writer import UsageWriter
from nitroproxy.telemetry.metrics import Metrics
from nitroproxy.telemetry.traces import Tracing
from nitroproxy.web.appkeys import (
    ACCOUNTS,
    AUTH,
    BODIES,
    CACHE,
    FEED,
    GATEWAY,
    METRICS,
    PG_REPORTS,
    SETTINGS,
    STATE,
    STORE,
    TRACING,
    TRACKER,
    WRITER,
)
from nitroproxy.web.auth import Authenticator
from nitroproxy.web.bodies import BodyBudget
from nitroproxy.web.connections import Tracker
from nitroproxy.web.feed import CallFeed
from nitroproxy.web.middleware import error_middleware
from nitroproxy.web.routes import admin, anthropic, me, models, openai, ops, privacy, ui
from nitroproxy.web.session import SESSIONS, SessionBook


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], float] | None = None,
    tracing: Tracing | None = None,
) -> web.Application:
    """``tracing`` replaces the one ``settings.tracing`` would make (tests pass one with an
    in-memory exporter)."""
    app = web.Application(
        client_max_size=settings.server.max_body_bytes, middlewares=[error_middleware]
    )
    app[SETTINGS] = settings
    app[AUTH] = Authenticator(settings)
    app[METRICS] = Metrics(enabled=settings.metrics.enabled, key_labels=settings.metrics.key_labels)
    app.on_response_prepare.append(_server_header)
    # The answers aiohttp writes itself to unparseable requests never reach that signal;
    # the default they fall back on goes too (tests/web/test_public_leaks.py checks both).
    web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]
    app[FEED] = CallFeed()
    app[SESSIONS] = SessionBook(settings.ui)
    # Before the server waits for open handlers: live-feed streams end at once.
    app.on_shutdown.append(_close_feed)
    app[BODIES] = BodyBudget(settings.server.limits.body_bytes_in_flight)
    app[TRACKER] = Tracker()
    app[TRACKER].on_refused = app[METRICS].refused
    # First: it refuses to start on a wrong data key before anything else is running.
    app.cleanup_ctx.append(admin.accounts_context)
    app.cleanup_ctx.append(_state)
    app.cleanup_ctx.append(_mock_provider)
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_cache)
    app.cleanup_ctx.append(_writer)
    app.cleanup_ctx.append(_sweeper)
    app.cleanup_ctx.append(_tracing(tracing))
    app.cleanup_ctx.append(_gateway(clock))
    app.cleanup_ctx.append(_metrics_listener)
    openai.add_routes(app)
    anthropic.add_routes(app)
    models.add_routes(app)
    ops.add_routes(app)
    admin.add_routes(app)
    me.add_routes(app)
    privacy.add_routes(app)
    ui.add_routes(app)  # last: it serves every admin route under /ui/api/admin as well
    return app


SERVER_NAME = "nitroproxy"


async def _server_header(_request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp's default ``Server`` header names Python's and aiohttp's versions; a client
    needs neither, and they help only someone looking for a known flaw."""
    response.headers["Server"] = SERVER_NAME


async def _close_feed(app: web.Application) -> None:
    app[FEED].close()


def _sink(writer: UsageWriter | None, feed: CallFeed) -> RecordSink:
    """Every record to the writer, and its metadata to the dashboard's live feed (which
    returns at once while nobody watches)."""
    publish = feed.publish
    if writer is None:
        return publish
    put = writer.put

    def sink(record: UsageRecord) -> bool:
        kept = put(record)
        publish(record)
        return kept

    return sink


def _durable_sink(writer: UsageWriter, feed: CallFeed) -> DurableSink:
    """``storage.journal_before_answer``: as ``_sink``, and the call waits for the fsync."""
    publish = feed.publish
    put = writer.put_durable

    def sink(record: UsageRecord) -> Awaitable[bool]:
        written = put(record)
        publish(record)
        return written

    return sink


async def _mock_provider(app: web.Application) -> AsyncIterator[None]:
    """The demo config runs the bundled mock upstream in the same process and loop."""
    mock = app[SETTINGS].server.mock_provider
    if mock is None:
        yield
        return
    runner = web.AppRunner(
        create_mock_app(MockSettings(tokens=mock.tokens, delay_ms=mock.delay_ms)),
        handler_cancellation=True,
        access_log=None,
    )
    await runner.setup()
    await web.TCPSite(runner, mock.host, mock.port).start()
    yield
    await runner.cleanup()


async def _state(app: web.Application) -> AsyncIterator[None]:
    """``state.backend: redis``: limits, budgets and health shared with every process."""
    settings = app[SETTINGS]
    if settings.state.backend != "redis":
        yield
        return
    state = SharedState(settings)
    await state.start(app[METRICS].registry)
    accounts = app.get(ACCOUNTS)
    if accounts is not None:
        accounts.on_write.append(state.watch_accounts(app[AUTH].refresh))
    app[STATE] = state
    try:
        yield
    finally:
        await state.close()


async def _store(app: web.Application) -> AsyncIterator[None]:
    storage = app[SETTINGS].storage
    if not storage.enabled:
        yield
        return
    conn: aiosqlite.Connection = await open_db(storage.path)
    app[STORE] = conn
    yield
    await conn.close()


async def _writer(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.storage.enabled:
        yield
        return
    metrics = app[METRICS]
    storage = settings.storage
    writer = UsageWriter(
        storage.path,
        store=PgRecords(storage.url) if storage.backend == "postgres" else None,
        batch_size=storage.batch_size,
        flush_interval=storage.flush_interval,
        max_queue=storage.max_queue,
        high_water=storage.high_water,
        busy_timeout=storage.busy_timeout,
        journal_dir=storage.journal_path(),
        journal_after=storage.journal_after,
        on_failure=storage.on_failure,
        on_written=metrics.usage_written,
        on_dropped=metrics.usage_dropped,
        on_failed=metrics.usage_write_failed,
        on_journaled=metrics.usage_journaled,
        on_replayed=metrics.usage_replayed,
    )
    await writer.start()  # replays what an earlier run left in the journal
    metrics.set_queue_depth_source(lambda: float(writer.queue_depth))
    metrics.set_storage_source(
        lambda: (float(writer.status().writable), float(writer.journal_pending))
    )
    app[WRITER] = writer
    if storage.backend == "postgres":  # the usage API reads the records where they are
        app[PG_REPORTS] = PgReports(storage.url)
    yield
    await writer.close(timeout=app[SETTINGS].server.shutdown_grace)


async def _cache(app: web.Application) -> AsyncIterator[None]:
    """The opt-in response cache, in its own encrypted file beside the usage database."""
    settings = app[SETTINGS]
    if not settings.cache.enabled:
        yield
        return
    cache = ResponseCache(default_path(settings.storage.path), settings.cache)
    await cache.start()
    app[CACHE] = cache
    auth = app[AUTH]
    purges: set[asyncio.Task[None]] = set()

    def refused(subjects: frozenset[str]) -> None:
        # An opt-out made elsewhere (the CLI, another replica): remove what is stored.
        for subject in subjects:
            task = asyncio.get_running_loop().create_task(_purge_subject(cache, subject))
            purges.add(task)
            task.add_done_callback(purges.discard)

    auth.on_cache_refused = refused
    refused(auth.cache_refusers)  # opt-outs recorded while the server was down
    yield
    auth.on_cache_refused = None
    if purges:
        await asyncio.wait(purges)
    await cache.close()


async def _purge_subject(cache: ResponseCache, subject: str) -> None:
    await cache.purge_user(subject)
    await cache.purge_key(subject)


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.storage.enabled:
        yield
        return
    metrics = app[METRICS]
    r = settings.retention
    cache = app.get(CACHE)

    async def erased(user_id: str) -> None:
        # An account erased after its closure grace: its cached answers go too.
        if cache is not None:
            await cache.purge_user(user_id)

    policy = retention_policy(r)
    sweeper = RetentionSweeper(
        settings.storage.path,  # its own connection: its transactions never interleave ours
        policy,
        interval=r.interval,
        batch_size=r.batch_size,
        on_deleted=metrics.retention_deleted,
        on_erased=erased,
    )
    # Records of a stream that outlived its erased user's key.
    sweeper.add_step("erased_users", erased_usage_step)
    if settings.storage.backend == "postgres":  # the records' windows, where they are
        sweeper.add_step("postgres_usage", PgRetention(settings.storage.url, policy).step)
    if cache is not None:
        sweeper.add_step("cache", cache.sweep_step)
    sweeper.start()
    yield
    await sweeper.close()


async def _metrics_listener(app: web.Application) -> AsyncIterator[None]:
    """``metrics.port`` set: ``/metrics`` on a listener of its own (a port the firewall can
    keep to the scraper), started after the gateway and stopped before it."""
    settings = app[SETTINGS]
    m = settings.metrics
    if not m.enabled or m.port is None:
        yield
        return
    runner = web.AppRunner(ops.metrics_app(settings, app[METRICS]), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, m.host or settings.server.host, m.port).start()
    except BaseException:
        await runner.cleanup()
        raise
    yield
    await runner.cleanup()


def _tracing(given: Tracing | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        """OpenTelemetry traces when ``tracing.enabled`` (or given): stopped after the
        gateway, flushing what is still queued off the loop."""
        tracing = given
        if tracing is None and app[SETTINGS].tracing.enabled:
            tracing = Tracing(app[SETTINGS].tracing)
        if tracing is None:
            yield
            return
        app[TRACING] = tracing
        yield
        await asyncio.get_running_loop().run_in_executor(None, tracing.shutdown)

    return ctx


class _KeySpend:
    """``seed_spend``'s sink for the key scopes of a limiter."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter

    def seed(self, key: str, day: str, nanos: int) -> None:
        self._limiter.seed_spend(key_scope(key), day, nanos)


async def _seed_spend(conn: aiosqlite.Connection, gateway: Gateway, end_users: EndUsers) -> None:
    """Budgets survive restarts: this month's recorded spend, per key and per end user."""
    now = gateway.clock.wall()
    await seed_spend(conn, _KeySpend(gateway.limiter), now)
    for key_id, recorded, day, nanos in await end_user_month_spend(conn, now):
        scope = end_user_scope(key_id, end_users.from_record(recorded))
        gateway.limiter.seed_spend(scope, day, nanos)


def _gateway(
    clock: Callable[[], float] | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # Tokenizers load lazily, in a thread, the first time a count is needed (a provider
        # that reports no usage, a stream cut short): most deployments never load one, and
        # start-up and idle memory stay small (proxy.counting).
        settings = app[SETTINGS]
        writer = app.get(WRITER)
        conn = app.get(STORE)
        # Without a database nothing is recorded, so a per-process key serves the limits.
        secret = os.urandom(32) if conn is None else await installation_secret(conn, "end_user")
        end_users = EndUsers(settings.privacy.end_user, secret)
        storage = settings.storage
        can_record = durable = None
        if writer is not None:
            if storage.on_failure == "refuse":  # turn requests away while records can't be kept
                can_record = _accepting(writer)
            if storage.journal_before_answer:
                durable = _durable_sink(writer, app[FEED])
        gateway_clock = Clock(clock or time.monotonic)
        state = app.get(STATE)
        limiter, health = state.bind(gateway_clock) if state is not None else (None, None)
        gateway = Gateway(
            settings,
            app[METRICS],
            sink=_sink(writer, app[FEED]),
            clock=gateway_clock,
            cache=app.get(CACHE),
            end_users=end_users,
            tracing=app.get(TRACING),
            can_record=can_record,
            durable_sink=durable,
            limiter=limiter,
            health=health,
        )
        await gateway.start()
        try:
            if conn is not None:
                await _seed_spend(conn, gateway, end_users)
            if state is not None:
                db = conn
                await state.serve(
                    None if db is None else lambda: _seed_spend(db, gateway, end_users)
                )
            app[GATEWAY] = gateway
            loop = asyncio.get_running_loop()
            app[METRICS].set_tasks_source(lambda: float(len(asyncio.all_tasks(loop))))
            yield
        finally:
            await gateway.close()

    return ctx


def _accepting(writer: UsageWriter) -> Callable[[], bool]:
    return lambda: writer.accepting
