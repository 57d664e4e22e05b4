"""A fake upstream transport (httpx's ``MockTransport`` idea: a handler per request) and a
fake clock, so the gateway's failover, cool-downs and settlement run in milliseconds with no
socket. The responses have the shape of aiohttp's ``ClientResponse`` that the upstream client
reads."""

from __future__ import annotations

import asyncio
import copy
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from nitroproxy import config
from nitroproxy.core import replay, selection, tokens
from nitroproxy.core.principal import Principal
from nitroproxy.core.types import ApiFormat, Endpoint
from nitroproxy.proxy.call import Call
from nitroproxy.proxy.gateway import Gateway
from nitroproxy.telemetry.metrics import Metrics


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeBody:
    def __init__(self, chunks: Sequence[bytes], error: BaseException | None = None) -> None:
        self._chunks = list(chunks)
        self._error = error

    async def readany(self) -> bytes:
        await asyncio.sleep(0)
        if self._chunks:
            return self._chunks.pop(0)
        if self._error is not None:
            raise self._error
        return b""


class FakeResponse:
    def __init__(
        self,
        status: int = 200,
        chunks: Sequence[bytes] = (),
        *,
        headers: dict[str, str] | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.status = status
        self.headers = headers or {}
        self.content = FakeBody(chunks, error)
        self.closed = False
        self.released = False

    async def read(self) -> bytes:
        out = []
        while chunk := await self.content.readany():
            out.append(chunk)
        return b"".join(out)

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


@dataclass
class Sent:
    provider: str
    url: str
    body: dict[str, Any]


Handler = Callable[[Sent], FakeResponse | Awaitable[FakeResponse]]


@dataclass
class MockTransport:
    handler: Handler
    sent: list[Sent] = field(default_factory=list)
    responses: list[FakeResponse] = field(default_factory=list)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def configure(self, providers: Any) -> None:
        return None

    async def post(self, provider: Any, url: str, body: bytes, headers: Any = None) -> FakeResponse:
        request = Sent(provider.name, url, orjson.loads(body))
        self.sent.append(request)
        result = self.handler(request)
        response = await result if inspect.isawaitable(result) else result
        self.responses.append(response)
        return response


# -- answers in OpenAI's format -----------------------------------------------------------


def chat_json(text: str = "hello there", *, usage: bool = True) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "up",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    return orjson.dumps(body)


def chat_stream(text: str = "hello there", *, usage: bool = True) -> list[bytes]:
    answer = orjson.loads(chat_json(text, usage=usage))
    answer.setdefault("usage", None)
    return replay.replay_openai_stream(answer, include_usage=usage)


def ok(stream: bool = False, **kw: Any) -> FakeResponse:
    return FakeResponse(200, chat_stream(**kw) if stream else [chat_json(**kw)])


# -- a gateway and calls ------------------------------------------------------------------

BASE = {
    "providers": {
        "p1": {"kind": "openai", "base_url": "http://p1.invalid/v1", "api_key": "sk-1"},
        "p2": {"kind": "openai", "base_url": "http://p2.invalid/v1", "api_key": "sk-2"},
    },
    "models": {
        "m": {
            "deployments": [
                {
                    "name": "a",
                    "provider": "p1",
                    "model": "up-a",
                    "price": {"input": 1, "output": 2},
                },
                {
                    "name": "b",
                    "provider": "p2",
                    "model": "up-b",
                    "price": {"input": 1, "output": 2},
                },
            ]
        },
        "one": {
            "deployments": [
                {
                    "name": "solo",
                    "provider": "p1",
                    "model": "up",
                    "price": {"input": 1, "output": 2},
                }
            ]
        },
    },
    "routing": {"failure_threshold": 1, "base_cooldown": 10, "max_cooldown": 10},
    "storage": {"enabled": False},
    "logging": {"access_log": False},
}


@dataclass
class Rig:
    gateway: Gateway
    transport: MockTransport
    clock: FakeClock
    records: list[Any]
    metrics: Metrics
    settings: config.Settings

    def call(
        self,
        model: str = "m",
        *,
        stream: bool = False,
        principal: Principal | None = None,
        cache_header: str | None = None,
        **body: Any,
    ) -> Call:
        settings_model = self.settings.models[model]
        payload = {"model": model, "messages": [{"role": "user", "content": "hi"}], **body}
        if stream:
            payload["stream"] = True
        return Call(
            prompt=tokens.prompt_size(orjson.dumps(payload)),
            request_id="req-1",
            endpoint=Endpoint.CHAT,
            client_format=ApiFormat.OPENAI,
            body=payload,
            model=settings_model,
            strategy=settings_model.strategy,
            prefs=selection.NO_PREFS,
            stream=stream,
            principal=principal or Principal(key_id="k1", user_id="u1"),
            meter=self.gateway.new_meter(),
            cache_header=cache_header,
        )

    async def settled(self) -> None:
        """Let spawned settlement work (limit settling) finish."""
        await self.gateway.settler.close()


def make_rig(handler: Handler, *, cache: Any = None, **overrides: Any) -> Rig:
    raw = copy.deepcopy(BASE)
    for key, value in overrides.items():
        raw[key] = value
    settings = config.parse(raw)
    clock = FakeClock()
    records: list[Any] = []
    metrics = Metrics()
    transport = MockTransport(handler)
    gateway = Gateway(
        settings, metrics, sink=records.append, clock=clock, transport=transport, cache=cache
    )
    return Rig(gateway, transport, clock, records, metrics, settings)


async def drain(rig: Rig, call: Call) -> tuple[int, bytes]:
    """Run ``call`` the way ``web.relay`` does and return (status, every byte)."""
    async with rig.gateway.exchange(call) as ex:
        if not ex.streaming:
            return ex.status, ex.body
        return ex.status, b"".join([chunk async for chunk in ex])
