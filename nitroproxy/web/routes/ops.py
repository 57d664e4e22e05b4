"""Operations: the root, liveness, readiness, Prometheus metrics, and deployment status.

``/metrics`` is served on the API port, or with ``metrics.port`` only on a listener of its
own (``metrics_app``); with ``metrics.token`` either one asks for that bearer token.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import asdict

from aiohttp import web

from nitroproxy.config import Settings
from nitroproxy.core.errors import Unauthenticated
from nitroproxy.security import tls
from nitroproxy.security.crypto import key_digest
from nitroproxy.telemetry.metrics import Metrics
from nitroproxy.web.appkeys import GATEWAY, METRICS, SETTINGS, STATE, WRITER
from nitroproxy.web.auth import extract_key
from nitroproxy.web.middleware import error_middleware
from nitroproxy.web.session import require_admin


async def root(request: web.Request) -> web.Response:
    """``GET /`` and ``HEAD /``: Claude Code checks the base URL answers before it starts."""
    return web.json_response({"status": "ok", "service": "nitroproxy"})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the config is loaded, usage records reach the database and no more of them
    wait in memory than the high-water mark, and every model has a deployment that is not
    cooling down. Unauthenticated, so it says what is wrong, not why (``/admin/status``)."""
    app = request.app
    checks: dict[str, object] = {"config": "ok"}
    ready = True
    writer = app.get(WRITER)
    if writer is not None:
        status = writer.status()
        checks["database"] = "ok" if status.writable else "not writable"
        checks["usage_queue"] = (
            "ok" if status.queue_depth <= status.high_water else "past its high-water mark"
        )
        checks["journal"] = "ok" if status.journal_error is None else "not writable"
        ready = ready and status.ready
    state = app.get(STATE)
    if state is not None:
        # Reported, not gating: every instance shares this Redis, so taking one out of a
        # load balancer would not help, and the failure policy already decides per call.
        checks["state"] = "ok" if state.link.up else "unreachable (failure policy applies)"
    gateway = app[GATEWAY]
    now = gateway.clock()
    models: dict[str, str] = {}
    for name, model in gateway.settings.models.items():
        usable = any(gateway.health.available(d.name, now) for d in model.deployments)
        models[name] = "ok" if usable else "no usable deployment"
        ready = ready and usable
    checks["models"] = models
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


def _check_scraper(request: web.Request) -> None:
    """With ``metrics.token`` set, a scrape must send it as a bearer token; digests are
    compared in constant time, as the admin key is."""
    token = request.app[SETTINGS].metrics.token
    if token is None:
        return
    sent = extract_key(request.headers)
    if sent is None or not hmac.compare_digest(key_digest(sent), key_digest(token)):
        raise Unauthenticated(
            "/metrics needs 'Authorization: Bearer <metrics.token>'",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


async def metrics(request: web.Request) -> web.Response:
    _check_scraper(request)
    body, content_type = request.app[METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def status(request: web.Request) -> web.Response:
    require_admin(request)
    app = request.app
    gateway = app[GATEWAY]
    writer = app.get(WRITER)
    snapshot = gateway.health.snapshot(gateway.clock())
    return web.json_response(
        {
            "time": time.time(),
            "deployments": {name: asdict(h) for name, h in snapshot.items()},
            "usage_queue_depth": writer.queue_depth if writer is not None else None,
            "usage_written": writer.written if writer is not None else None,
            "usage_dropped": writer.dropped if writer is not None else None,
            "usage_storage": asdict(writer.status()) if writer is not None else None,
            "warnings": tls.insecure_warnings(app[SETTINGS].providers),
        }
    )


def metrics_app(settings: Settings, registry: Metrics) -> web.Application:
    """The application of the separate metrics listener: ``/metrics`` and ``/healthz``."""
    app = web.Application(middlewares=[error_middleware])
    app[SETTINGS] = settings
    app[METRICS] = registry
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", root)  # and HEAD
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    m = app[SETTINGS].metrics
    if m.enabled and m.port is None:
        app.router.add_get("/metrics", metrics)
    app.router.add_get("/admin/status", status)
