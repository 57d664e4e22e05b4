"""The official openai SDK against the real proxy on a port, in front of the mock."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import CLIENT_KEY, UPSTREAM_KEY, Proxy, Upstream


def sdk(proxy: Proxy, key: str = CLIENT_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.v1, api_key=key, max_retries=0)


MESSAGES = [{"role": "user", "content": "Say something deterministic"}]


async def test_chat_non_stream_and_stream_give_the_same_text(proxy: Proxy) -> None:
    async with sdk(proxy) as client:
        reply = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        stream = await client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    text = reply.choices[0].message.content
    assert text and text == "".join(pieces)
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    assert len([p for p in pieces if p]) == reply.usage.completion_tokens


async def test_completions_embeddings_and_models(proxy: Proxy) -> None:
    async with sdk(proxy) as client:
        completion = await client.completions.create(model="gpt-test", prompt="Once upon")
        vectors = await client.embeddings.create(model="embed-test", input=["a", "b"])
        models = await client.models.list()
    assert completion.choices[0].text
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) > 0
    assert {m.id for m in models.data} == {"gpt-test", "claude-test", "embed-test"}


async def test_upstream_gets_provider_key_and_upstream_model_never_client_key(
    proxy: Proxy, upstream: Upstream
) -> None:
    async with sdk(proxy) as client:
        await client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, extra_body={"custom_field": {"x": 1}}
        )
    (received,) = upstream.state.requests
    headers = {k.lower(): v for k, v in received.headers.items()}
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert CLIENT_KEY not in str(received.headers)
    assert received.body["model"] == "mock-gpt"
    assert received.body["custom_field"] == {"x": 1}  # unknown fields pass through
    assert received.body["messages"] == MESSAGES


async def test_responses_carry_request_id_and_routing_headers(proxy: Proxy) -> None:
    body = {"model": "gpt-test", "messages": MESSAGES}
    async with await proxy.post(
        "/v1/chat/completions", body, headers={"x-request-id": "abc-123"}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["x-request-id"] == "abc-123"
        assert resp.headers["x-nitroproxy-provider"] == "mock-openai"
        assert resp.headers["x-nitroproxy-upstream-model"] == "mock-gpt"
        assert resp.headers["x-nitroproxy-attempts"] == "1"
    async with await proxy.post(
        "/v1/chat/completions", body, headers={"x-request-id": "bad id\u00e9" * 30}
    ) as resp:
        assert resp.headers["x-request-id"] != "bad id"
        assert len(resp.headers["x-request-id"]) == 32


@pytest.mark.parametrize(
    ("call", "exc", "status"),
    [
        ({"model": "nope", "messages": MESSAGES}, openai.NotFoundError, 404),
        ({"model": "gpt-test", "messages": []}, openai.BadRequestError, 400),
        ({"model": "gpt-test", "messages": "hi"}, openai.BadRequestError, 400),
    ],
)
async def test_sdk_raises_the_right_exception(proxy: Proxy, call, exc, status) -> None:
    async with sdk(proxy) as client:
        with pytest.raises(exc) as info:
            await client.chat.completions.create(**call)
    assert info.value.status_code == status


async def test_wrong_key_is_401_in_openai_shape(proxy: Proxy) -> None:
    async with sdk(proxy, key="np-wrong") as client:
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert info.value.status_code == 401
    assert info.value.body["type"] == "invalid_request_error"  # type: ignore[index]
