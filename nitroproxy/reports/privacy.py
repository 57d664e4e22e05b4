"""The live data map: what is stored, in which file and table, for how long, encrypted or
not, and who can read it, derived from the running settings and the code itself.

Nothing here is prose that can drift from the code: tables and columns come from applying
the store's and the cache's migrations to empty in-memory databases, table and column notes
from the schemas' own comments, the access-log fields from calling ``logs.access_log``,
windows, IP policy, cache and TLS from ``Settings``, and the readers from the routes the
server registers. Secrets never appear: no key, no base URL (it may embed credentials),
only switches. The public form (``GET /privacy``, ``public=True``) also leaves out what
describes the deployment rather than the data: file paths (files are named by their role)
and the software and schema versions; the operator's form (``nitroproxy privacy-report``)
keeps them.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sqlite3
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from typing import Any

import orjson

from nitroproxy import __version__
from nitroproxy.cache.db import CACHE_MIGRATIONS
from nitroproxy.cache.store import default_path as cache_path
from nitroproxy.config import Settings
from nitroproxy.core.types import UsageRecord
from nitroproxy.reports.windows import duration, kept_for, windows
from nitroproxy.security import tls
from nitroproxy.store.db import MIGRATIONS
from nitroproxy.telemetry import logs

__all__ = ["Table", "build", "config_used", "render_json", "schema", "windows"]

_SEALED = "AES-256-GCM, sealed under NITROPROXY_DATA_KEY (key id inside each value)"
_HMAC = "HMAC keyed from NITROPROXY_DATA_KEY: matches equal values, reveals nothing else"
_DIGEST = "one-way SHA-256 digest; the secret itself is not stored"
_OS_ACCOUNT = "host operating-system account"
_END_USER_HMAC = (
    "HMAC keyed by the installation's end-user secret (in this file): the same end user gets "
    "the same value, which reveals nothing else"
)
_IP_POLICY = {
    "none": "not stored",
    "truncated": "stored truncated to its network: /24 for IPv4, /48 for IPv6",
    "full": "stored in full",
}
_CATEGORY = {
    "usage": "request metadata",
    "usage_daily": "usage analytics",
    "billing_lines": "billing",
    "users": "accounts",
    "api_keys": "accounts",
    "preferences": "privacy choices",
    "admin_keys": "admin accounts",
    "audit": "audit log",
    "meta": "internal state",
}
USAGE_FILE = "usage database"
CACHE_FILE = "response cache file"
_TABLE_COMMENT = re.compile(r"((?:[ \t]*--[^\n]*\n)+)\s*CREATE TABLE (\w+)", re.IGNORECASE)
_TABLE_BODY = re.compile(r"CREATE TABLE (\w+)\s*\((.*?)\n\s*\);", re.IGNORECASE | re.DOTALL)
_COLUMN_COMMENT = re.compile(r"^\s*(\w+)\s[^\n]*?--\s*(.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, declared type)
    note: str = ""
    column_notes: Mapping[str, str] | None = None


@functools.cache
def schema(migrations: tuple[str, ...] = MIGRATIONS) -> Mapping[str, Table]:
    """Every table the migrations create, with the comments written above the table and
    after its columns."""
    notes: dict[str, str] = {}
    column_notes: dict[str, dict[str, str]] = {}
    for script in migrations:
        for comment, name in _TABLE_COMMENT.findall(script):
            lines = (line.strip().removeprefix("--").strip() for line in comment.splitlines())
            notes[name] = " ".join(line for line in lines if line)
        for name, body in _TABLE_BODY.findall(script):
            column_notes[name] = dict(_COLUMN_COMMENT.findall(body))
    conn = sqlite3.connect(":memory:")
    try:
        for script in migrations:
            conn.executescript(script)
        names = [
            str(r[0])
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        ]
        return {
            n: Table(
                n,
                tuple((str(c[1]), str(c[2])) for c in conn.execute(f"PRAGMA table_info({n})")),
                notes.get(n, ""),
                column_notes.get(n, {}),
            )
            for n in names
        }
    finally:
        conn.close()


# privacy.end_user: what a record keeps of the end user a client names (OpenAI `user`,
# Anthropic `metadata.user_id`); kept as long as the record, erasable on its own.
_END_USER_POLICY = {
    "off": "not stored",
    "pseudonymous": "a keyed HMAC of the end user the client names (a pseudonym; the key is "
    "the installation's, in this file), kept with the record, erasable per end user",
    "plain": "stored as the client sent it (personal data when it names a person), kept with "
    "the record, erasable per end user",
}


def _protection(column: str, declared: str, note: str) -> str | None:
    # Sealed values are bytes, so they are the BLOB columns; hashes are named, or commented,
    # for what they are (store/db.py and store/cache_db.py keep to this).
    if declared.upper() == "BLOB":
        return _SEALED
    if column == "digest" or column.endswith(("_digest", "_hash")):
        return _DIGEST
    if column.endswith("_index") or note.startswith("HMAC"):
        return _HMAC
    return None


def config_used(settings: Settings, *, public: bool = False) -> dict[str, Any]:
    """The settings this report depends on, without secrets (their hash versions it); in
    the public form without the storage path."""
    s = settings
    r = s.retention
    listener = s.server.tls
    storage: dict[str, Any] = {"enabled": s.storage.enabled}
    if not public:
        storage["path"] = s.storage.path
    return {
        "storage": storage,
        "retention": {
            "requests_s": r.requests,
            "analytics_s": r.analytics,
            "billing_s": r.billing,
            "closed_accounts_s": r.closed_accounts,
            "audit_s": r.audit,
            "interval_s": r.interval,
        },
        "privacy": {
            "client_ip": s.privacy.client_ip,
            "store_user_agent": s.privacy.store_user_agent,
        },
        "cache": {
            "enabled": s.cache.enabled,
            "ttl_s": s.cache.ttl,
            "scope": s.cache.scope,
            "max_entries": s.cache.max_entries,
            "max_bytes": s.cache.max_bytes,
            "config_keys_opted_in": sum(1 for k in s.keys if k.cache),
        },
        "logging": {
            "level": s.logging.level,
            "format": s.logging.format,
            "access_log": s.logging.access_log,
        },
        "metrics": {"enabled": s.metrics.enabled, "key_labels": s.metrics.key_labels},
        "stats": {
            "enabled": s.stats.enabled,
            "min_bucket": s.stats.min_bucket,
            "min_users": s.stats.min_users,
        },
        "auth": {
            "required": s.auth.required,
            "config_admin_keys": len(s.auth.admin_keys) + (s.auth.admin_key is not None),
            "config_keys": len(s.keys),
        },
        "tls": {
            "listener": listener is not None,
            "client_certificates": listener is not None and listener.client_ca is not None,
        },
        "providers": {
            name: {
                "https": p.base_url.startswith("https://"),
                "ca_bundle": p.ca_bundle is not None,  # a path: only whether there is one
                "insecure_skip_verify": p.insecure_skip_verify,
            }
            for name, p in sorted(s.providers.items())
        },
    }


def _access_log_fields() -> list[str]:
    # A blank record: every optional field None, the others a zero of their type.
    zero = {"str": "", "float": 0.0, "int": 0, "bool": False}
    blank: dict[str, Any] = {
        f.name: None if "None" in str(f.type) else zero[str(f.type)] for f in fields(UsageRecord)
    }
    return list(logs.access_fields(UsageRecord(**blank), method="", path=""))


def _own_routes(routes: Collection[str]) -> list[str]:
    """Where a key holder reads its own stored usage."""
    return sorted(r for r in routes if r.startswith(("/v1/me/", "/v1/usage")))


def _readers(settings: Settings, routes: Collection[str]) -> dict[str, Any]:
    def under(prefix: str) -> list[str]:
        return sorted(r for r in routes if r.startswith(prefix))

    public = [
        r for r in ("/privacy", "/privacy/export.schema.json", "/healthz", "/readyz") if r in routes
    ]
    reads = ["this data map, the export document's schema, liveness and readiness"]
    if "/v1/stats" in routes:
        public.append("/v1/stats")
        reads.append(
            f"per model and provider aggregates, buckets under {settings.stats.min_bucket} "
            f"requests or {settings.stats.min_users} distinct people suppressed, people who "
            "object to analytics never counted"
        )
    m = settings.metrics
    scrapers: dict[str, Any] = {}
    if m.enabled and ("/metrics" in routes or m.port is not None):
        labels = "with" if m.key_labels else "without"
        what = f"Prometheus metrics {labels} per-key labels"
        if m.token is None:
            public.append("/metrics")
            reads.append(what)
        else:
            scrapers["metrics scrapers (metrics.token)"] = {"routes": ["/metrics"], "reads": what}
    own = _own_routes(routes)
    return {
        **scrapers,
        "admin keys": {
            "routes": under("/admin"),
            "reads": "what the listed admin routes serve, to holders of a named admin key "
            "(configured, or created with `nitroproxy admins create`); every export, "
            "statement and change is audited with the admin's name",
        },
        "API key holders": {
            "routes": own,
            "reads": "their own key's usage, records, statements and export, and their "
            "privacy choices"
            if own
            else "no stored data",
        },
        "public (no key)": {"routes": public, "reads": "; ".join(reads)},
        **(
            {
                "dashboard sessions (/ui/)": {
                    "routes": under("/ui/api"),
                    "reads": "what the signed-in key may read: with the admin key the admin "
                    "routes (under /ui/api/admin), with an API key its own usage and calls",
                }
            }
            if "/ui/api/session" in routes
            else {}
        ),
        _OS_ACCOUNT: {
            "reads": "the database files and the process output (logs); sealed columns only "
            "with NITROPROXY_DATA_KEY",
        },
    }


def _table_entry(
    settings: Settings,
    table: Table,
    routes: Collection[str],
    *,
    file: str,
    category: str,
) -> dict[str, Any]:
    # /admin/status shows live health only; any other admin route serves stored data. The
    # cache is read only by the lookup of a request in the same scope.
    readers = []
    if category == "response cache":
        readers.append(f"requests in the same cache scope ({settings.cache.scope})")
    elif any(r.startswith("/admin/") and r != "/admin/status" for r in routes):
        readers.append("admin keys (admin API)")
    if table.name in ("usage", "usage_daily", "billing_lines") and _own_routes(routes):
        readers.append("API key holders (own rows)")
    if table.name == "usage" and "/v1/stats" in routes:
        readers.append("public (aggregates via /v1/stats)")
    notes = table.column_notes or {}
    protected = {
        c: p for c, t in table.columns if (p := _protection(c, t, notes.get(c, ""))) is not None
    }
    entry: dict[str, Any] = {
        "file": file,
        "table": table.name,
        "data": category,
        "columns": [c for c, _ in table.columns],
        "kept_for": kept_for(settings, table.name, category, [c for c, _ in table.columns]),
        "encrypted": any(p == _SEALED for p in protected.values()),
        "protected_columns": protected,
        "readable_by": [*readers, _OS_ACCOUNT],
        "note": table.note,
    }
    if notes:
        entry["column_notes"] = dict(notes)
    if table.name == "usage":
        mode = settings.privacy.end_user.value
        entry["end_user"] = _END_USER_POLICY[mode]
        if mode == "pseudonymous":
            entry["protected_columns"]["end_user"] = _END_USER_HMAC
        entry["client_ip"] = _IP_POLICY.get(settings.privacy.client_ip, settings.privacy.client_ip)
        entry["user_agent"] = "stored" if settings.privacy.store_user_agent else "not stored"
        entry["content"] = "never: no column can hold prompt, completion or credential text"
    return entry


def _cache(settings: Settings, tables: Collection[str], *, public: bool) -> dict[str, Any]:
    c = settings.cache
    if not c.enabled:
        return {"enabled": False, "stores": "nothing: the response cache is off"}
    return {
        "enabled": True,
        "stores": "responses (the only prompt-derived data kept), encrypted: " + _SEALED,
        "lookup": "by HMAC of the scope and the canonical request; no plaintext request",
        "file": CACHE_FILE if public else str(cache_path(settings.storage.path)),
        "opt_out": "a person's `cache: false` keeps every request of theirs out of it",
        "tables": sorted(tables),
        "kept_for": duration(c.ttl),
        "shared_between": f"requests in the same scope: {c.scope}",
        "limits": {"max_entries": c.max_entries, "max_bytes": c.max_bytes},
    }


def _journal(settings: Settings, *, public: bool) -> dict[str, Any]:
    """Usage records on their way to the database (``store.journal``): the same fields."""
    st = settings.storage
    if not st.enabled:
        return {"enabled": False}
    held = "every record until the database holds it, and " if st.journal_before_answer else ""
    out: dict[str, Any] = {
        "enabled": True,
        "stores": f"usage records (the usage table's fields; no text): {held}those the "
        "database could not take in time",
        "file": "append-only segments, created mode 0600 (directory 0700 when created); "
        "not encrypted",
        "kept_for": "until replayed into the database, then deleted",
    }
    if not public:
        out["directory"] = st.journal_path()
    return out


def _shared_state(settings: Settings, *, public: bool) -> dict[str, Any] | str:
    state = settings.state
    if state.backend != "redis":
        return "none: limits, budgets and health stay in this process's memory"
    return {
        "where": "Redis" if public else "Redis, prefix " + state.prefix,
        "holds": "per scope (a key id, or a key id with an end user's keyed pseudonym, never "
        "the end user as sent): request and token admissions of the last minute, "
        "concurrency slots and budget reservations in flight, spend in nano-USD by day; "
        "per deployment: cool-down end and smoothed speed; no prompt, completion or key",
        "kept_for": "windows 1 minute, slots and reservations one lease ("
        + duration(state.lease)
        + "), settlement markers 15 minutes, spend 40 days",
        "shared_between": "every NitroProxy process naming the same Redis and prefix",
    }


def build(
    settings: Settings,
    routes: Collection[str],
    *,
    migrations: tuple[str, ...] = MIGRATIONS,
    cache_migrations: tuple[str, ...] = CACHE_MIGRATIONS,
    public: bool = False,
) -> dict[str, Any]:
    """The data map for ``settings``; ``routes`` are the paths the server registers.
    ``public``: the form for anyone (no paths, no versions; see the module docstring)."""
    s = settings
    used = config_used(s, public=public)
    digest = hashlib.sha256(orjson.dumps(used, option=orjson.OPT_SORT_KEYS)).hexdigest()
    main = schema(migrations) if s.storage.enabled else {}
    cache = schema(cache_migrations) if s.cache.enabled else {}
    usage_file = USAGE_FILE if public else s.storage.path
    cache_file = CACHE_FILE if public else str(cache_path(s.storage.path))
    tables = [
        _table_entry(s, t, routes, file=usage_file, category=_CATEGORY.get(t.name, "other"))
        for t in main.values()
    ] + [
        _table_entry(s, t, routes, file=cache_file, category="response cache")
        for t in cache.values()
    ]
    versions: dict[str, Any] = {}
    database: dict[str, Any] = {
        "enabled": s.storage.enabled,
        "file": "SQLite, created mode 0600 (directory 0700 when created); the file as a "
        "whole is not encrypted, sealed columns are"
        if s.storage.enabled
        else "none: storage is disabled, no request records are written",
    }
    if s.storage.enabled and s.storage.backend == "postgres":
        # Never the URL itself: it may hold a password.
        database["usage_records"] = (
            "PostgreSQL (storage.url): the usage, usage_daily and billing_lines tables, the "
            "same columns and retention windows; the rest stays in the SQLite file"
        )
    if not public:
        versions = {
            "nitroproxy_version": __version__,
            "schema_version": len(migrations),
        }
        database["path"] = s.storage.path if s.storage.enabled else None
    return {
        "generated_from": "running configuration",
        **versions,
        "config_hash": "sha256:" + digest[:16],
        "config_used": used,
        "retention": windows(s),
        "database": database,
        "tables": tables,
        "config_file_keys": {
            "count": len(s.keys),
            "held": "in memory as SHA-256 digests; the key text stays in your config file",
        },
        "response_cache": _cache(s, cache, public=public),
        "usage_journal": _journal(s, public=public),
        "logs": {
            "destination": f"standard output ({s.logging.format} format); retention is up to "
            "whatever collects it",
            "level": s.logging.level,
            "access_log_fields": _access_log_fields() if s.logging.access_log else [],
            "redaction": "content fields dropped, credential fields redacted, credential-shaped "
            "strings masked, in every line",
        },
        "traces": (
            {
                "destination": "OpenTelemetry collector over OTLP/HTTP ("
                + ("tracing.endpoint" if s.tracing.endpoint else "OTEL_EXPORTER_OTLP_* default")
                + f"), {s.tracing.sample_ratio:.0%} of calls",
                "content": "metadata only: model and deployment names, token counts, finish "
                "reasons, status, timings and the request id; no prompt, completion, key or "
                "user",
            }
            if s.tracing.enabled
            else "off"
        ),
        "memory_only": "per-key rate-limit windows and spend totals (key ids), deployment "
        "health; lost at restart" + ("; Prometheus metrics" if s.metrics.enabled else ""),
        "shared_state": _shared_state(s, public=public),
        "transport": {
            "listener": "HTTPS" if s.server.tls is not None else "plain HTTP (not encrypted)",
            "client_certificates": "required" if used["tls"]["client_certificates"] else "no",
            "upstreams": {n: tls.upstream_trust(p) for n, p in sorted(s.providers.items())},
        },
        "readers": _readers(s, routes),
    }


def render_json(report: Mapping[str, Any]) -> str:
    return orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
