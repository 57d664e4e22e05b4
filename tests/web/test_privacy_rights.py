"""Objection, opt-out, statements, closure, portable exports and accountable admins, end to
end on a real server with real SQLite files (and the real response cache)."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections import defaultdict
from typing import Any

import jsonschema_rs
import pytest

from nitroproxy.cache.store import default_path
from nitroproxy.core.days import month_of
from nitroproxy.store import admins
from nitroproxy.store.sweeper import RetentionSweeper, retention_policy
from nitroproxy.web.appkeys import ACCOUNTS, AUTH, CACHE
from tests.conftest import ADMIN_KEY, CLIENT_KEY, Proxy, ProxyFactory, wait_records
from tests.web.test_admin_api import Admin, data_key  # noqa: F401

ANN_ADMIN = "np-admin-ann-0123456789abcdefghijklmnopqrstuv"
BOB_ADMIN = "np-admin-bob-0123456789abcdefghijklmnopqrstuv"
CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
async def admin(make_proxy: ProxyFactory, proxy_config: dict[str, Any], data_key: str) -> Admin:  # noqa: F811
    proxy_config["auth"]["admin_keys"] = {"ann": ANN_ADMIN, "bob": BOB_ADMIN}
    proxy_config["cache"] = {"enabled": True, "ttl": "1h"}
    return Admin(await make_proxy(proxy_config))


async def chat(proxy: Proxy, secret: str, **headers: str) -> str:
    async with await proxy.post("/v1/chat/completions", CHAT, key=secret, headers=headers) as r:
        assert r.status == 200, await r.text()
        await r.read()
        return r.headers["x-nitroproxy-cache"]


async def fetch(proxy: Proxy, path: str, key: str | None = ADMIN_KEY) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with proxy.session.get(proxy.url + path, headers=headers) as r:
        return r.status, r.content_type, await r.text()


def cache_entries(proxy: Proxy) -> int:
    with sqlite3.connect(default_path(proxy.settings.storage.path)) as db:
        return int(db.execute("SELECT count(*) FROM cache_entries").fetchone()[0])


async def test_statements_equal_the_records_of_each_month_before_and_after_erasure(
    admin: Admin,
) -> None:
    proxy = admin.proxy
    ann = await admin.user(name="Ann Billcanary")
    key = await admin.key(name="k", user_id=ann["id"])
    for _ in range(3):
        await chat(proxy, key["secret"])
    records = await wait_records(proxy, 3)
    expected = defaultdict(int)
    for r in records:
        expected["requests"] += 1
        expected["prompt_tokens"] += r.prompt_tokens
        expected["cost_nanos"] += r.cost_nanos
    assert expected["cost_nanos"] > 0

    listed = await admin("GET", f"/admin/users/{ann['id']}/statements")
    [month] = listed["data"]
    assert month["period"] == month_of(records[0].ts) and month["total"]["requests"] == 3
    assert month["total"]["cost_nanos"] == expected["cost_nanos"]
    assert month["total"]["prompt_tokens"] == expected["prompt_tokens"]
    assert [line["model"] for line in month["lines"]] == ["gpt-test"]
    assert month["total"]["cost_usd"] == f"{expected['cost_nanos'] / 1e9:.9f}"
    mine = await admin("GET", "/v1/me/statements", key=key["secret"])
    assert mine["data"][0]["total"] == month["total"]
    status, kind, text = await fetch(proxy, f"/admin/users/{ann['id']}/statements?format=csv")
    assert (status, kind) == (200, "text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["line"] for r in rows] == ["model", "total"]
    assert int(rows[-1]["cost_nanos"]) == expected["cost_nanos"]
    period = month["period"]
    assert (await admin("GET", f"/admin/users/{ann['id']}/statements?period=1999-01"))["data"] == []
    one = await admin("GET", f"/admin/users/{ann['id']}/statements?period={period}")
    assert one["data"] == [month]
    bad = await admin("GET", f"/admin/users/{ann['id']}/statements?period=2024-13", expect=400)
    assert bad["error"]["param"] == "period"

    # A sweep 91 days later rolls the raw records into billing lines: the same statement.
    sweeper = RetentionSweeper(
        proxy.settings.storage.path, retention_policy(proxy.settings.retention)
    )
    try:
        result = await sweeper.run_once(records[0].ts + 92 * 86400)
    finally:
        await sweeper.close()
    assert result.deleted_raw == 3
    rolled = await admin("GET", f"/admin/users/{ann['id']}/statements")
    assert rolled["data"] == [month]

    erased = await admin("DELETE", f"/admin/users/{ann['id']}")
    pseudonym = erased["billing_pseudonym"]
    under_pseudonym = await admin("GET", f"/admin/users/{pseudonym}/statements")
    assert [s["total"] for s in under_pseudonym["data"]] == [month["total"]]
    assert under_pseudonym["data"][0]["lines"] == month["lines"]
    by_old_id = await admin("GET", f"/admin/users/{ann['id']}/statements")
    assert [s["total"] for s in by_old_id["data"]] == [month["total"]]
    await admin("GET", "/admin/users/usr_nobody/statements", expect=404)

    actions = {
        (e["actor"], e["action"]) for e in (await admin("GET", "/admin/audit?limit=1000"))["data"]
    }
    assert ("admin:admin", "user.statements") in actions
    assert (f"key:{key['id']}", "key.statements") in actions


async def test_objection_and_opt_out_through_the_admin_api(admin: Admin) -> None:
    proxy = admin.proxy
    ann = await admin.user(name="Ann")
    key = await admin.key(name="k", user_id=ann["id"], cache=True)
    assert await chat(proxy, key["secret"]) == "miss"  # the key opted in to the cache
    await proxy.app[CACHE].flush()
    assert await chat(proxy, key["secret"]) == "hit"
    assert cache_entries(proxy) == 1

    choice = {"cache": False, "analytics": False}
    updated = await admin("PATCH", f"/admin/users/{ann['id']}", choice)
    assert (updated["cache"], updated["analytics"]) == (False, False)
    assert cache_entries(proxy) == 0  # what was stored for her is gone
    # Neither the key's opt-in nor the request header brings the cache back.
    assert await chat(proxy, key["secret"]) == "skip"
    assert await chat(proxy, key["secret"], **{"x-nitroproxy-cache": "use"}) == "skip"
    await proxy.app[CACHE].flush()
    assert cache_entries(proxy) == 0

    export = await admin("GET", f"/admin/users/{ann['id']}/export")
    assert export["preferences"] == {"analytics": False, "cache": False}
    assert export["user"]["analytics"] is False
    again = await admin("PATCH", f"/admin/users/{ann['id']}", {"cache": True})
    assert (again["cache"], again["analytics"]) == (True, False)
    assert await chat(proxy, key["secret"]) == "miss"
    bad = await admin("PATCH", f"/admin/users/{ann['id']}", {"cache": "no"}, expect=400)
    assert bad["error"]["param"] == "cache"


async def test_a_key_holder_objects_and_opts_out_for_itself(admin: Admin) -> None:
    proxy = admin.proxy
    lone = await admin.key(name="lone", cache=True)  # a key without a user: its own person
    assert await chat(proxy, lone["secret"]) == "miss"
    mine = await admin("GET", "/v1/me/preferences", key=lone["secret"])
    assert mine == {"subject": lone["id"], "analytics": True, "cache": True}
    chosen = await admin("PATCH", "/v1/me/preferences", {"cache": False}, key=lone["secret"])
    assert chosen == {"subject": lone["id"], "analytics": True, "cache": False}
    assert await chat(proxy, lone["secret"], **{"x-nitroproxy-cache": "use"}) == "skip"
    objected = await admin("PATCH", "/v1/me/preferences", {"analytics": False}, key=lone["secret"])
    assert objected["analytics"] is False and objected["cache"] is False
    export = await admin("GET", "/v1/me/export", key=lone["secret"])
    assert export["preferences"] == {"analytics": False, "cache": False}
    [entry, *_] = (await admin("GET", "/admin/audit?action=preferences.update"))["data"]
    assert entry["actor"] == f"key:{lone['id']}" and entry["target"] == lone["id"]
    bad = await admin("PATCH", "/v1/me/preferences", {"other": 1}, key=lone["secret"], expect=400)
    assert bad["error"]["param"] == "other"
    await admin("GET", "/v1/me/preferences", expect=403)  # the admin key has no preferences

    # A config key's user opts out through the key; the config key's principal follows.
    chosen = await admin("PATCH", "/v1/me/preferences", {"cache": False}, key=CLIENT_KEY)
    assert chosen["subject"] == "alice"
    assert "alice" in proxy.app[AUTH].cache_refusers
    assert await chat(proxy, CLIENT_KEY, **{"x-nitroproxy-cache": "use"}) == "skip"


async def test_an_opt_out_made_by_the_cli_reaches_the_server(admin: Admin) -> None:
    proxy = admin.proxy
    ann = await admin.user()
    key = await admin.key(name="k", user_id=ann["id"], cache=True)
    assert await chat(proxy, key["secret"]) == "miss"
    await proxy.app[CACHE].flush()
    assert cache_entries(proxy) == 1
    # Another process (the CLI) records the choice; the server notices on its next poll.
    from nitroproxy.store.accounts import AccountStore
    from nitroproxy.store.preferences import set_preferences

    other = await AccountStore.open(proxy.settings.storage.path)
    try:
        await set_preferences(other, ann["id"], actor="cli:op", cache=False, require_user=True)
    finally:
        await other.close()
    await proxy.app[AUTH].refresh()
    for _ in range(50):
        if cache_entries(proxy) == 0:
            break
        import asyncio

        await asyncio.sleep(0.02)
    assert cache_entries(proxy) == 0
    assert await chat(proxy, key["secret"]) == "skip"


async def test_closing_an_account_stops_its_keys_at_once(admin: Admin) -> None:
    ann = await admin.user()
    key = await admin.key(name="k", user_id=ann["id"])
    await admin.chat(key["secret"])
    closed = await admin("POST", f"/admin/users/{ann['id']}/close")
    assert closed["status"] == "suspended" and closed["closed_at"] is not None
    await admin.chat(key["secret"], expect=403)
    reopened = await admin("PATCH", f"/admin/users/{ann['id']}", {"status": "active"})
    assert reopened["closed_at"] is None
    await admin.chat(key["secret"])
    await admin("POST", "/admin/users/usr_nobody/close", expect=404)


async def test_exports_are_portable_csv_and_match_the_documented_schema(admin: Admin) -> None:
    proxy = admin.proxy
    ann = await admin.user(name="Ann", email="ann.csv@example.org")
    key = await admin.key(name="k", user_id=ann["id"])
    for _ in range(2):
        await admin.chat(key["secret"])
    await wait_records(proxy, 2)
    status, kind, text = await fetch(proxy, "/privacy/export.schema.json", key=None)
    assert (status, kind) == (200, "application/schema+json")
    validator = jsonschema_rs.validator_for(__import__("json").loads(text))
    user_doc = await admin("GET", f"/admin/users/{ann['id']}/export")
    key_doc = await admin("GET", "/v1/me/export", key=key["secret"])
    config_doc = await admin("GET", "/v1/me/export", key=CLIENT_KEY)
    for doc in (user_doc, key_doc, config_doc):
        validator.validate(doc)
    assert not validator.is_valid({**user_doc, "format": "nitroproxy.export.v1"})

    status, kind, text = await fetch(proxy, f"/admin/users/{ann['id']}/export?format=csv")
    assert (status, kind) == (200, "text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in rows] == [r["id"] for r in user_doc["usage_records"]]
    assert rows[0]["stream"] == "false" and rows[0]["user_id"] == ann["id"]
    lines_csv = "/v1/me/export?format=csv&part=billing_lines"
    status, _, text = await fetch(proxy, lines_csv, key=key["secret"])
    assert status == 200 and text.splitlines()[0].startswith("day,user_id,key_id,model,requests")
    status, _, text = await fetch(proxy, f"/admin/users/{ann['id']}/export?part=nope")
    assert status == 400 and '"param":"part"' in text.replace(" ", "")


async def test_every_admin_action_is_audited_with_the_admins_name(admin: Admin) -> None:
    proxy = admin.proxy
    store = proxy.app[ACCOUNTS]
    carol = await admins.create_admin(store, "carol", actor="cli:root")
    await proxy.app[AUTH].refresh()

    async def act(who: str, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        return await admin(method, path, body, key=who, expect=expect)

    user = await act(ANN_ADMIN, "POST", "/admin/users", {"name": "Zed"}, expect=201)
    uid = user["id"]
    key = await act(BOB_ADMIN, "POST", "/admin/keys", {"name": "k", "user_id": uid}, expect=201)
    done = [
        ("cli:root", "admin.create", "admin:carol"),
        ("admin:ann", "user.create", uid),
        ("admin:bob", "key.create", key["id"]),
    ]
    user_path, key_path = f"/admin/users/{uid}", f"/admin/keys/{key['id']}"
    steps = [
        (carol.secret, "admin:carol", "PATCH", user_path, {"tier": "default"}, "user.update"),
        (ANN_ADMIN, "admin:ann", "PATCH", user_path, {"analytics": False}, "preferences.update"),
        (BOB_ADMIN, "admin:bob", "POST", f"{key_path}/rotate", None, "key.rotate"),
        (ANN_ADMIN, "admin:ann", "GET", f"{user_path}/export", None, "user.export"),
        (BOB_ADMIN, "admin:bob", "GET", f"{user_path}/statements", None, "user.statements"),
        (carol.secret, "admin:carol", "POST", f"{key_path}/revoke", None, "key.revoke"),
        (ANN_ADMIN, "admin:ann", "PATCH", user_path, {"status": "suspended"}, "user.suspend"),
        (BOB_ADMIN, "admin:bob", "POST", f"{user_path}/close", None, "user.close"),
        (ADMIN_KEY, "admin:admin", "DELETE", user_path, None, "user.erase"),
    ]
    for secret, actor, method, path, body, action in steps:
        await act(secret, method, path, body)
        target = key["id"] if "/keys/" in path else uid
        done.append((actor, action, target))
    log = (await admin("GET", "/admin/audit?limit=1000"))["data"]
    assert [(e["actor"], e["action"], e["target"]) for e in reversed(log)] == done
    by_ann = (await admin("GET", "/admin/audit?actor=admin:ann&limit=1000"))["data"]
    assert {e["action"] for e in by_ann} == {
        "user.create",
        "preferences.update",
        "user.export",
        "user.suspend",
    }

    # A revoked database admin key stops at once; config admin names cannot be taken over.
    await admins.revoke_admin(store, "carol", actor="cli:root")
    await proxy.app[AUTH].refresh()
    await act(carol.secret, "GET", "/admin/users", expect=401)
    from nitroproxy.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="never reused"):
        await admins.create_admin(store, "carol", actor="cli:root")
