"""The admin API end to end on a real server: users, keys, usage, audit, export, erase."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from nitroproxy.security.crypto import ENV_VAR, generate_key
from nitroproxy.web.appkeys import ACCOUNTS
from tests.conftest import ADMIN_KEY, CLIENT_KEY, Proxy, ProxyFactory, wait_records
from tests.store.test_rights import raw_bytes

# max_tokens: a call reserves its prompt and max_tokens against budgets (the mock answers
# with 12 tokens).
CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12}


class Admin:
    """Calls the admin API (or any route) and checks the status."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = ADMIN_KEY,
        expect: int = 200,
        **kw: Any,
    ) -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        async with self.proxy.session.request(
            method, self.proxy.url + path, json=body, headers=headers, **kw
        ) as r:
            payload = await r.json()
            assert r.status == expect, payload
            assert r.content_type == "application/json"
            return payload

    async def user(self, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self("POST", "/admin/users", body, expect=201)
        return result

    async def key(self, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self("POST", "/admin/keys", body, expect=201)
        return result

    async def chat(self, secret: str, expect: int = 200) -> Any:
        return await self("POST", "/v1/chat/completions", CHAT, key=secret, expect=expect)


@pytest.fixture
def data_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = generate_key()
    monkeypatch.setenv(ENV_VAR, key)
    return key


@pytest.fixture
async def admin(make_proxy: ProxyFactory, proxy_config: dict[str, Any], data_key: str) -> Admin:
    proxy_config["tiers"] = {"default": {"rpm": 100}, "pro": {"rpm": 1000}}
    return Admin(await make_proxy(proxy_config))


def assert_openai_error(payload: Any, code: str | None = None, param: str | None = None) -> None:
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"message", "type", "param", "code"}
    if code is not None:
        assert payload["error"]["code"] == code
    if param is not None:
        assert payload["error"]["param"] == param


async def test_users_are_created_read_listed_rectified_and_suspended(admin: Admin) -> None:
    ann = await admin.user(name="Ann", email="ann@example.org", tier="pro")
    assert ann["id"].startswith("usr_") and ann["status"] == "active"
    assert await admin("GET", f"/admin/users/{ann['id']}") == ann
    bob = await admin.user()
    page = await admin("GET", "/admin/users?limit=1")
    assert [u["id"] for u in page["data"]] == [ann["id"]] and page["has_more"]
    page = await admin("GET", f"/admin/users?after={ann['id']}")
    assert [u["id"] for u in page["data"]] == [bob["id"]] and not page["has_more"]
    found = await admin("GET", "/admin/users?email=ANN@example.org")
    assert [u["id"] for u in found["data"]] == [ann["id"]]

    fixed = await admin("PATCH", f"/admin/users/{ann['id']}", {"name": "Anne", "email": None})
    assert (fixed["name"], fixed["email"], fixed["tier"]) == ("Anne", None, "pro")
    key = await admin.key(name="laptop", user_id=ann["id"])
    await admin.chat(key["secret"])
    await admin("PATCH", f"/admin/users/{ann['id']}", {"status": "suspended"})
    refused = await admin.chat(key["secret"], expect=403)
    assert_openai_error(refused, code="user_suspended")
    await admin("PATCH", f"/admin/users/{ann['id']}", {"status": "active"})
    await admin.chat(key["secret"])


async def test_a_key_secret_is_shown_once_and_rotation_and_revocation_apply_at_once(
    admin: Admin,
) -> None:
    ann = await admin.user()
    key = await admin.key(name="ci", user_id=ann["id"], models=["gpt-test"], rpm=5)
    secret = key.pop("secret")
    assert secret.startswith("np-") and key["prefix"] == secret[:10]
    assert await admin("GET", f"/admin/keys/{key['id']}") == key
    listed = await admin("GET", f"/admin/keys?user_id={ann['id']}")
    assert listed["data"] == [key] and "secret" not in str(listed)
    await admin.chat(secret)

    rotated = await admin("POST", f"/admin/keys/{key['id']}/rotate")
    assert rotated["id"] == key["id"] and rotated["secret"] != secret
    assert_openai_error(await admin.chat(secret, expect=401), code="invalid_api_key")
    await admin.chat(rotated["secret"])

    revoked = await admin("POST", f"/admin/keys/{key['id']}/revoke")
    assert revoked["revoked"] is True
    assert_openai_error(await admin.chat(rotated["secret"], expect=401), code="key_revoked")
    active = await admin("GET", "/admin/keys?include_revoked=false")
    assert active["data"] == []


async def test_key_limits_and_models_are_enforced(admin: Admin) -> None:
    ann = await admin.user(tier="pro")
    key = await admin.key(name="two", user_id=ann["id"], models=["gpt-test"], rpm=2)
    for _ in range(2):
        await admin.chat(key["secret"])
    limited = await admin.chat(key["secret"], expect=429)
    assert limited["error"]["type"] == "rate_limit_error"
    other = {"model": "claude-test", "messages": CHAT["messages"]}
    refused = await admin("POST", "/v1/chat/completions", other, key=key["secret"], expect=403)
    assert_openai_error(refused, param="model")
    # One call costs 137.5 micro-dollars (the mock's 7 + 12 tokens) and reserves its prompt's
    # ceiling (its request bytes) and 12 output tokens: the budget admits exactly two, since
    # a third could pass it.
    cost, reserved = 137_500, len(json.dumps(CHAT)) * 2_500 + 12 * 10_000
    budget = (2 * cost + reserved - cost // 2) / 1e9
    budgeted = await admin.key(name="budget", user_id=ann["id"], budget_day_usd=budget)
    for status in (200, 200):
        await admin.chat(budgeted["secret"], expect=status)
    over = await admin.chat(budgeted["secret"], expect=429)
    assert_openai_error(over, code="insufficient_quota")


async def test_usage_and_the_audit_log(admin: Admin) -> None:
    ann = await admin.user(name="Ann Auditcanary", email="audit@example.org")
    key = await admin.key(name="k", user_id=ann["id"])
    await admin.chat(key["secret"])
    await admin.chat(CLIENT_KEY)
    await wait_records(admin.proxy, 2)
    report = await admin("GET", "/admin/usage?group_by=user")
    assert {r["group"]: r["requests"] for r in report["rows"]} == {ann["id"]: 1, "alice": 1}
    mine = await admin("GET", f"/admin/usage?group_by=model&key_id={key['id']}")
    assert [(r["group"], r["requests"]) for r in mine["rows"]] == [("gpt-test", 1)]
    records = await admin("GET", f"/admin/usage/records?user_id={ann['id']}")
    assert [r["key_id"] for r in records["data"]] == [key["id"]]

    log = await admin("GET", "/admin/audit")
    assert [(e["actor"], e["action"], e["target"]) for e in log["data"]] == [
        ("admin:admin", "key.create", key["id"]),
        ("admin:admin", "user.create", ann["id"]),
    ]
    text = str(log)
    for secret in (key["secret"], "Auditcanary", "audit@example.org", ADMIN_KEY):
        assert secret not in text
    older = await admin("GET", f"/admin/audit?before={log['data'][0]['seq']}")
    assert [e["action"] for e in older["data"]] == ["user.create"]


async def test_invalid_input_gets_400_naming_the_parameter(admin: Admin) -> None:
    ann = await admin.user()
    cases = [
        ("POST", "/admin/users", {"tier": "platinum"}, "tier"),
        ("POST", "/admin/users", {"nickname": "x"}, "nickname"),
        ("POST", "/admin/users", {"email": "nope"}, "email"),
        ("PATCH", f"/admin/users/{ann['id']}", {"status": "erased"}, "status"),
        ("PATCH", f"/admin/users/{ann['id']}", {"tier": None}, "tier"),
        ("POST", "/admin/keys", {}, "name"),
        ("POST", "/admin/keys", {"name": "k", "rpm": 0}, "rpm"),
        ("POST", "/admin/keys", {"name": "k", "models": []}, "models"),
        ("POST", "/admin/keys", {"name": "k", "models": ["nope"]}, "models"),
        ("POST", "/admin/keys", {"name": "k", "user_id": "usr_none"}, "user_id"),
        ("GET", "/admin/users?limit=0", None, "limit"),
        ("GET", "/admin/usage?group_by=color", None, "group_by"),
        ("GET", "/admin/usage?from=yesterday", None, "from"),
        ("GET", "/admin/audit?before=x", None, "before"),
    ]
    for method, path, body, param in cases:
        payload = await admin(method, path, body, expect=400)
        assert_openai_error(payload, param=param)
    assert_openai_error(await admin("POST", "/admin/users", [1], expect=400))
    for path in ("/admin/users/usr_none", "/admin/keys/key_none", "/admin/users/usr_none/export"):
        assert_openai_error(await admin("GET", path, expect=404))


async def test_pii_without_a_data_key_is_refused_clearly(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    admin = Admin(await make_proxy(proxy_config))
    payload = await admin("POST", "/admin/users", {"email": "a@example.org"}, expect=400)
    assert_openai_error(payload, code="data_key_missing", param="email")
    assert ENV_VAR in payload["error"]["message"]
    assert (await admin.user(tier="default"))["email"] is None


async def test_export_and_erase_through_the_api(admin: Admin, tmp_path: Path) -> None:
    name, email = "Quentin Canarybird", "quentin.canary@example.org"
    ann = await admin.user(name=name, email=email)
    bob = await admin.user(name="Bob", email="bob@example.org")
    ann_key = await admin.key(name="a", user_id=ann["id"])
    bob_key = await admin.key(name="b", user_id=bob["id"])
    for secret in (ann_key["secret"], ann_key["secret"], bob_key["secret"]):
        await admin.chat(secret)
    await wait_records(admin.proxy, 3)
    totals = await admin("GET", "/admin/usage?group_by=day")

    doc = await admin("GET", f"/admin/users/{ann['id']}/export")
    assert doc["user"]["email"] == email and len(doc["usage_records"]) == 2
    assert bob["id"] not in str(doc) and bob_key["id"] not in str(doc)

    result = await admin("DELETE", f"/admin/users/{ann['id']}")
    assert result["keys_deleted"] == 1 and result["usage_records_deleted"] == 2
    assert result["wal_truncated"] is True
    await admin.chat(ann_key["secret"], expect=401)
    assert await admin("GET", "/admin/usage?group_by=day") == totals
    gone = await admin("GET", f"/admin/users/{ann['id']}")
    assert (gone["name"], gone["email"], gone["status"]) == (None, None, "erased")
    erased = await admin("PATCH", f"/admin/users/{ann['id']}", {"name": "x"}, expect=400)
    assert_openai_error(erased, code="user_erased")

    raw = raw_bytes(Path(admin.proxy.settings.storage.path))
    assert name.encode() not in raw and email.encode() not in raw
    audit = await admin("GET", f"/admin/audit?target={ann['id']}&action=user.erase")
    assert len(audit["data"]) == 1


async def test_a_revocation_from_another_process_applies_within_a_second(admin: Admin) -> None:
    from nitroproxy.store import keys
    from nitroproxy.store.accounts import AccountStore

    key = await admin.key(name="k")
    await admin.chat(key["secret"])
    other = await AccountStore.open(admin.proxy.settings.storage.path)  # as the CLI would
    try:
        await keys.revoke_key(other, key["id"], actor="cli")
        started = time.monotonic()
        while True:
            async with admin.proxy.session.post(
                admin.proxy.url + "/v1/chat/completions",
                json=CHAT,
                headers={"x-api-key": key["secret"]},
            ) as r:
                if r.status == 401:
                    break
                assert r.status == 200
            assert time.monotonic() - started < 1.0
            await asyncio.sleep(0.05)
    finally:
        await other.close()
    assert admin.proxy.app[ACCOUNTS] is not other
