"""Authentication on every route: each kind of bad credential gets 401 or 403 in the route's
own error shape (OpenAI on /v1 and /admin, Anthropic on /v1/messages)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from nitroproxy.config import parse
from nitroproxy.core.errors import PermissionDenied, Unauthenticated
from nitroproxy.core.limits import KeyLimits
from nitroproxy.reports import openapi
from nitroproxy.store.keys import ApiKey, KeyEntry, KeySpec
from nitroproxy.web.auth import Authenticator
from tests.conftest import ADMIN_KEY, CLIENT_KEY
from tests.web.test_admin_api import CHAT, Admin, admin, data_key  # noqa: F401 (fixtures)

MESSAGES_BODY = {"model": "claude-test", "max_tokens": 5, "messages": CHAT["messages"]}

# (method, path, body): every route that needs a key.
V1_ROUTES = [
    ("POST", "/v1/chat/completions", CHAT),
    ("POST", "/v1/completions", {"model": "gpt-test", "prompt": "hi"}),
    ("POST", "/v1/embeddings", {"model": "embed-test", "input": "hi"}),
    ("GET", "/v1/models", None),
    ("GET", "/v1/me/usage", None),
    ("GET", "/v1/me/export", None),
    ("GET", "/v1/usage", None),
]
ANTHROPIC_ROUTES = [("POST", "/v1/messages", MESSAGES_BODY)]


def admin_routes() -> list[tuple[str, str, Any]]:
    routes = [("GET", "/admin/status", None)]
    for path, ops in openapi.document()["paths"].items():
        concrete = path.replace("{user_id}", "usr_x").replace("{key_id}", "key_x")
        routes += [(method.upper(), concrete, {}) for method in ops]
    return routes


def assert_shape(payload: Any, path: str, status: int) -> None:
    if path.startswith("/v1/messages"):
        assert payload["type"] == "error"
        expected = {401: "authentication_error", 403: "permission_error"}[status]
        assert payload["error"]["type"] == expected and payload["error"]["message"]
    else:
        assert set(payload["error"]) == {"message", "type", "param", "code"}
        assert payload["error"]["type"] == "invalid_request_error"


@pytest.fixture
async def credentials(admin: Admin) -> dict[str, str | None]:  # noqa: F811
    live = await admin.user()
    suspended = await admin.user()
    ok = await admin.key(name="ok", user_id=live["id"])
    revoked = await admin.key(name="revoked", user_id=live["id"])
    await admin("POST", f"/admin/keys/{revoked['id']}/revoke")
    expired = await admin.key(name="expired", expires_at=int(time.time()) - 10)
    held = await admin.key(name="held", user_id=suspended["id"])
    await admin("PATCH", f"/admin/users/{suspended['id']}", {"status": "suspended"})
    return {
        "none": None,
        "wrong": "np-not-a-real-key-0000000000000000000000000000",
        "revoked": revoked["secret"],
        "expired": expired["secret"],
        "suspended": held["secret"],
        "user key": ok["secret"],
        "config key": CLIENT_KEY,
    }


EXPECTED_V1 = {"none": 401, "wrong": 401, "revoked": 401, "expired": 401, "suspended": 403}
EXPECTED_ADMIN = {**EXPECTED_V1, "user key": 403, "config key": 403}


async def test_every_route_refuses_bad_credentials_in_its_own_shape(
    admin: Admin,  # noqa: F811
    credentials: dict[str, str | None],
) -> None:
    cases = [(r, EXPECTED_V1) for r in V1_ROUTES + ANTHROPIC_ROUTES]
    cases += [(r, EXPECTED_ADMIN) for r in admin_routes()]
    checked = 0
    for (method, path, body), expected in cases:
        for kind, status in expected.items():
            secret = credentials[kind]
            for header in ("Authorization", "x-api-key"):
                headers = {}
                if secret is not None:
                    headers = {header: f"Bearer {secret}" if header == "Authorization" else secret}
                async with admin.proxy.session.request(
                    method, admin.proxy.url + path, json=body, headers=headers
                ) as r:
                    payload = await r.json()
                    assert r.status == status, (method, path, kind, payload)
                    assert_shape(payload, path, status)
                    checked += 1
    assert checked > 150


async def test_good_keys_pass_with_either_header(
    admin: Admin,  # noqa: F811
    credentials: dict[str, str | None],
) -> None:
    for kind in ("user key", "config key"):
        secret = credentials[kind]
        assert secret is not None
        for headers in ({"Authorization": f"Bearer {secret}"}, {"x-api-key": secret}):
            async with admin.proxy.session.post(
                admin.proxy.url + "/v1/messages", json=MESSAGES_BODY, headers=headers
            ) as r:
                assert r.status == 200, await r.text()
    await admin("GET", "/admin/users", key=ADMIN_KEY)


# -- the authenticator alone ------------------------------------------------------------------


def entry(secret_digest: str, **spec: Any) -> KeyEntry:
    tier = spec.pop("tier", None)
    status = spec.pop("status", "active")
    revoked = spec.pop("revoked", False)
    key = ApiKey("key_1", "np-abc", KeySpec(name="k", user_id="usr_1", **spec), revoked, 0, 0)
    return KeyEntry(secret_digest, key, tier, status)


SETTINGS = parse(
    {
        "tiers": {
            "default": {"rpm": 60, "tpm": 1000, "max_concurrent": 4},
            "pro": {"rpm": 600, "budget_day_usd": 5},
        },
        "keys": [{"name": "cfg", "key": "np-config-key-1", "tier": "pro", "tpm": 7}],
        "auth": {"admin_key": "np-admin-key-1"},
    }
)


def test_limits_layer_key_over_tier_over_default() -> None:
    from nitroproxy.security.crypto import key_digest

    auth = Authenticator(SETTINGS)
    auth.load([entry(key_digest("np-db-key-1"), tier="pro", tpm=5, models=("gpt",))])
    db = auth.authenticate({"x-api-key": "np-db-key-1"})
    assert db.limits == KeyLimits(
        rpm=600, tpm=5, max_concurrent=4, budget_day_usd=5.0, budget_month_usd=None
    )
    assert db.models == frozenset({"gpt"}) and db.key_id == "key_1" and db.user_id == "usr_1"
    cfg = auth.authenticate({"Authorization": "Bearer np-config-key-1"})
    assert cfg.limits == KeyLimits(
        rpm=600, tpm=7, max_concurrent=4, budget_day_usd=5.0, budget_month_usd=None
    )
    assert auth.authenticate({"x-api-key": "np-admin-key-1"}).admin


def test_expiry_is_checked_on_the_injected_clock_at_request_time() -> None:
    from nitroproxy.security.crypto import key_digest

    now = [1000.0]
    auth = Authenticator(SETTINGS, clock=lambda: now[0])
    auth.load([entry(key_digest("np-db-key-1"), expires_at=1001)])
    assert auth.authenticate({"x-api-key": "np-db-key-1"}).key_id == "key_1"
    now[0] = 1001.0
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authenticate({"x-api-key": "np-db-key-1"})


def test_loading_replaces_store_keys_and_keeps_config_keys() -> None:
    from nitroproxy.security.crypto import key_digest

    auth = Authenticator(SETTINGS)
    auth.load([entry(key_digest("np-db-key-1"), status="suspended")])
    with pytest.raises(PermissionDenied):
        auth.authenticate({"x-api-key": "np-db-key-1"})
    auth.load([])
    with pytest.raises(Unauthenticated, match="invalid"):
        auth.authenticate({"x-api-key": "np-db-key-1"})
    assert auth.authenticate({"x-api-key": "np-config-key-1"}).name == "cfg"
    with pytest.raises(PermissionDenied, match="admin"):
        auth.authenticate_admin({"x-api-key": "np-config-key-1"})
