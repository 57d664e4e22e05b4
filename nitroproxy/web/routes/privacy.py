"""``GET /privacy``, the live data map, and ``GET /v1/stats``, anonymous public statistics.

Both are public (no key), by design: the map holds no secret (and, served, no path or
version), and the statistics hold no key, user or address and suppress buckets of few
requests or few people. ``stats.enabled: false`` removes ``/v1/stats``. The export
document's JSON Schema is public too, at ``/privacy/export.schema.json``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web

from nitroproxy.config import Settings
from nitroproxy.reports import export as export_report
from nitroproxy.reports import privacy as privacy_report
from nitroproxy.reports.public_stats import PublicStats
from nitroproxy.web.appkeys import GATEWAY, SETTINGS, STORE

__all__ = [
    "PUBLIC_STATS",
    "add_routes",
    "privacy_report_json",
    "privacy_report_text",
    "render_text",
    "report_for",
]

PUBLIC_STATS = web.AppKey("public_stats", PublicStats)


def _paths(app: web.Application) -> set[str]:
    return {r.canonical for r in app.router.resources()}


def report_for(settings: Settings, routes: Iterable[str] | None = None) -> dict[str, Any]:
    """The data map; without ``routes``, those of the app ``settings`` would create (nothing
    starts: components start with the server, not with the app object)."""
    if routes is None:
        from nitroproxy.web.app import create_app  # web.app imports this module

        routes = _paths(create_app(settings))
    return privacy_report.build(settings, set(routes))


def privacy_report_text(settings: Settings) -> str:
    return render_text(report_for(settings))


def privacy_report_json(settings: Settings) -> str:
    return privacy_report.render_json(report_for(settings))


def render_text(report: Mapping[str, Any]) -> str:
    db = report["database"]
    lines = [
        f"NitroProxy {report.get('nitroproxy_version', '')} data map, generated from the "
        f"running configuration ({report['config_hash']}, schema "
        f"v{report.get('schema_version', '?')})",
        "",
        f"Database: {db.get('path') or 'none'}: {db['file']}",
        "",
        "Kept for:",
        *(f"  {what}: {how}" for what, how in report["retention"].items()),
    ]
    for t in report["tables"]:
        lines += [
            "",
            f"[{t['data']}] {t['file']}, table {t['table']}: kept {t['kept_for']}; "
            f"{'encrypted columns' if t['encrypted'] else 'not encrypted'}",
            f"  columns: {', '.join(t['columns'])}",
            *(f"  {c}: {how}" for c, how in t["protected_columns"].items()),
            *(f"  {k}: {t[k]}" for k in ("client_ip", "user_agent", "content") if k in t),
            f"  readable by: {', '.join(t['readable_by'])}",
            *([f"  note: {t['note']}"] if t["note"] else []),
        ]
    cache = report["response_cache"]
    lines += ["", "Response cache: " + ("ON" if cache["enabled"] else "off")]
    lines += [f"  {k}: {v}" for k, v in cache.items() if k != "enabled"]
    journal = report["usage_journal"]
    if journal["enabled"]:
        lines += ["", "Usage journal:"]
        lines += [f"  {k}: {v}" for k, v in journal.items() if k != "enabled"]
    log = report["logs"]
    keys = report["config_file_keys"]
    transport = report["transport"]
    lines += [
        "",
        f"Logs: {log['destination']}; level {log['level']}",
        "  access line fields: " + (", ".join(log["access_log_fields"]) or "(access log off)"),
        f"  redaction: {log['redaction']}",
        "",
        f"Config-file keys: {keys['count']}, {keys['held']}",
        f"Traces: {_traces(report.get('traces', 'off'))}",
        f"Memory only: {report['memory_only']}",
        "",
        f"Transport: listener {transport['listener']}, client certificates "
        f"{transport['client_certificates']}",
        *(f"  upstream {n}: {how}" for n, how in transport["upstreams"].items()),
        "",
        "Who can read what:",
    ]
    for who, r in report["readers"].items():
        via = f" via {', '.join(r['routes'])}" if r.get("routes") else ""
        lines.append(f"  {who}{via}: {r['reads']}")
    return "\n".join(lines)


def _traces(traces: Any) -> str:
    if isinstance(traces, str):
        return traces
    return f"{traces['destination']}; {traces['content']}"


async def privacy(request: web.Request) -> web.Response:
    # The public form: no file paths, no software or schema versions.
    report = privacy_report.build(request.app[SETTINGS], _paths(request.app), public=True)
    return web.Response(text=privacy_report.render_json(report), content_type="application/json")


async def export_schema(request: web.Request) -> web.Response:
    """The JSON Schema of ``/v1/me/export`` and ``/admin/users/{id}/export`` documents."""
    body = orjson.dumps(export_report.schema(), option=orjson.OPT_INDENT_2)
    return web.Response(body=body, content_type="application/schema+json")


async def stats(request: web.Request) -> web.Response:
    app = request.app
    body = await app[PUBLIC_STATS].get(
        app.get(STORE),
        # The clock the usage records were stamped with, so the windows line up with them.
        now=app[GATEWAY].clock.wall(),
        mono=asyncio.get_running_loop().time(),
    )
    return web.Response(body=body, content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/privacy", privacy)
    app.router.add_get("/privacy/export.schema.json", export_schema)
    settings = app[SETTINGS]
    if settings.stats.enabled:
        app[PUBLIC_STATS] = PublicStats(settings)
        app.router.add_get("/v1/stats", stats)
