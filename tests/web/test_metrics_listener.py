"""``/metrics`` on its own port (``metrics.port``) and behind a bearer token
(``metrics.token``), on real listeners."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from nitroproxy import config
from nitroproxy.config import ConfigError
from tests.conftest import ProxyFactory

MESSAGES = [{"role": "user", "content": "hi"}]
TOKEN = "scrape-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_metrics_on_their_own_port_leave_the_api_port(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    port = free_port()
    proxy_config["metrics"] = {"port": port, "host": "127.0.0.1"}
    proxy = await make_proxy(proxy_config)
    r = await proxy.post("/v1/chat/completions", {"model": "gpt-test", "messages": MESSAGES})
    assert r.status == 200

    on_api = await proxy.session.get(proxy.url + "/metrics")
    assert on_api.status == 404
    scrape = await proxy.session.get(f"http://127.0.0.1:{port}/metrics")
    assert scrape.status == 200
    assert scrape.headers["Content-Type"].startswith("text/plain")
    assert 'nitroproxy_requests_total{endpoint="chat.completions"' in await scrape.text()
    # The metrics listener serves nothing of the API.
    other = await proxy.session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={})
    assert other.status == 404


@pytest.mark.parametrize("own_port", [False, True])
async def test_metrics_token_is_required_when_set(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], own_port: bool
) -> None:
    proxy_config["metrics"] = {"token": TOKEN}
    base = None
    if own_port:
        port = free_port()
        proxy_config["metrics"]["port"] = port
        base = f"http://127.0.0.1:{port}"
    proxy = await make_proxy(proxy_config)
    url = (base or proxy.url) + "/metrics"

    missing = await proxy.session.get(url)
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    body = await missing.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert TOKEN not in await missing.text()
    wrong = await proxy.session.get(url, headers={"Authorization": f"Bearer {TOKEN}x"})
    assert wrong.status == 401
    good = await proxy.session.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert good.status == 200
    assert "nitroproxy_active_streams" in await good.text()


def test_metrics_settings_are_parsed_and_checked() -> None:
    s = config.parse({"metrics": {"port": 9464, "host": "0.0.0.0", "token": "t0k"}})
    assert (s.metrics.port, s.metrics.host, s.metrics.token) == (9464, "0.0.0.0", "t0k")
    assert "t0k" not in repr(s.metrics)
    assert config.parse({}).metrics.port is None
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        config.parse({"metrics": {"port": 70000}})
    with pytest.raises(ConfigError, match=r"metrics\.tokens: unknown setting"):
        config.parse({"metrics": {"tokens": "x"}})
