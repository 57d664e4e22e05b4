"""Encryption in transit: HTTPS on the listener (optionally mutual), verified upstreams."""

from __future__ import annotations

import copy
import io
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import openai
import pytest
import structlog
import trustme
from aiohttp import web
from openai.types.chat import ChatCompletionMessageParam

from nitroproxy import config
from nitroproxy.core.types import ApiFormat
from nitroproxy.mock import MockSettings, create_mock_app
from nitroproxy.security import tls
from nitroproxy.telemetry import logs
from nitroproxy.web.app import create_app
from nitroproxy.web.server import start
from tests.conftest import ADMIN_KEY, CLIENT_KEY, UPSTREAM_KEY, ProxyFactory

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello over TLS"}]
Serve = Callable[..., Any]


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    logs.configure_logging(level="info", fmt="json", stream=stream)
    yield stream
    logs.configure_logging(level="warning", fmt="json")
    structlog.contextvars.clear_contextvars()
    root.setLevel(level)


def write_leaf(ca: trustme.CA, tmp_path: Path, name: str, *identities: str) -> tuple[str, str]:
    leaf = ca.issue_cert(*identities)
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return str(cert), str(key)


def write_ca(ca: trustme.CA, tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an app on a loopback port, over HTTPS when given a context; returns its port."""
    runners: list[web.AppRunner] = []

    async def run(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> int:
        runner, port = await start(app, "127.0.0.1", 0, shutdown_grace=2.0, ssl_context=ssl_context)
        runners.append(runner)
        return port

    yield run
    for runner in reversed(runners):
        await runner.cleanup()


async def https_proxy(serve: Serve, cfg: dict[str, Any]) -> str:
    settings = config.parse(copy.deepcopy(cfg))
    port = await serve(create_app(settings), tls.server_context_for(settings))
    return f"https://127.0.0.1:{port}"


async def test_openai_sdk_talks_to_the_proxy_over_https(
    serve: Serve, proxy_config: dict[str, Any], tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert, key = write_leaf(ca, tmp_path, "server", "127.0.0.1")
    proxy_config["server"] = {"tls": {"cert": cert, "key": key}}
    url = await https_proxy(serve, proxy_config)
    async with (
        httpx2.AsyncClient(verify=trusting(ca)) as http,
        openai.AsyncOpenAI(
            base_url=url + "/v1", api_key=CLIENT_KEY, http_client=http, max_retries=0
        ) as client,
    ):
        reply = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        stream = await client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert reply.choices[0].message.content == "".join(pieces) != ""


async def test_a_client_that_does_not_trust_the_ca_cannot_connect(
    serve: Serve, proxy_config: dict[str, Any], tmp_path: Path
) -> None:
    cert, key = write_leaf(trustme.CA(), tmp_path, "server", "127.0.0.1")
    proxy_config["server"] = {"tls": {"cert": cert, "key": key}}
    url = await https_proxy(serve, proxy_config)
    async with (
        httpx2.AsyncClient(verify=trusting(trustme.CA())) as http,
        openai.AsyncOpenAI(
            base_url=url + "/v1", api_key=CLIENT_KEY, http_client=http, max_retries=0
        ) as client,
    ):
        with pytest.raises(openai.APIConnectionError):
            await client.models.list()


async def test_client_ca_refuses_clients_without_a_certificate(
    serve: Serve, proxy_config: dict[str, Any], tmp_path: Path
) -> None:
    server_ca, client_ca = trustme.CA(), trustme.CA()
    cert, key = write_leaf(server_ca, tmp_path, "server", "127.0.0.1")
    proxy_config["server"] = {
        "tls": {"cert": cert, "key": key, "client_ca": write_ca(client_ca, tmp_path, "client")}
    }
    url = await https_proxy(serve, proxy_config)
    with_cert = trusting(server_ca)
    client_ca.issue_cert("client@example.org").configure_cert(with_cert)
    stranger = trusting(server_ca)  # a certificate from a CA the server does not accept
    trustme.CA().issue_cert("stranger@example.org").configure_cert(stranger)
    async with aiohttp.ClientSession() as session:
        for refused in (trusting(server_ca), stranger):
            with pytest.raises(aiohttp.ClientError):
                async with session.get(url + "/healthz", ssl=refused) as resp:
                    await resp.read()
        async with session.get(url + "/healthz", ssl=with_cert) as resp:
            assert resp.status == 200


@pytest.fixture
async def tls_upstream(serve: Serve, tmp_path: Path) -> tuple[str, str]:
    """The mock provider over HTTPS, with a certificate from its own CA; returns (base URL,
    path of that CA's certificate)."""
    ca = trustme.CA()
    cert, key = write_leaf(ca, tmp_path, "upstream", "127.0.0.1")
    port = await serve(
        create_mock_app(MockSettings(api_key=UPSTREAM_KEY)),
        tls.server_context(config.TLSSettings(cert=cert, key=key)),
    )
    return f"https://127.0.0.1:{port}/v1", write_ca(ca, tmp_path, "upstream")


def point_at(cfg: dict[str, Any], base_url: str, **provider: Any) -> dict[str, Any]:
    cfg["providers"]["mock-openai"].update(base_url=base_url, **provider)
    return cfg


async def chat(proxy: Any) -> tuple[int, dict[str, Any]]:
    body = {"model": "gpt-test", "messages": MESSAGES}
    async with await proxy.post("/v1/chat/completions", body) as resp:
        return resp.status, await resp.json()


async def test_an_untrusted_upstream_certificate_is_a_502_that_says_why(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], tls_upstream: tuple[str, str]
) -> None:
    proxy = await make_proxy(point_at(proxy_config, tls_upstream[0]))
    status, body = await chat(proxy)
    assert status == 502
    assert body["error"]["code"] == "upstream_tls_error"
    assert "TLS certificate verification failed" in body["error"]["message"]


async def test_the_provider_ca_bundle_makes_the_upstream_trusted(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], tls_upstream: tuple[str, str]
) -> None:
    url, ca_path = tls_upstream
    proxy = await make_proxy(point_at(proxy_config, url, ca_bundle=ca_path))
    status, body = await chat(proxy)
    assert status == 200, body
    assert body["choices"][0]["message"]["content"]


async def test_insecure_skip_verify_works_but_warns_at_start_and_on_status(
    make_proxy: ProxyFactory,
    proxy_config: dict[str, Any],
    tls_upstream: tuple[str, str],
    out: io.StringIO,
) -> None:
    proxy = await make_proxy(point_at(proxy_config, tls_upstream[0], insecure_skip_verify=True))
    warnings = [json.loads(line) for line in out.getvalue().splitlines()]
    assert any(
        w["level"] == "warning" and w.get("provider") == "mock-openai" and "disabled" in w["event"]
        for w in warnings
    ), warnings
    status, _ = await chat(proxy)
    assert status == 200
    async with proxy.session.get(
        proxy.url + "/admin/status", headers=proxy.headers(ADMIN_KEY)
    ) as r:
        status_body = await r.json()
    assert status_body["warnings"] == [
        "provider 'mock-openai': upstream TLS certificate verification is disabled "
        "(insecure_skip_verify)"
    ]


async def test_status_has_no_warnings_when_every_upstream_is_verified(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(proxy_config)
    async with proxy.session.get(
        proxy.url + "/admin/status", headers=proxy.headers(ADMIN_KEY)
    ) as r:
        assert (await r.json())["warnings"] == []


def provider(**kw: Any) -> config.ProviderSettings:
    kw.setdefault("base_url", "https://upstream.example/v1")
    return config.ProviderSettings(name="p", kind=ApiFormat.OPENAI, **kw)


def test_a_ca_bundle_replaces_the_system_trust_store(tmp_path: Path) -> None:
    ca = trustme.CA()
    ctx = tls.client_contexts([provider(ca_bundle=write_ca(ca, tmp_path, "only"))])["p"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] == 1


def test_default_providers_use_the_verifying_default_and_insecure_ones_do_not() -> None:
    contexts = tls.client_contexts([provider()])
    assert contexts == {}  # aiohttp's default context (ssl=True): system trust, verified
    insecure = tls.client_contexts([provider(insecure_skip_verify=True)])["p"]
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname


def test_unreadable_certificate_files_are_config_errors_naming_the_setting(
    tmp_path: Path,
) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(config.ConfigError, match=r"providers\.p\.ca_bundle"):
        tls.client_contexts([provider(ca_bundle=missing)])
    with pytest.raises(config.ConfigError, match=r"server\.tls\.cert"):
        tls.server_context(config.TLSSettings(cert=missing, key=missing))


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({}, "system trust store"),
        ({"ca_bundle": "/etc/ca.pem"}, "ca_bundle only"),
        ({"insecure_skip_verify": True}, "DISABLED"),
        ({"base_url": "http://10.0.0.1/v1"}, "not encrypted"),
    ],
)
def test_upstream_trust_is_described(settings: dict[str, Any], words: str) -> None:
    assert words in tls.upstream_trust(provider(**settings))
