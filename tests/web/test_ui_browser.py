"""The dashboard in a real browser: Debian's Chromium driven by Playwright, headless, against
a real proxy and the mock provider.

One walk through what an operator does: sign in with the admin key (by keyboard), create a
key, watch its calls arrive on the live feed, see them in the charts and the usage table,
revoke it (confirming in the dialog), see the next call refused, sign out. On the way every
page is screenshotted at desktop width and at 360 px (kept under ``artifacts/ui``), checked
for labels, and checked to fit the narrow screen. The browser's own request log must hold
nothing but the proxy's origin, and the canary prompt must be in no page and no response.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nitroproxy.security.crypto import ENV_VAR, generate_key
from tests.conftest import ADMIN_KEY, Proxy, ProxyFactory, wait_records

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed (pip install -e '.[test]')"
)

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "ui"
CANARY = "okapicanary7e3b51"
PAGES = ("overview", "usage", "live", "keys", "users", "deployments", "privacy", "audit")

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"Debian's chromium is not installed ({CHROMIUM}); `make test` installs it with "
    "apt-get where it can",
)

# Run in the page: what a screen reader or a keyboard user would miss.
AUDIT_JS = """() => {
  const problems = [];
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (!visible(el)) continue;
    if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label"))
      problems.push("unlabelled " + el.outerHTML.slice(0, 80));
  }
  for (const el of document.querySelectorAll("button, a[href]")) {
    if (!visible(el)) continue;
    const name = (el.getAttribute("aria-label") || el.textContent || "").trim();
    if (!name) problems.push("nameless " + el.outerHTML.slice(0, 80));
  }
  for (const svg of document.querySelectorAll("svg.chart")) {
    const ids = (svg.getAttribute("aria-labelledby") || "").split(" ");
    const title = ids.map((i) => document.getElementById(i)).filter(Boolean);
    if (svg.getAttribute("role") !== "img" || !title.length || !title[0].textContent.trim())
      problems.push("chart without a text alternative");
  }
  for (const t of document.querySelectorAll("table"))
    if (!t.querySelector("caption")) problems.push("table without caption");
  const h1s = [...document.querySelectorAll("h1")].filter(visible);
  if (h1s.length !== 1) problems.push(h1s.length + " visible h1");
  if (document.documentElement.scrollWidth > window.innerWidth + 1)
    problems.push("page wider than the screen: " + document.documentElement.scrollWidth);
  return problems;
}"""


class Browser:
    """One page in a fresh context, with the request log and every response body kept."""

    def __init__(self, page: Any, proxy: Proxy) -> None:
        self.page = page
        self.proxy = proxy
        self.requests: list[str] = []
        self.bodies: list[tuple[str, bytes]] = []
        self._reads: list[asyncio.Task[None]] = []
        page.context.on("request", lambda r: self.requests.append(r.url))
        page.context.on("response", self._on_response)

    def _on_response(self, response: Any) -> None:
        if "text/event-stream" in response.headers.get("content-type", ""):
            return  # never ends; its events are checked in the page's DOM
        self._reads.append(asyncio.ensure_future(self._read(response)))

    async def _read(self, response: Any) -> None:
        try:
            self.bodies.append((response.url, await response.body()))
        except Exception:  # a redirect or a body the page navigated away from
            self.bodies.append((response.url, b""))

    async def settled(self) -> None:
        await asyncio.gather(*self._reads)

    async def go(self, name: str) -> None:
        link = self.page.get_by_role("link", name=name_of(name), exact=True)
        await link.click()
        await self.page.locator("h1:focus").wait_for()

    async def snap(self, name: str) -> None:
        await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        problems = await self.page.evaluate(AUDIT_JS)
        assert not problems, f"{name}: {problems}"
        assert CANARY not in await self.page.content(), name


def name_of(page: str) -> str:
    return {"audit": "Audit log"}.get(page, page.capitalize())


@pytest.fixture
async def browser_page(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Browser]:
    monkeypatch.setenv(ENV_VAR, generate_key())  # users' names are sealed with it
    proxy_config["models"]["echo"] = {
        "deployments": [{"name": "echo-a", "provider": "mock-openai", "model": "m+echo"}]
    }
    proxy = await make_proxy(proxy_config)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            context = await chromium.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(10_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield Browser(page, proxy)
            assert not errors, errors
        finally:
            await chromium.close()


async def call(proxy: Proxy, key: str, *, stream: bool = False) -> int:
    body = {
        "model": "echo",
        "messages": [{"role": "user", "content": f"say {CANARY} please"}],
        "stream": stream,
    }
    r = await proxy.post("/v1/chat/completions", body, key=key)
    text = await r.text()
    if r.status == 200:
        assert CANARY in text  # the mock echoes it: the canary did go through
    return r.status


async def test_operator_walk_through_the_dashboard(browser_page: Browser) -> None:
    b, page, proxy = browser_page, browser_page.page, browser_page.proxy
    await page.goto(proxy.url + "/ui/")

    # Sign in by keyboard alone: the key field has focus, Enter submits.
    await page.locator("#signin-key:focus").wait_for()
    await b.snap("signin")
    await page.keyboard.type(ADMIN_KEY)
    await page.keyboard.press("Enter")
    await page.get_by_text("Signed in with the admin key").wait_for()
    assert await page.locator("#signin-key").input_value() == ""

    # Create a key with a limit.
    await b.go("keys")
    await page.get_by_label("Name", exact=True).fill("dashboard-demo")
    await page.get_by_label("Requests per minute").fill("100")
    await page.get_by_role("button", name="Create key").click()
    secret = (await page.locator("#new-secret-value").text_content() or "").strip()
    assert secret.startswith("np-")
    await b.snap("keys-created")

    # Calls with it arrive on the live feed as they finish.
    await b.go("live")
    await page.locator("#live-status", has_text="connected").wait_for()
    assert [await call(proxy, secret), await call(proxy, secret, stream=True)] == [200, 200]
    assert await call(proxy, secret) == 200
    await page.locator("#live-rows tr").nth(2).wait_for()
    assert await page.locator("#live-rows tr").count() == 3
    assert "dashboard-demo" not in await page.locator("#live-rows").inner_text()  # ids only
    await b.snap("live")
    records = await wait_records(proxy, 3)
    key_id = records[0].key_id

    # ... in the overview's totals and charts, and in the usage table by key.
    await b.go("overview")
    await page.locator("#total-requests", has_text="3").wait_for()
    assert await page.locator("figure svg.chart").count() == 5
    assert await page.locator("figure svg.chart rect").count() >= 2
    await b.snap("overview")
    await b.go("usage")
    await page.get_by_label("Group by").select_option("key")
    row = page.locator("tbody tr", has_text=key_id)
    await row.wait_for()
    assert (await row.locator("td").nth(1).inner_text()).strip() == "3"
    href = await page.get_by_role("link", name="Download CSV").get_attribute("href")
    csv = await page.evaluate("(href) => fetch(href).then((r) => r.text())", href)
    assert csv.splitlines()[0].startswith("group,requests,errors")
    assert any(line.startswith(f"{key_id},3,") for line in csv.splitlines())
    await b.snap("usage")

    # Revoke it from the keyboard: the dialog opens on Cancel; Shift+Tab reaches Confirm.
    await b.go("keys")
    await page.get_by_role("button", name="Revoke key dashboard-demo").focus()
    await page.keyboard.press("Enter")
    await page.locator("dialog[open] #confirm-cancel:focus").wait_for()
    await b.page.screenshot(path=str(ARTIFACTS / "keys-revoke-dialog.png"))
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Enter")
    await page.locator("tbody tr", has_text="dashboard-demo").get_by_text("revoked").wait_for()
    await b.snap("keys-revoked")
    assert await call(proxy, secret) == 401

    # A user: created, suspended, then erased after typing its id into the dialog.
    await b.go("users")
    await page.get_by_label("Name", exact=True).fill("Ann Example")
    await page.get_by_role("button", name="Create user").click()
    row = page.locator("tbody tr", has_text="Ann Example")
    user_id = (await row.locator("code").inner_text()).strip()
    await page.get_by_role("button", name=f"Suspend {user_id}").click()
    await page.get_by_role("button", name="Suspend", exact=True).click()
    await row.get_by_text("suspended").wait_for()
    await page.get_by_role("button", name=f"Erase {user_id}").click()
    erase = page.get_by_role("button", name="Erase user")
    assert await erase.is_disabled()
    await page.get_by_label(f"Type {user_id} to confirm").fill(user_id)
    await b.page.screenshot(path=str(ARTIFACTS / "users-erase-dialog.png"))
    await erase.click()
    await page.locator("tbody tr", has_text=user_id).get_by_text("erased").wait_for()
    assert "Ann Example" not in await page.locator("tbody").inner_text()
    await b.snap("users")

    for name in ("deployments", "privacy", "audit"):
        await b.go(name)
        await page.locator("table").first.wait_for()
        await b.snap(name)
    audit = await page.locator("tbody").inner_text()
    assert "key.create" in audit and "key.revoke" in audit

    # At 360 px every page still fits and keeps its labels.
    await page.set_viewport_size({"width": 360, "height": 800})
    for name in PAGES:
        await b.go(name)
        await page.wait_for_load_state("networkidle") if name != "live" else None
        await b.snap(f"narrow-{name}")

    # Sign out by keyboard; the old session cookie is worth nothing afterwards.
    await page.get_by_role("button", name="Sign out").focus()
    await page.keyboard.press("Enter")
    await page.get_by_text("Signed out.").wait_for()
    status = await page.evaluate("() => fetch('/ui/api/session').then((r) => r.status)")
    assert status == 401
    await b.snap("signed-out")

    await b.settled()
    origin = proxy.url + "/"
    foreign = [u for u in b.requests if not u.startswith(origin) and not u.startswith("data:")]
    assert not foreign, foreign
    assert len(b.bodies) > 20
    leaked = [url for url, body in b.bodies if CANARY.encode() in body]
    assert not leaked, leaked


async def test_a_client_key_sees_only_its_own_usage_read_only(
    browser_page: Browser,
) -> None:
    from tests.conftest import CLIENT_KEY

    b, page, proxy = browser_page, browser_page.page, browser_page.proxy
    assert await call(proxy, CLIENT_KEY) == 200
    await wait_records(proxy, 1)
    await page.set_viewport_size({"width": 360, "height": 800})
    await page.goto(proxy.url + "/ui/")
    await page.get_by_label("Admin key or API key").fill(CLIENT_KEY)
    await page.get_by_role("button", name="Sign in").click()
    await page.locator("#who", has_text="read-only").wait_for()
    visible = [
        (await link.inner_text()).strip()
        for link in await page.locator("#nav li:not([hidden]) a").all()
    ]
    assert visible == ["Overview", "Usage", "Live", "Privacy"]
    await page.locator("#total-requests", has_text="1").wait_for()
    await b.snap("key-overview")
    # The admin pages' API refuses this session even when asked directly.
    status = await page.evaluate("() => fetch('/ui/api/admin/keys').then((r) => r.status)")
    assert status == 403
