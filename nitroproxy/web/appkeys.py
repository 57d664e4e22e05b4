"""The typed registry of application state: every component under one ``web.AppKey``."""

from __future__ import annotations

import aiosqlite
from aiohttp import web

from nitroproxy.cache.store import ResponseCache
from nitroproxy.config import Settings
from nitroproxy.proxy.gateway import Gateway
from nitroproxy.state.shared import SharedState
from nitroproxy.store.accounts import AccountStore
from nitroproxy.store.pg.reports import PgReports
from nitroproxy.store.writer import UsageWriter
from nitroproxy.telemetry.metrics import Metrics
from nitroproxy.telemetry.traces import Tracing
from nitroproxy.web.auth import Authenticator
from nitroproxy.web.bodies import BodyBudget
from nitroproxy.web.connections import Tracker
from nitroproxy.web.feed import CallFeed

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
WRITER = web.AppKey("writer", UsageWriter)
GATEWAY = web.AppKey("gateway", Gateway)
AUTH = web.AppKey("auth", Authenticator)
STORE = web.AppKey("store", aiosqlite.Connection)
ACCOUNTS = web.AppKey("accounts", AccountStore)
CACHE = web.AppKey("cache", ResponseCache)
FEED = web.AppKey("feed", CallFeed)
TRACING = web.AppKey("tracing", Tracing)
BODIES = web.AppKey("bodies", BodyBudget)
TRACKER = web.AppKey("tracker", Tracker)
STATE = web.AppKey("state", SharedState)
PG_REPORTS = web.AppKey("pg_reports", PgReports)
