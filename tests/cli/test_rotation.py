"""The README's rotation steps with the response cache on: put a new key first, run
``nitroproxy rotate-data-key``, drop the old key, and the proxy starts and still reads
everything (users and cached answers); what cannot be re-encrypted is purged and said so."""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from nitroproxy import config
from nitroproxy.cache.store import default_path
from nitroproxy.cli.privacy import ROTATED_COLUMNS
from nitroproxy.reports import privacy as privacy_report
from nitroproxy.security.crypto import ENV_VAR, Keyring, generate_key
from nitroproxy.web.app import create_app
from nitroproxy.web.appkeys import CACHE
from nitroproxy.web.server import start
from tests.conftest import ADMIN_KEY, CLIENT_KEY, Upstream

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "rotate me"}]}


class Server:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg

    async def __aenter__(self) -> Server:
        self.app = create_app(config.parse(copy.deepcopy(self.cfg)))
        self.runner, port = await start(self.app, "127.0.0.1", 0, shutdown_grace=1.0)
        self.url = f"http://127.0.0.1:{port}"
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()
        await self.runner.cleanup()

    async def call(self, method: str, path: str, key: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as r:
            assert r.status < 300, await r.text()
            return r.headers.get("x-nitroproxy-cache"), await r.json()


async def rotate(cfg_file: Path) -> tuple[Any, str]:
    """The real command in its own process, with this process's environment."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nitroproxy", "rotate-data-key", "-c", str(cfg_file), "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return json.loads(out), err.decode()


def sealed_key_ids(cache_file: Path) -> set[str]:
    with sqlite3.connect(cache_file) as db:
        rows = db.execute("SELECT blob FROM cache_entries UNION ALL SELECT value FROM cache_meta")
        return {Keyring.sealed_key_id(bytes(r[0])) for r in rows}


async def test_rotation_with_the_cache_on_then_start_with_only_the_new_key(
    upstream: Upstream,
    proxy_config: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, new = generate_key(), generate_key()
    proxy_config["cache"] = {"enabled": True, "ttl": "1h"}
    proxy_config["keys"][0]["cache"] = True
    cfg_file = tmp_path / "np.yaml"
    cfg_file.write_text(yaml.safe_dump(proxy_config))
    cache_file = default_path(proxy_config["storage"]["path"])

    monkeypatch.setenv(ENV_VAR, old)
    async with Server(proxy_config) as server:
        _, user = await server.call(
            "POST", "/admin/users", ADMIN_KEY, {"email": "rot@example.org", "name": "Rot"}
        )
        assert (await server.call("POST", "/v1/chat/completions", CLIENT_KEY, BODY))[0] == "miss"
        await server.app[CACHE].flush()
    old_id = Keyring.from_env({ENV_VAR: old}).primary_id
    new_id = Keyring.from_env({ENV_VAR: new}).primary_id
    assert sealed_key_ids(cache_file) == {old_id}

    # Step 1: the new key first, the old one still listed. Step 2: rotate.
    monkeypatch.setenv(ENV_VAR, f"{new},{old}")
    out, _ = await rotate(cfg_file)
    assert out["reencrypted_users"] == 1 and out["reencrypted_cache_entries"] == 1
    assert out["purged_cache_entries"] == 0
    assert sealed_key_ids(cache_file) == {new_id}

    # Step 3: only the new key. The proxy starts, the user reads back, the answer is a hit.
    monkeypatch.setenv(ENV_VAR, new)
    async with Server(proxy_config) as server:
        _, back = await server.call("GET", f"/admin/users/{user['id']}", ADMIN_KEY)
        assert back["email"] == "rot@example.org"
        hit, _ = await server.call("POST", "/v1/chat/completions", CLIENT_KEY, BODY)
        assert hit == "hit"


async def test_what_cannot_be_reencrypted_is_purged_and_said_so(
    upstream: Upstream,
    proxy_config: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, stray, new = generate_key(), generate_key(), generate_key()
    proxy_config["cache"] = {"enabled": True, "ttl": "1h"}
    proxy_config["keys"][0]["cache"] = True
    cfg_file = tmp_path / "np.yaml"
    cfg_file.write_text(yaml.safe_dump(proxy_config))
    cache_file = default_path(proxy_config["storage"]["path"])
    monkeypatch.setenv(ENV_VAR, old)
    async with Server(proxy_config) as server:
        await server.call("POST", "/v1/chat/completions", CLIENT_KEY, BODY)
        await server.app[CACHE].flush()
    # One entry sealed under a key nobody holds any more (as a forgotten earlier rotation).
    with sqlite3.connect(cache_file) as db:
        db.execute(
            "INSERT INTO cache_entries SELECT 'x' || lookup, key_index, user_index, endpoint,"
            " size, created, expires, last_used, ? FROM cache_entries",
            (Keyring.from_env({ENV_VAR: stray}).seal(b"{}", context=b"x"),),
        )
    monkeypatch.setenv(ENV_VAR, f"{new},{old}")
    result, err = await rotate(cfg_file)
    assert (result["reencrypted_cache_entries"], result["purged_cache_entries"]) == (1, 1)
    assert "could not be re-encrypted" in err and "deleted" in err
    assert sealed_key_ids(cache_file) == {Keyring.from_env({ENV_VAR: new}).primary_id}


def test_every_sealed_column_is_covered_by_the_rotation() -> None:
    """A migration adding an encrypted (BLOB) column must add it to the rotation too."""
    from nitroproxy.cache.db import CACHE_MIGRATIONS
    from nitroproxy.store.db import MIGRATIONS

    sealed = {
        f"{table.name}.{column}"
        for migrations in (MIGRATIONS, CACHE_MIGRATIONS)
        for table in privacy_report.schema(migrations).values()
        for column, declared in table.columns
        if declared.upper() == "BLOB"
    }
    assert sealed == set(ROTATED_COLUMNS)
