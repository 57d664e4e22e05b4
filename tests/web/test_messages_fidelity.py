"""/v1/messages as Claude Code uses it, through a real proxy: everything Anthropic-specific
reaches an Anthropic upstream untouched, maps onto chat where it can, and is a 400 in
Anthropic's shape where it cannot."""

from __future__ import annotations

import copy
from typing import Any

import anthropic
import pytest

from tests.conftest import CLIENT_KEY, Proxy, Upstream

IMAGE = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
HISTORY: list[dict[str, Any]] = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
            {"type": "image", "source": IMAGE},
            {
                "type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                "title": "notes.txt",
                "citations": {"enabled": True},
            },
        ],
    },
    {"role": "system", "content": [{"type": "text", "text": "Tools are available."}]},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "read the notes", "signature": "c2lnbmF0dXJl"},
            {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"query": "x"}},
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "found"}],
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            }
        ],
    },
]
BODY: dict[str, Any] = {
    "max_tokens": 100,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": HISTORY,
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "none"},
}


async def test_everything_reaches_anthropic_untouched(proxy: Proxy, upstream: Upstream) -> None:
    body = {**copy.deepcopy(BODY), "model": "claude-test"}
    resp = await proxy.post(
        "/v1/messages?beta=true",
        body,
        headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    assert resp.status == 200, await resp.text()
    (received,) = upstream.state.requests
    assert received.body == {**body, "model": "mock-claude"}
    assert received.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


async def test_the_same_history_maps_onto_chat(proxy: Proxy, upstream: Upstream) -> None:
    client = anthropic.AsyncAnthropic(base_url=proxy.url, api_key=CLIENT_KEY, max_retries=0)
    async with client:
        message = await client.messages.create(**{**copy.deepcopy(BODY), "model": "gpt-test"})
    assert message.content[0].type == "text"
    (received,) = upstream.state.requests
    messages = received.body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "system", "assistant", "tool"]
    assert messages[1]["content"][1]["type"] == "image_url"
    assert messages[1]["content"][2] == {"type": "text", "text": "notes"}
    assert messages[2] == {"role": "system", "content": "Tools are available."}
    assert messages[3]["tool_calls"][0]["id"] == "toolu_1"  # thinking dropped, the call kept
    assert messages[4] == {"role": "tool", "tool_call_id": "toolu_1", "content": "found"}
    assert received.body["tool_choice"] == "none"


@pytest.mark.parametrize(
    ("block", "param"),
    [
        (
            {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}},
            "messages.0.content.0",
        ),
        (
            {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}},
            "messages.0.content.0",
        ),
    ],
)
async def test_what_chat_cannot_carry_is_a_400_in_anthropic_shape(
    proxy: Proxy, block: dict[str, Any], param: str
) -> None:
    body = {
        "model": "gpt-test",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [block]}],
    }
    resp = await proxy.post("/v1/messages", body)
    assert resp.status == 400
    error = await resp.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert param in error["error"]["message"]
