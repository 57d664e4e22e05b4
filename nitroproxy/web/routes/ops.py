"""Operations: liveness, readiness, Prometheus metrics, and deployment status."""

from __future__ import annotations

import time
from dataclasses import asdict

from aiohttp import web

from nitroproxy.security import tls
from nitroproxy.store.db import check_writable
from nitroproxy.web.appkeys import AUTH, GATEWAY, METRICS, SETTINGS, STORE, WRITER


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the config is loaded, the database takes writes, and every model has a
    deployment that is not cooling down."""
    app = request.app
    checks: dict[str, object] = {"config": "ok"}
    ready = True
    conn = app.get(STORE)
    if conn is not None:
        writable = await check_writable(conn)
        checks["database"] = "ok" if writable else "not writable"
        ready = ready and writable
    gateway = app[GATEWAY]
    now = gateway.clock()
    models: dict[str, str] = {}
    for name, model in app[SETTINGS].models.items():
        usable = any(gateway.health.available(d.name, now) for d in model.deployments)
        models[name] = "ok" if usable else "no usable deployment"
        ready = ready and usable
    checks["models"] = models
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def status(request: web.Request) -> web.Response:
    request.app[AUTH].authenticate_admin(request.headers)
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
            "warnings": tls.insecure_warnings(app[SETTINGS].providers),
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if app[SETTINGS].metrics.enabled:
        app.router.add_get("/metrics", metrics)
    app.router.add_get("/admin/status", status)
