"""The dashboard's server side on a real proxy: the session cookie, CSRF, sign-out, the
admin routes under a session, the live feed over SSE, and the canary in no response."""

from __future__ import annotations

import asyncio
import copy
import ssl
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import trustme
from yarl import URL

from nitroproxy import config
from nitroproxy.security import tls
from nitroproxy.security.crypto import ENV_VAR, generate_key
from nitroproxy.web.app import create_app
from nitroproxy.web.server import start
from tests.conftest import ADMIN_KEY, CLIENT_KEY, Proxy, ProxyFactory, wait_records

CANARY = "lemurcanary93c0aa"
MESSAGES = [{"role": "user", "content": f"repeat {CANARY}"}]


class Dashboard:
    """A signed-in browser's side of the conversation: the cookie jar and the CSRF token."""

    def __init__(self, proxy: Proxy, session: aiohttp.ClientSession, who: dict[str, Any]):
        self.proxy = proxy
        self.http = session
        self.who = who

    async def get(self, path: str) -> aiohttp.ClientResponse:
        return await self.http.get(self.proxy.url + path)

    async def write(self, method: str, path: str, body: Any = None) -> aiohttp.ClientResponse:
        headers = {"X-CSRF-Token": self.who["csrf"]}
        return await self.http.request(method, self.proxy.url + path, json=body, headers=headers)


async def sign_in(proxy: Proxy, key: str) -> Dashboard:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    r = await session.post(proxy.url + "/ui/api/session", json={"key": key})
    assert r.status == 201, await r.text()
    return Dashboard(proxy, session, await r.json())


@pytest.fixture
async def echo_proxy(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Proxy:
    monkeypatch.setenv(ENV_VAR, generate_key())  # users' names are sealed with it
    proxy_config["models"]["echo"] = {
        "deployments": [{"name": "echo-a", "provider": "mock-openai", "model": "m+echo"}]
    }
    proxy: Proxy = await make_proxy(proxy_config)
    return proxy


async def test_the_session_cookie_is_httponly_strict_and_scoped(echo_proxy: Proxy) -> None:
    r = await echo_proxy.session.post(echo_proxy.url + "/ui/api/session", json={"key": ADMIN_KEY})
    assert r.status == 201
    cookie = SimpleCookie(r.headers["Set-Cookie"])["nitroproxy_ui"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/ui/"
    assert not cookie["secure"]  # plain HTTP here; the TLS test below sees Secure
    assert ADMIN_KEY not in await r.text()
    body = await r.json()
    assert body["role"] == "admin" and len(body["csrf"]) >= 32
    assert r.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


async def test_a_bad_key_opens_no_session(echo_proxy: Proxy) -> None:
    r = await echo_proxy.session.post(echo_proxy.url + "/ui/api/session", json={"key": "np-nope"})
    assert r.status == 401
    assert "Set-Cookie" not in r.headers
    assert (await r.json())["error"]["code"] == "invalid_api_key"
    r = await echo_proxy.session.get(echo_proxy.url + "/ui/api/session")
    assert r.status == 401


async def test_writes_need_the_csrf_token_and_this_origin(echo_proxy: Proxy) -> None:
    ui = await sign_in(echo_proxy, ADMIN_KEY)
    url = echo_proxy.url + "/ui/api/admin/keys"
    try:
        r = await ui.http.post(url, json={"name": "x"})
        assert r.status == 403 and (await r.json())["error"]["code"] == "csrf_failed"
        r = await ui.http.post(url, json={"name": "x"}, headers={"X-CSRF-Token": "wrong"})
        assert r.status == 403
        headers = {"X-CSRF-Token": ui.who["csrf"], "Origin": "https://evil.example"}
        r = await ui.http.post(url, json={"name": "x"}, headers=headers)
        assert r.status == 403 and (await r.json())["error"]["code"] == "cross_site_request"
        r = await ui.write("POST", "/ui/api/admin/keys", {"name": "made-in-the-ui"})
        assert r.status == 201
        made = await r.json()
        assert made["secret"].startswith("np-")
        # The same handler as /admin/keys: it is in the admin API's list, and audited.
        listed = await echo_proxy.session.get(
            echo_proxy.url + "/admin/keys", headers=echo_proxy.headers(ADMIN_KEY)
        )
        assert made["id"] in {k["id"] for k in (await listed.json())["data"]}
        audit = await (await ui.get("/ui/api/admin/audit")).json()
        assert audit["data"][0]["action"] == "key.create"
        assert audit["data"][0]["actor"] == "admin:admin"  # the signed-in admin, by name
    finally:
        await ui.http.close()


async def test_sign_out_ends_the_session(echo_proxy: Proxy) -> None:
    ui = await sign_in(echo_proxy, ADMIN_KEY)
    try:
        assert (await ui.get("/ui/api/session")).status == 200
        stale = dict(ui.http.cookie_jar.filter_cookies(URL(echo_proxy.url + "/ui/")))
        assert (await ui.http.delete(echo_proxy.url + "/ui/api/session")).status == 403
        r = await ui.write("DELETE", "/ui/api/session")
        assert r.status == 204
        assert (await ui.get("/ui/api/session")).status == 401
        # The old cookie, sent again by hand, opens nothing.
        token = stale["nitroproxy_ui"].value
        r = await echo_proxy.session.get(
            echo_proxy.url + "/ui/api/admin/keys", headers={"Cookie": f"nitroproxy_ui={token}"}
        )
        assert r.status == 401
    finally:
        await ui.http.close()


async def test_a_revoked_key_ends_its_session_and_keys_cannot_use_admin_pages(
    echo_proxy: Proxy,
) -> None:
    admin = await sign_in(echo_proxy, ADMIN_KEY)
    made = await (await admin.write("POST", "/ui/api/admin/keys", {"name": "short-lived"})).json()
    holder = await sign_in(echo_proxy, made["secret"])
    try:
        assert holder.who["role"] == "key" and holder.who["deployments"] == []
        assert (await holder.get("/ui/api/admin/keys")).status == 403
        assert (await holder.get("/ui/api/admin/status")).status == 403
        assert (await holder.get("/ui/api/overview")).status == 200
        revoked = await admin.write("POST", f"/ui/api/admin/keys/{made['id']}/revoke")
        assert revoked.status == 200
        r = await holder.get("/ui/api/overview")
        assert r.status == 401 and (await r.json())["error"]["code"] == "key_revoked"
    finally:
        await admin.http.close()
        await holder.http.close()


async def test_a_key_session_sees_its_own_usage_only(echo_proxy: Proxy) -> None:
    admin = await sign_in(echo_proxy, ADMIN_KEY)
    other = await (await admin.write("POST", "/ui/api/admin/keys", {"name": "other"})).json()
    for key in (CLIENT_KEY, CLIENT_KEY, other["secret"]):
        r = await echo_proxy.post(
            "/v1/chat/completions", {"model": "echo", "messages": MESSAGES}, key
        )
        assert r.status == 200
    await wait_records(echo_proxy, 3)
    holder = await sign_in(echo_proxy, CLIENT_KEY)
    try:
        mine = await (await holder.get("/ui/api/usage?group_by=key&key_id=" + other["id"])).json()
        assert [(r["group"], r["requests"]) for r in mine["rows"]] == [("cfg:test", 2)]
        points = (await (await holder.get("/ui/api/overview")).json())["points"]
        assert sum(p["requests"] for p in points) == 2
        everyone = (await (await admin.get("/ui/api/overview")).json())["points"]
        assert sum(p["requests"] for p in everyone) == 3
        by_deployment = await (await admin.get("/ui/api/usage?group_by=deployment")).json()
        assert [(r["group"], r["requests"]) for r in by_deployment["rows"]] == [("echo-a", 3)]
        csv = await (await admin.get("/ui/api/usage.csv?group_by=model")).text()
        assert csv.splitlines() == [
            "group,requests,errors,prompt_tokens,completion_tokens,cached_tokens,"
            "reasoning_tokens,cost_usd",
            *[line for line in csv.splitlines()[1:] if line.startswith("echo,3,0,")],
        ]
    finally:
        await admin.http.close()
        await holder.http.close()


async def read_events(response: aiohttp.ClientResponse, count: int) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    kind = None
    async with asyncio.timeout(5):
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind or "message", orjson.loads(line[6:])))
                if len(events) == count:
                    return events
    return events


async def test_the_live_feed_streams_metadata_of_each_call(echo_proxy: Proxy) -> None:
    admin = await sign_in(echo_proxy, ADMIN_KEY)
    holder = await sign_in(echo_proxy, CLIENT_KEY)
    try:
        everything = await admin.get("/ui/api/feed")
        own = await holder.get("/ui/api/feed")
        assert everything.headers["Content-Type"].startswith("text/event-stream")
        assert (await everything.content.readline()).startswith(b": connected")
        assert (await own.content.readline()).startswith(b": connected")
        made = await (await admin.write("POST", "/ui/api/admin/keys", {"name": "feed"})).json()
        chat = {"model": "echo", "messages": MESSAGES}
        for key, stream in ((made["secret"], False), (CLIENT_KEY, True)):
            r = await echo_proxy.post("/v1/chat/completions", {**chat, "stream": stream}, key)
            assert CANARY in await r.text()
        seen = await read_events(everything, 2)
        mine = await read_events(own, 1)
        assert [e["key_id"] for _, e in seen] == [made["id"], "cfg:test"]
        assert [e["stream"] for _, e in seen] == [False, True]
        assert mine == [seen[1]]  # a key's session sees its own key's calls only
        kind, event = seen[1]
        assert kind == "call" and event["model"] == "echo" and event["status"] == 200
        assert "client_ip" not in event and "user_agent" not in event
        assert CANARY not in orjson.dumps(seen).decode()
        everything.close()
        own.close()
    finally:
        await admin.http.close()
        await holder.http.close()


async def test_no_dashboard_response_holds_the_canary(echo_proxy: Proxy) -> None:
    for stream in (False, True):
        body = {"model": "echo", "messages": MESSAGES, "stream": stream}
        r = await echo_proxy.post("/v1/chat/completions", body)
        assert CANARY in await r.text()
    records = await wait_records(echo_proxy, 2)
    ui = await sign_in(echo_proxy, ADMIN_KEY)
    created = await ui.write("POST", "/ui/api/admin/users", {"name": "Ann"})
    assert created.status == 201, await created.text()
    user = await created.json()
    paths = [
        "/ui/",
        "/ui/assets/app.js",
        "/ui/api/session",
        "/ui/api/overview",
        *(f"/ui/api/usage?group_by={g}" for g in ui.who["group_by"]),
        "/ui/api/usage.csv",
        "/ui/api/admin/status",
        "/ui/api/admin/keys",
        "/ui/api/admin/users",
        f"/ui/api/admin/users/{user['id']}/export",
        "/ui/api/admin/audit",
        f"/ui/api/admin/usage/records?key_id={records[0].key_id}",
        "/privacy",
    ]
    try:
        for path in paths:
            r = await ui.get(path)
            assert r.status == 200, (path, r.status, await r.text())
            assert CANARY not in await r.text(), path
    finally:
        await ui.http.close()


async def test_assets_are_served_from_the_package_with_a_strict_policy(echo_proxy: Proxy) -> None:
    r = await echo_proxy.session.get(echo_proxy.url + "/ui", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/ui/"
    page = await echo_proxy.session.get(echo_proxy.url + "/ui/")
    assert page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    html = await page.text()
    assert "http://" not in html and "https://" not in html  # nothing from any other host
    js = await echo_proxy.session.get(echo_proxy.url + "/ui/assets/app.js")
    assert js.headers["Content-Type"].startswith("text/javascript")
    again = await echo_proxy.session.get(
        echo_proxy.url + "/ui/assets/app.js", headers={"If-None-Match": js.headers["ETag"]}
    )
    assert again.status == 304
    assert (await echo_proxy.session.get(echo_proxy.url + "/ui/assets/..%2Fapp.py")).status == 404


async def test_ui_off_serves_nothing(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["ui"] = {"enabled": False}
    proxy = await make_proxy(proxy_config)
    assert (await proxy.session.get(proxy.url + "/ui/")).status == 404
    assert (await proxy.session.get(proxy.url + "/ui/api/admin/keys")).status == 404


async def test_the_cookie_is_secure_under_tls(proxy_config: dict[str, Any], tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "s.crt", tmp_path / "s.key"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    proxy_config["server"] = {"tls": {"cert": str(cert), "key": str(key)}}
    settings = config.parse(copy.deepcopy(proxy_config))
    runner, port = await start(
        create_app(settings), "127.0.0.1", 0, ssl_context=tls.server_context_for(settings)
    )
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    try:
        async with aiohttp.ClientSession() as http:
            r = await http.post(
                f"https://127.0.0.1:{port}/ui/api/session", json={"key": ADMIN_KEY}, ssl=client_ctx
            )
            assert r.status == 201
            assert SimpleCookie(r.headers["Set-Cookie"])["nitroproxy_ui"]["secure"]
    finally:
        await runner.cleanup()
