"""``nitroproxy users statements|close|update --analytics/--cache``, ``users export --format
csv``, ``nitroproxy admins …`` and ``nitroproxy export-schema`` on a real database."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import jsonschema_rs
import pytest
import yaml

from nitroproxy import cli, config
from nitroproxy.cli.privacy import cli_actor
from nitroproxy.store.db import open_db
from nitroproxy.store.usage import insert_many
from tests.cli.test_accounts import cfg, run, run_json  # noqa: F401
from tests.records import MAR10, make_record


def records_for(cfg_path: str, user_id: str) -> list:
    path = yaml.safe_load(Path(cfg_path).read_text())["storage"]["path"]
    rows = [
        make_record(n, ts=MAR10 + n * 86400 * 10, user_id=user_id, cost_nanos=1_000_000 * n)
        for n in range(1, 6)
    ]  # 2024-03-20 .. 2024-04-29: two months

    async def write() -> None:
        conn = await open_db(path)
        try:
            await insert_many(conn, rows)
        finally:
            await conn.close()

    asyncio.run(write())
    return rows


def test_statements_as_json_and_csv(cfg: str, capsys) -> None:  # noqa: F811
    uid = run_json(capsys, "users", "create", "-c", cfg)["id"]
    rows = records_for(cfg, uid)
    doc = json.loads(run(capsys, "users", "statements", "-c", cfg, uid))
    by_month: dict[str, int] = {}
    for r in rows:
        month = "2024-03" if r.ts < 1_711_929_600 else "2024-04"
        by_month[month] = by_month.get(month, 0) + r.cost_nanos
    assert {s["period"]: s["total"]["cost_nanos"] for s in doc["data"]} == by_month
    one = json.loads(run(capsys, "users", "statements", "-c", cfg, uid, "--period", "2024-04"))
    assert [s["period"] for s in one["data"]] == ["2024-04"]
    text = run(capsys, "users", "statements", "-c", cfg, uid, "--format", "csv")
    totals = [r for r in csv.DictReader(io.StringIO(text)) if r["line"] == "total"]
    assert [int(r["cost_nanos"]) for r in totals] == list(by_month.values())
    assert "YYYY-MM" in run(capsys, "users", "statements", "-c", cfg, uid, "--period", "04", code=2)
    assert "no user" in run(capsys, "users", "statements", "-c", cfg, "usr_none", code=2)


def test_objection_opt_out_close_and_csv_export(cfg: str, capsys) -> None:  # noqa: F811
    uid = run_json(capsys, "users", "create", "-c", cfg, "--email", "p@example.org")["id"]
    records_for(cfg, uid)
    chosen = run_json(capsys, "users", "update", "-c", cfg, uid, "--analytics", "off")
    assert (chosen["analytics"], chosen["cache"]) == (False, True)
    chosen = run_json(capsys, "users", "update", "-c", cfg, uid, "--cache", "off")
    assert (chosen["analytics"], chosen["cache"]) == (False, False)
    export = json.loads(run(capsys, "users", "export", "-c", cfg, uid))
    assert export["preferences"] == {"analytics": False, "cache": False}
    text = run(capsys, "users", "export", "-c", cfg, uid, "--format", "csv")
    assert len(list(csv.DictReader(io.StringIO(text)))) == 5
    closed = run_json(capsys, "users", "close", "-c", cfg, uid)
    assert closed["status"] == "suspended" and closed["closed_at"] is not None
    actions = [(e["actor"], e["action"]) for e in export["audit"]]
    assert actions[-2:] == [(cli_actor(), "preferences.update")] * 2


def test_admins_are_named_listed_and_revoked(cfg: str, capsys) -> None:  # noqa: F811
    made = run_json(capsys, "admins", "create", "-c", cfg, "dana")
    assert made["name"] == "dana" and made["secret"].startswith("np-")
    listed = run(capsys, "admins", "list", "-c", cfg)
    assert "dana" in listed and made["secret"] not in listed
    assert "never reused" in run(capsys, "admins", "create", "-c", cfg, "dana", code=2)
    assert "not 'admin'" in run(capsys, "admins", "create", "-c", cfg, "admin", code=2)
    assert run_json(capsys, "admins", "revoke", "-c", cfg, "dana")["revoked"] is True
    assert "no admin key" in run(capsys, "admins", "revoke", "-c", cfg, "erin", code=2)


def test_export_schema_is_printed_and_is_a_valid_schema(capsys) -> None:
    assert cli.main(["export-schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema")
    jsonschema_rs.validator_for(schema)  # compiles: a well-formed JSON Schema


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"retention": {"analytics": "731d"}}, "retention.analytics: may not exceed 730d"),
        ({"retention": {"requests": "800d"}}, "retention.requests: may not exceed"),
        ({"retention": {"audit": 0}}, "retention.audit: must be longer than 0"),
        ({"stats": {"min_users": 3}}, "stats.min_users"),
        ({"auth": {"admin_keys": {"a b": "x" * 20}}}, "auth.admin_keys.a b: an admin name"),
        ({"auth": {"admin_keys": {"ann": "short"}}}, "at least 16 characters"),
        (
            {"auth": {"admin_key": "k" * 20, "admin_keys": {"ann": "k" * 20}}},
            "two admins may not share a key",
        ),
        ({"auth": {"admin_key": "k" * 20, "admin_keys": {"admin": "j" * 20}}}, "belongs to"),
    ],
)
def test_bad_privacy_settings_are_one_line_config_errors(section, message) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.parse(section)
