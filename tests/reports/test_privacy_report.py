"""The live data map: derived from the running config and the code, and free of secrets."""

from __future__ import annotations

import copy
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from nitroproxy import config
from nitroproxy.core.types import UsageRecord
from nitroproxy.reports import privacy as privacy_report
from nitroproxy.security.crypto import generate_key
from nitroproxy.web.routes.privacy import privacy_report_json, privacy_report_text
from tests.conftest import (
    ADMIN_KEY,
    CLIENT_KEY,
    UPSTREAM_KEY,
    Proxy,
    ProxyFactory,
    base_config,
)


async def get_privacy(proxy: Proxy) -> tuple[int, str]:
    async with proxy.session.get(proxy.url + "/privacy") as resp:  # no key sent
        return resp.status, await resp.text()


def table(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [t for t in report["tables"] if t["table"] == name]
    assert len(found) == 1
    return found[0]


def settings_for(tmp_path: Path, **sections: Any) -> config.Settings:
    cfg = base_config("http://127.0.0.1:9", tmp_path)
    cfg.update(copy.deepcopy(sections))
    return config.parse(cfg)


async def test_privacy_needs_no_key_and_holds_no_secret(proxy: Proxy) -> None:
    status, text = await get_privacy(proxy)
    assert status == 200
    for secret in (
        UPSTREAM_KEY,
        CLIENT_KEY,
        ADMIN_KEY,
        proxy.settings.providers["mock-openai"].base_url,
    ):
        assert secret not in text
    report = json.loads(text)
    assert report["generated_from"] == "running configuration"
    assert report["config_hash"].startswith("sha256:")


async def test_privacy_changes_when_the_cache_is_turned_on(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NITROPROXY_DATA_KEY", generate_key())
    off = json.loads((await get_privacy(await make_proxy(proxy_config)))[1])
    proxy_config["cache"] = {"enabled": True, "ttl": "10m", "scope": "user"}
    on = json.loads((await get_privacy(await make_proxy(proxy_config)))[1])
    assert off["response_cache"]["enabled"] is False
    assert on["response_cache"]["enabled"] is True
    assert on["response_cache"]["kept_for"] == "10 minutes"
    assert on["response_cache"]["shared_between"] == "requests in the same scope: user"
    assert "AES-256-GCM" in on["response_cache"]["stores"]
    assert on["config_hash"] != off["config_hash"]


async def test_privacy_changes_with_the_retention_windows(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["retention"] = {
        "requests": "7d",
        "analytics": "100d",
        "billing": "400d",
        "audit": "200d",
        "closed_accounts": "14d",
        "interval": "1h",
    }
    report = json.loads((await get_privacy(await make_proxy(proxy_config)))[1])
    assert table(report, "usage")["kept_for"].startswith("7 days, then rolled up into usage_daily")
    assert table(report, "usage_daily")["kept_for"] == "100 days"
    assert table(report, "billing_lines")["kept_for"].startswith("400 days (tax)")
    assert table(report, "audit")["kept_for"] == "200 days"
    assert table(report, "users")["kept_for"].startswith("while active; erased 14 days after")
    assert "14 days after revocation or expiry" in table(report, "api_keys")["kept_for"]
    windows = report["retention"]
    assert windows["request records"].startswith("7 days")
    assert windows["usage analytics"].startswith("100 days")
    assert windows["billing lines"].startswith("400 days")
    assert windows["accounts"] == "while active; a closed account is erased 14 days after closure"
    assert windows["API keys"].startswith("while usable; deleted 14 days after")
    assert windows["audit log"] == "200 days"
    assert windows["enforced by"] == "the retention sweeper, every 1 hour"
    assert report["config_used"]["retention"] == {
        "requests_s": 7 * 86400,
        "analytics_s": 100 * 86400,
        "billing_s": 400 * 86400,
        "audit_s": 200 * 86400,
        "closed_accounts_s": 14 * 86400,
        "interval_s": 3600,
    }
    # No table is left without a window: every one says how long it is kept.
    assert all("no retention window" not in t["kept_for"] for t in report["tables"])


async def test_the_live_map_lists_the_public_routes_the_server_has(proxy: Proxy) -> None:
    report = json.loads((await get_privacy(proxy))[1])
    public = report["readers"]["public (no key)"]["routes"]
    assert {"/privacy", "/v1/stats", "/healthz", "/readyz"} <= set(public)


def test_the_usage_table_is_the_usage_record_and_nothing_else(tmp_path: Path) -> None:
    report = privacy_report.build(settings_for(tmp_path), [])
    usage = table(report, "usage")
    assert usage["columns"] == [f.name for f in fields(UsageRecord)]
    assert usage["encrypted"] is False
    assert "never" in usage["content"]


def test_every_table_in_the_schema_is_in_the_map(tmp_path: Path) -> None:
    report = privacy_report.build(settings_for(tmp_path), [])
    assert [t["table"] for t in report["tables"]] == list(privacy_report.schema())
    assert "usage_daily" in [t["table"] for t in report["tables"]]


def test_ip_and_user_agent_policy_are_reported(tmp_path: Path) -> None:
    s = settings_for(tmp_path, privacy={"client_ip": "none", "store_user_agent": False})
    usage = table(privacy_report.build(s, []), "usage")
    assert usage["client_ip"] == "not stored"
    assert usage["user_agent"] == "not stored"
    full = settings_for(tmp_path, privacy={"client_ip": "full"})
    assert table(privacy_report.build(full, []), "usage")["client_ip"] == "stored in full"


def test_storage_disabled_means_no_tables(tmp_path: Path) -> None:
    report = privacy_report.build(settings_for(tmp_path, storage={"enabled": False}), [])
    assert report["tables"] == []
    assert report["database"]["enabled"] is False
    assert "disabled" in report["database"]["file"]


def test_transport_reports_tls_and_insecure_upstreams(tmp_path: Path) -> None:
    cfg = base_config("https://127.0.0.1:9", tmp_path)
    cfg["providers"]["mock-openai"]["insecure_skip_verify"] = True
    cfg["server"] = {"tls": {"cert": "/etc/c.pem", "key": "/etc/k.pem", "client_ca": "/etc/ca"}}
    transport = privacy_report.build(config.parse(cfg), [])["transport"]
    assert transport["listener"] == "HTTPS"
    assert transport["client_certificates"] == "required"
    assert transport["upstreams"]["mock-openai"].startswith("DISABLED")
    assert "system trust store" in transport["upstreams"]["mock-anthropic"]


def test_readers_follow_the_registered_routes(tmp_path: Path) -> None:
    s = settings_for(tmp_path)
    bare = privacy_report.build(s, ["/admin/status"])
    assert bare["readers"]["API key holders"]["reads"] == "no stored data"
    assert table(bare, "usage")["readable_by"] == ["host operating-system account"]
    full = privacy_report.build(s, ["/admin/status", "/admin/usage", "/v1/me/usage", "/v1/stats"])
    assert full["readers"]["API key holders"]["routes"] == ["/v1/me/usage"]
    assert table(full, "usage")["readable_by"] == [
        "admin keys (admin API)",
        "API key holders (own rows)",
        "public (aggregates via /v1/stats)",
        "host operating-system account",
    ]
    # Admin keys may live in the database, so the routes are listed even without one in the
    # configuration.
    no_admin = settings_for(tmp_path, auth={"required": True})
    readers = privacy_report.build(no_admin, ["/admin/usage"])["readers"]
    assert readers["admin keys"]["routes"] == ["/admin/usage"]


def test_sealed_and_hashed_columns_and_schema_notes_come_from_the_schema(tmp_path: Path) -> None:
    migrations = (
        """
        -- profiles: the bio is sealed.
        CREATE TABLE profiles (id TEXT, bio BLOB, email_index TEXT);
        CREATE TABLE tokens (id TEXT, digest TEXT);
        """,
    )
    cache_migrations = (
        """
        CREATE TABLE entries (
            lookup TEXT PRIMARY KEY,  -- HMAC of the request
            expires REAL NOT NULL,
            body BLOB                 -- the sealed entry
        );
        """,
    )
    s = settings_for(tmp_path, cache={"enabled": True, "ttl": "2h"})
    report = privacy_report.build(s, [], migrations=migrations, cache_migrations=cache_migrations)
    profiles = table(report, "profiles")
    assert profiles["data"] == "other" and profiles["encrypted"] is True
    assert set(profiles["protected_columns"]) == {"bio", "email_index"}
    assert profiles["note"] == "profiles: the bio is sealed."
    assert "SHA-256" in table(report, "tokens")["protected_columns"]["digest"]
    entries = table(report, "entries")
    assert entries["data"] == "response cache"
    assert entries["file"] == str(tmp_path / "cache.db")
    assert entries["kept_for"].startswith("2 hours")
    assert set(entries["protected_columns"]) == {"lookup", "body"}
    assert entries["column_notes"] == {"lookup": "HMAC of the request", "body": "the sealed entry"}
    assert report["response_cache"]["tables"] == ["entries"]
    assert report["schema_version"] == 1


def test_the_real_cache_schema_is_mapped_only_when_the_cache_is_on(tmp_path: Path) -> None:
    off = privacy_report.build(settings_for(tmp_path), [])
    assert not [t for t in off["tables"] if t["data"] == "response cache"]
    on = privacy_report.build(settings_for(tmp_path, cache={"enabled": True}), [])
    cached = [t for t in on["tables"] if t["data"] == "response cache"]
    assert cached and all(t["file"] == on["response_cache"]["file"] for t in cached)
    assert any(t["encrypted"] for t in cached)


def test_access_log_fields_come_from_the_logger(tmp_path: Path) -> None:
    fields_ = privacy_report.build(settings_for(tmp_path), [])["logs"]["access_log_fields"]
    assert {"request_id", "model", "status", "latency_ms"} <= set(fields_)
    assert not {"prompt", "messages", "client_ip", "user_agent"} & set(fields_)
    quiet = settings_for(tmp_path, logging={"access_log": False})
    assert privacy_report.build(quiet, [])["logs"]["access_log_fields"] == []


def test_cli_text_and_json_forms(tmp_path: Path) -> None:
    s = settings_for(tmp_path, cache={"enabled": True})
    text = privacy_report_text(s)
    assert "Response cache: ON" in text
    assert "table usage:" in text
    assert CLIENT_KEY not in text and ADMIN_KEY not in text and UPSTREAM_KEY not in text
    report = json.loads(privacy_report_json(s))
    assert report["response_cache"]["enabled"] is True
    assert "/privacy" in report["readers"]["public (no key)"]["routes"]
