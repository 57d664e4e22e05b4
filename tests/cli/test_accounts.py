"""``nitroproxy users|keys|rotate-data-key`` on a real database, and the start-up refusal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nitroproxy import cli
from nitroproxy.cli.privacy import cli_actor
from nitroproxy.security.crypto import ENV_VAR, generate_key

CONFIG = """
storage: {{path: {db}}}
tiers:
  default: {{rpm: 60}}
  pro: {{rpm: 600}}
providers:
  p: {{kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: x}}
models:
  gpt: {{deployments: [{{provider: p, model: m}}]}}
server: {{port: 0}}
logging: {{format: json}}
"""


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "np.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "data" / "np.db"))
    monkeypatch.setenv(ENV_VAR, generate_key())
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    assert cli.main(list(argv)) == code
    out, err = capsys.readouterr()
    return out if code == 0 else err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    return json.loads(run(capsys, *argv, "--json"))


def test_users_lifecycle_with_table_and_json_output(cfg: str, capsys) -> None:
    user = run_json(
        capsys, "users", "create", "-c", cfg, "--name", "Cli Canary", "--email", "cli@example.org"
    )
    uid = user["id"]
    table = run(capsys, "users", "list", "-c", cfg)
    header, row = table.splitlines()
    assert header.split() == ["id", "name", "email", "tier", "status", "created"]
    assert row.startswith(uid) and "cli@example.org" in row
    assert [
        u["id"] for u in run_json(capsys, "users", "list", "-c", cfg, "--email", "CLI@example.org")
    ] == [uid]
    shown = run(capsys, "users", "show", "-c", cfg, uid)
    assert re.search(r"^status\s+active$", shown, re.MULTILINE)

    updated = run_json(capsys, "users", "update", "-c", cfg, uid, "--clear-name", "--tier", "pro")
    assert (updated["name"], updated["tier"]) == (None, "pro")
    assert run_json(capsys, "users", "suspend", "-c", cfg, uid)["status"] == "suspended"
    assert run_json(capsys, "users", "activate", "-c", cfg, uid)["status"] == "active"

    export = json.loads(run(capsys, "users", "export", "-c", cfg, uid))
    assert (
        export["format"] == "nitroproxy.export.v2" and export["user"]["email"] == "cli@example.org"
    )
    assert [e["actor"] for e in export["audit"]] == [cli_actor()] * 4

    assert "--yes" in run(capsys, "users", "erase", "-c", cfg, uid, code=2)
    erased = run_json(capsys, "users", "erase", "-c", cfg, uid, "--yes")
    assert erased["user_id"] == uid
    assert run_json(capsys, "users", "show", "-c", cfg, uid)["status"] == "erased"


def test_keys_lifecycle(cfg: str, capsys) -> None:
    uid = run_json(capsys, "users", "create", "-c", cfg)["id"]
    created = run(
        capsys, "keys", "create", "-c", cfg, "--name", "ci", "--user", uid,
        "--model", "gpt", "--rpm", "5", "--budget-day", "1.5", "--expires", "2030-01-01",
    )  # fmt: skip
    fields = dict(line.split(None, 1) for line in created.splitlines())
    kid, secret = fields["id"], fields["secret"]
    assert secret.startswith("np-") and fields["models"] == "gpt"
    assert fields["expires_at"] == "2030-01-01T00:00:00Z"  # stored as 1893456000
    listed = run(capsys, "keys", "list", "-c", cfg)
    assert kid in listed and secret not in listed
    shown = run_json(capsys, "keys", "show", "-c", cfg, kid)
    assert shown["budget_day_usd"] == 1.5 and "secret" not in shown
    rotated = run_json(capsys, "keys", "rotate", "-c", cfg, kid)
    assert rotated["id"] == kid and rotated["secret"] != secret
    assert run_json(capsys, "keys", "revoke", "-c", cfg, kid)["revoked"] is True
    assert run_json(capsys, "keys", "list", "-c", cfg, "--active-only") == []


def test_errors_are_one_line_and_exit_2(cfg: str, capsys, monkeypatch) -> None:
    assert "no user" in run(capsys, "users", "show", "-c", cfg, "usr_none", code=2)
    assert "unknown model" in run(
        capsys, "keys", "create", "-c", cfg, "--name", "k", "--model", "nope", code=2
    )
    run(capsys, "users", "create", "-c", cfg, "--email", "x@example.org")
    monkeypatch.setenv(ENV_VAR, generate_key())
    err = run(capsys, "users", "list", "-c", cfg, code=2)
    assert err.count("\n") == 1 and ENV_VAR in err


def test_rotate_data_key_keeps_rows_readable(cfg: str, capsys, monkeypatch) -> None:
    old = os.environ[ENV_VAR]
    for i in range(5):
        run(capsys, "users", "create", "-c", cfg, "--email", f"u{i}@example.org")
    new = generate_key()
    monkeypatch.setenv(ENV_VAR, f"{new},{old}")
    result = run_json(capsys, "rotate-data-key", "-c", cfg, "--batch-size", "2")
    assert result["reencrypted_users"] == 5
    monkeypatch.setenv(ENV_VAR, new)
    emails = sorted(u["email"] for u in run_json(capsys, "users", "list", "-c", cfg))
    assert emails == [f"u{i}@example.org" for i in range(5)]
    assert run_json(capsys, "users", "list", "-c", cfg, "--email", "u3@example.org")


def test_serve_refuses_a_wrong_data_key_with_one_clean_line(cfg: str, capsys) -> None:
    run(capsys, "users", "create", "-c", cfg, "--email", "x@example.org")
    env = {**os.environ, ENV_VAR: generate_key()}
    proc = subprocess.run(
        [sys.executable, "-m", "nitroproxy", "serve", "-c", cfg],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("nitroproxy: ") and ENV_VAR in proc.stderr


def test_serve_refuses_a_database_from_a_newer_nitroproxy_with_one_clean_line(
    cfg: str, tmp_path
) -> None:
    import sqlite3

    from nitroproxy import config
    from nitroproxy.store.db import MIGRATIONS

    db = config.load(cfg).storage.path
    os.makedirs(os.path.dirname(db), exist_ok=True)
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    proc = subprocess.run(
        [sys.executable, "-m", "nitroproxy", "serve", "-c", cfg],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "newer than this NitroProxy supports" in proc.stderr


def test_end_users_are_exported_and_erased_from_the_cli(cfg: str, capsys) -> None:
    import asyncio

    from nitroproxy import config
    from nitroproxy.core.end_users import EndUserMode, EndUsers
    from nitroproxy.store.db import open_db
    from nitroproxy.store.meta import installation_secret
    from nitroproxy.store.usage import insert_many, list_records
    from tests.records import make_record

    db = config.load(cfg).storage.path

    async def seed() -> str:
        conn = await open_db(db)
        try:
            tags = EndUsers(EndUserMode.PSEUDONYMOUS, await installation_secret(conn, "end_user"))
            tag = tags.pseudonym("cli-end-user")
            await insert_many(
                conn, [make_record(1, end_user=tag), make_record(2, end_user="eu_other")]
            )
            return tag
        finally:
            await conn.close()

    tag = asyncio.run(seed())
    exported = run_json(capsys, "end-users", "export", "-c", cfg, "cli-end-user")
    assert exported["end_user"] == tag
    assert [r["id"] for r in exported["usage_records"]] == ["rec-1"]
    refused = run(capsys, "end-users", "erase", "-c", cfg, "cli-end-user", code=2)
    assert "--yes" in refused
    erased = run_json(capsys, "end-users", "erase", "-c", cfg, "cli-end-user", "--yes")
    assert erased["usage_records_cleared"] == 1

    async def left() -> list[str | None]:
        conn = await open_db(db)
        try:
            return [r.end_user for r in await list_records(conn)]
        finally:
            await conn.close()

    assert asyncio.run(left()) == [None, "eu_other"]
