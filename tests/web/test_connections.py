"""Slow clients, connection limits, parser refusals and the body-bytes cap, on a real server
through raw sockets (a client library would not misbehave on purpose)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.conftest import CLIENT_KEY, ProxyFactory

HEAD = (
    "POST /v1/chat/completions HTTP/1.1\r\n"
    "Host: proxy\r\n"
    f"Authorization: Bearer {CLIENT_KEY}\r\n"
    "Content-Type: application/json\r\n"
)
BODY = json.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def answer(reader: asyncio.StreamReader, within: float = 5.0) -> tuple[int, Any, bytes]:
    """Status, JSON body and the raw head of one response; reads until the server closes
    or the body is complete."""
    async with asyncio.timeout(within):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
    return int(head.split(b" ")[1]), json.loads(body), head


async def closed(reader: asyncio.StreamReader, within: float = 5.0) -> bytes:
    """What the server sent before closing (b"" when nothing more)."""
    async with asyncio.timeout(within):
        return await reader.read()


@pytest.fixture
def slow_config(proxy_config: dict[str, Any]) -> dict[str, Any]:
    # keep-alive longer than the head deadline: aiohttp's own idle timer, started at
    # connect too, would otherwise close first, without an answer.
    proxy_config["server"] = {"timeouts": {"header": 0.5, "body": 0.5, "keepalive": 2.0}}
    return proxy_config


async def trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    """A byte every 50 ms (the test cancels it once it has its answer)."""
    for byte in data:
        writer.write(bytes([byte]))
        try:
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(0.05)


async def test_a_request_head_sent_a_byte_at_a_time_is_cut_at_the_header_timeout(
    make_proxy: ProxyFactory, slow_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(slow_config)
    reader, writer = await connect(proxy.url)
    began = time.monotonic()
    sender = asyncio.create_task(trickle(writer, HEAD.encode() * 10))
    status, body, head = await answer(reader)
    elapsed = time.monotonic() - began
    sender.cancel()
    assert status == 408
    assert body["error"]["code"] == "request_timeout"
    assert b"connection: close" in head.lower()
    assert 0.4 < elapsed < 1.5
    assert await closed(reader) == b""
    writer.close()


async def test_a_body_sent_a_byte_at_a_time_is_cut_at_the_body_timeout(
    make_proxy: ProxyFactory, slow_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(slow_config)
    reader, writer = await connect(proxy.url)
    writer.write(f"{HEAD}Content-Length: {len(BODY)}\r\n\r\n".encode())
    began = time.monotonic()
    sender = asyncio.create_task(trickle(writer, BODY.encode()))
    status, body, _ = await answer(reader)
    elapsed = time.monotonic() - began
    sender.cancel()
    assert status == 408
    assert body["error"]["type"] == "invalid_request_error"
    assert 0.4 < elapsed < 1.5
    began = time.monotonic()
    assert await closed(reader) == b""  # what is left of the body is not waited for long
    assert time.monotonic() - began < 1.5
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["server"] = {"timeouts": {"header": 5.0, "keepalive": 0.5}}
    proxy = await make_proxy(proxy_config)
    reader, writer = await connect(proxy.url)
    writer.write(f"{HEAD}Content-Length: {len(BODY)}\r\n\r\n{BODY}".encode())
    status, _, _ = await answer(reader)
    assert status == 200
    began = time.monotonic()
    assert await closed(reader) == b""
    assert time.monotonic() - began < 1.5
    writer.close()


async def test_connections_past_the_limit_are_answered_503_and_closed(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["server"] = {"limits": {"connections": 2}}
    proxy = await make_proxy(proxy_config)
    held = [await connect(proxy.url) for _ in range(2)]
    await asyncio.sleep(0.05)
    reader, writer = await connect(proxy.url)
    status, body, _ = await answer(reader)
    assert status == 503
    assert body["error"]["code"] == "too_many_connections"
    assert await closed(reader) == b""
    writer.close()
    held[0][1].close()
    await held[0][1].wait_closed()
    await asyncio.sleep(0.05)
    reader, writer = await connect(proxy.url)  # a slot is free again
    writer.write(f"{HEAD}Content-Length: {len(BODY)}\r\n\r\n{BODY}".encode())
    status, _, _ = await answer(reader)
    assert status == 200
    writer.close()
    held[1][1].close()


@pytest.mark.parametrize(
    ("head", "status", "code"),
    [
        ("".join(f"X-H{i}: v\r\n" for i in range(200)), 431, "request_header_fields_too_large"),
        ("X-Long: " + "a" * 9000 + "\r\n", 431, "request_header_fields_too_large"),
        ("Content-Length: nope\r\n", 400, "bad_request"),
    ],
)
async def test_requests_aiohttp_cannot_parse_get_api_shaped_json(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], head: str, status: int, code: str
) -> None:
    proxy = await make_proxy(proxy_config)
    reader, writer = await connect(proxy.url)
    writer.write(f"{HEAD}{head}\r\n".encode())
    got, body, raw = await answer(reader)
    assert (got, body["error"]["code"]) == (status, code)
    assert b"application/json" in raw
    assert "aaaa" not in body["error"]["message"]  # the offending line is not echoed back
    writer.close()


async def test_request_bodies_past_the_bytes_in_flight_cap_are_refused_503(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["server"] = {"limits": {"body_bytes_in_flight": 100_000}}
    proxy = await make_proxy(proxy_config)
    # One body of 80 kB arrives slowly and holds its bytes while it does.
    slow_reader, slow_writer = await connect(proxy.url)
    padded = BODY.replace('"hi"', '"' + "x" * 80_000 + '"')
    slow_writer.write(f"{HEAD}Content-Length: {len(padded)}\r\n\r\n".encode())
    slow_writer.write(padded[:100].encode())
    await slow_writer.drain()
    await asyncio.sleep(0.1)
    async with await proxy.post(
        "/v1/chat/completions", json.loads(padded), headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 503
        assert r.headers["Retry-After"] == "1"
        assert (await r.json())["error"]["code"] == "too_many_request_bytes"
    slow_writer.write(padded[100:].encode())
    status, _, _ = await answer(slow_reader)
    assert status == 200
    async with await proxy.post("/v1/chat/completions", json.loads(padded)) as r:
        assert r.status == 200  # the bytes were given back
    slow_writer.close()
