"""The lean HTTP/1.1 transport against real servers on loopback: keep-alive reuse, chunked
streams as they arrive, bodies that end early, stale keep-alive connections, timeouts,
gzip, TLS, the connection cap, backpressure, and uvloop's transports."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvloop
from aiohttp import web

from nitroproxy.config import ProviderSettings, Timeouts, UpstreamSettings
from nitroproxy.core.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from nitroproxy.core.types import ApiFormat, Endpoint
from nitroproxy.upstream.client import UpstreamClient
from nitroproxy.upstream.errors import UpstreamDisconnected
from nitroproxy.upstream.http1 import Http1Transport
from nitroproxy.upstream.provider import Provider
from nitroproxy.web.server import start


def provider(base_url: str, **kw: Any) -> Provider:
    timeouts = kw.pop("timeouts", Timeouts(connect=2, first_byte=2, idle=2, total=10))
    return Provider(
        ProviderSettings(
            name="p", kind=ApiFormat.OPENAI, base_url=base_url, timeouts=timeouts, **kw
        )
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(handler: Handler, **kw: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner, port = await start(app, "127.0.0.1", 0, **kw)
    scheme = "https" if kw.get("ssl_context") else "http"
    return runner, f"{scheme}://127.0.0.1:{port}/v1"


@pytest.fixture
async def transport() -> AsyncIterator[Http1Transport]:
    t = Http1Transport(UpstreamSettings(max_connections=10))
    await t.start()
    yield t
    await t.close()


async def test_json_answers_reuse_one_keep_alive_connection(transport: Http1Transport) -> None:
    seen: list[bytes] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(await request.read())
        assert request.headers["authorization"] == "Bearer k"
        return web.json_response({"n": len(seen)})

    runner, url = await serve(handler)
    try:
        p = provider(url)
        client = UpstreamClient(transport)
        for i in range(5):
            resp = await client.send(p, Endpoint.CHAT, b'{"x":1}', {"authorization": "Bearer k"})
            assert resp.status == 200 and resp.headers["content-type"].startswith(
                "application/json"
            )
            assert await resp.read() == f'{{"n": {i + 1}}}'.encode()
            resp.release()
        assert seen == [b'{"x":1}'] * 5
        assert transport.open_connections == 1
    finally:
        await runner.cleanup()


async def test_a_chunked_stream_arrives_piece_by_piece(transport: Http1Transport) -> None:
    gate = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"data: one\n\n")
        await gate.wait()
        await response.write(b"data: two\n\n")
        return response

    runner, url = await serve(handler)
    try:
        resp = await UpstreamClient(transport).send(provider(url), Endpoint.CHAT, b"{}", {})
        assert await resp.content.readany() == b"data: one\n\n"
        gate.set()
        assert await resp.content.readany() == b"data: two\n\n"
        assert await resp.content.readany() == b""
        resp.release()
        assert transport.open_connections == 1  # read to the end: kept
    finally:
        await runner.cleanup()


async def test_a_body_cut_short_is_a_disconnect_and_the_connection_is_not_reused(
    transport: Http1Transport,
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"data: partial\n\n")
        assert request.transport is not None
        request.transport.close()
        return response

    runner, url = await serve(handler)
    try:
        p = provider(url)
        client = UpstreamClient(transport)
        resp = await client.send(p, Endpoint.CHAT, b"{}", {})
        assert await client.next_chunk(p, resp) == b"data: partial\n\n"
        with pytest.raises(UpstreamError) as caught:
            await client.next_chunk(p, resp)
        assert caught.value.code == "upstream_disconnected"
        assert isinstance(caught.value.__cause__, UpstreamDisconnected)
        assert transport.open_connections == 0
    finally:
        await runner.cleanup()


async def test_a_stale_keep_alive_connection_is_retried_once_on_a_new_one() -> None:
    # A raw server that answers once per connection and then closes it without saying so.
    answers = 0

    async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answers
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        answers += 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    server = await asyncio.start_server(conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = Http1Transport(UpstreamSettings())
    await transport.start()
    try:
        p = provider(f"http://127.0.0.1:{port}/v1")
        client = UpstreamClient(transport)
        for _ in range(3):
            resp = await client.send(p, Endpoint.CHAT, b"{}", {})
            assert await resp.read() == b"ok"
            await asyncio.sleep(0.1)  # the server has closed it meanwhile
        assert answers == 3
    finally:
        await transport.close()
        server.close()


async def test_an_upstream_silent_past_the_idle_timeout_times_out(
    transport: Http1Transport,
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await asyncio.sleep(5)
        return response

    runner, url = await serve(handler)
    try:
        p = provider(url, timeouts=Timeouts(connect=2, first_byte=2, idle=0.2, total=10))
        client = UpstreamClient(transport)
        resp = await client.send(p, Endpoint.CHAT, b"{}", {})
        await client.next_chunk(p, resp)
        with pytest.raises(UpstreamTimeout):
            await client.next_chunk(p, resp)
        resp.close()
    finally:
        await runner.cleanup()


async def test_gzip_and_bodies_without_a_length_are_read_whole() -> None:
    payload = b'{"hello": "world"}' * 100

    async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        body = gzip.compress(payload)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\nconnection: close\r\n\r\n")
        writer.write(body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = Http1Transport(UpstreamSettings())
    await transport.start()
    try:
        resp = await UpstreamClient(transport).send(
            provider(f"http://127.0.0.1:{port}/v1"), Endpoint.CHAT, b"{}", {}
        )
        assert await resp.read() == payload
    finally:
        await transport.close()
        server.close()


async def test_refused_connections_and_bad_headers_are_clear_errors(
    transport: Http1Transport, unused_tcp_port: int
) -> None:
    client = UpstreamClient(transport)
    with pytest.raises(UpstreamError) as caught:
        await client.send(
            provider(f"http://127.0.0.1:{unused_tcp_port}/v1"), Endpoint.CHAT, b"", {}
        )
    assert caught.value.code == "upstream_unreachable"
    with pytest.raises(InvalidRequest):
        await transport.post(
            provider("http://127.0.0.1:9/v1"),
            "http://127.0.0.1:9/v1/chat/completions",
            b"",
            {"anthropic-beta": "x\r\nevil: 1"},
        )


async def test_https_with_the_providers_own_ca_bundle(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"tls": True})

    runner, url = await serve(handler, ssl_context=server_ctx)
    p = provider(url, ca_bundle=str(bundle))
    transport = Http1Transport(UpstreamSettings(), [p.settings])
    await transport.start()
    try:
        resp = await UpstreamClient(transport).send(p, Endpoint.CHAT, b"{}", {})
        assert await resp.read() == b'{"tls": true}'
        untrusted = Http1Transport(UpstreamSettings())
        await untrusted.start()
        with pytest.raises(UpstreamError) as caught:
            await UpstreamClient(untrusted).send(provider(url), Endpoint.CHAT, b"{}", {})
        assert caught.value.code == "upstream_tls_error"
        await untrusted.close()
    finally:
        await transport.close()
        await runner.cleanup()


async def test_the_connection_cap_makes_callers_wait_their_turn() -> None:
    active = peak = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        return web.json_response({})

    runner, url = await serve(handler)
    transport = Http1Transport(UpstreamSettings(max_connections=2))
    await transport.start()
    try:
        p = provider(url)
        client = UpstreamClient(transport)

        async def one() -> None:
            resp = await client.send(p, Endpoint.CHAT, b"{}", {})
            await resp.read()
            resp.release()

        await asyncio.gather(*(one() for _ in range(6)))
        assert peak == 2 and transport.open_connections <= 2
    finally:
        await transport.close()
        await runner.cleanup()


async def test_a_slow_reader_stops_the_socket_instead_of_buffering_the_stream(
    transport: Http1Transport,
) -> None:
    piece = b"x" * 65536
    sent = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(160):  # 10 MiB
            await response.write(piece)
            sent += len(piece)
        return response

    runner, url = await serve(handler)
    try:
        resp = await UpstreamClient(transport).send(provider(url), Endpoint.CHAT, b"{}", {})
        await asyncio.sleep(0.5)  # read nothing for a while
        assert resp._size <= 1024 * 1024  # paused: a bounded buffer, not the whole stream
        assert sent < 160 * len(piece)
        total = 0
        while chunk := await resp.content.readany():
            total += len(chunk)
        assert total == 160 * len(piece)
    finally:
        await runner.cleanup()


def test_it_runs_on_uvloop_transports() -> None:
    """The proxy serves on uvloop, whose transports are not asyncio.Transport subclasses."""
    result: list[bytes] = []

    async def main() -> None:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response({"uv": True})

        runner, url = await serve(handler)
        transport = Http1Transport(UpstreamSettings())
        await transport.start()
        try:
            resp = await UpstreamClient(transport).send(provider(url), Endpoint.CHAT, b"{}", {})
            result.append(await resp.read())
        finally:
            await transport.close()
            await runner.cleanup()

    thread = threading.Thread(target=lambda: uvloop.run(main()))
    thread.start()
    thread.join(10)
    assert result == [b'{"uv": true}']
