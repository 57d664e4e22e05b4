"""What Claude Code sends, through validation and the translation to chat: system messages
inside ``messages``, thinking with signatures, documents, cache_control, count_tokens bodies."""

from typing import Any

import pytest

from nitroproxy.core.anthropic_request import validate_messages_request
from nitroproxy.core.chat_request import messages_to_chat_request
from nitroproxy.core.errors import InvalidRequest
from tests.core.test_anthropic_wire import assert_valid_chat_request

# The shape of Claude Code 2.1's first request: a block system prompt with cache_control,
# the user turn, then a system message inside the conversation.
CLAUDE_CODE_BODY: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 64000,
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
        {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                {"type": "text", "text": "say hello", "cache_control": {"type": "ephemeral"}},
            ],
        },
        {"role": "system", "content": "Available agent types for the Agent tool: ..."},
    ],
    "thinking": {"type": "adaptive"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
    "metadata": {"user_id": "session"},
    "stream": True,
}


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    validate_messages_request(body)
    out = messages_to_chat_request(body, upstream_model="gpt-x")
    assert_valid_chat_request(out)
    return out


def test_claude_code_body_is_valid_and_keeps_its_system_message_in_place() -> None:
    validate_messages_request(CLAUDE_CODE_BODY)
    out = to_chat(CLAUDE_CODE_BODY)
    assert [m["role"] for m in out["messages"]] == ["system", "user", "system"]
    assert out["messages"][0]["content"] == (
        "x-anthropic-billing-header: cc_version=2.1\n\nYou are a Claude agent."
    )
    assert out["messages"][2] == {
        "role": "system",
        "content": "Available agent types for the Agent tool: ...",
    }
    # Hints without a chat meaning are gone; the request still streams with usage.
    assert not {"thinking", "context_management", "output_config"} & out.keys()
    assert out["stream_options"] == {"include_usage": True}


def test_a_block_system_message_stays_a_system_message() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "two"},
                ],
            },
            {"role": "user", "content": "again"},
        ],
    }
    out = to_chat(body)
    assert out["messages"][1] == {"role": "system", "content": "one\n\ntwo"}
    assert [m["role"] for m in out["messages"]] == ["user", "system", "user"]


def test_a_system_message_with_an_image_is_refused_naming_the_block() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": [{"type": "image", "source": {"type": "url"}}]},
        ],
    }
    validate_messages_request(body)
    with pytest.raises(InvalidRequest) as info:
        messages_to_chat_request(body, upstream_model="gpt-x")
    assert info.value.param == "messages.1.content"


def test_thinking_blocks_with_signatures_are_dropped_and_the_tool_round_trip_kept() -> None:
    body = {
        "model": "m",
        "max_tokens": 50,
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "look it up", "signature": "c2ln"},
                    {"type": "redacted_thinking", "data": "ZW5j"},
                    {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"c": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "text", "text": "and?", "cache_control": {"type": "ephemeral"}},
                ],
            },
        ],
    }
    out = to_chat(body)
    assert out["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "w", "arguments": '{"c":"Oslo"}'},
            }
        ],
    }
    assert out["messages"][2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}
    assert out["messages"][3] == {"role": "user", "content": "and?"}


@pytest.mark.parametrize(
    ("source", "part"),
    [
        (
            {"type": "text", "media_type": "text/plain", "data": "plain"},
            {"type": "text", "text": "plain"},
        ),
        (
            {
                "type": "content",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {"type": "text", "text": "a\n\nb"},
        ),
        (
            {"type": "base64", "media_type": "application/pdf", "data": "JVBER"},
            {
                "type": "file",
                "file": {
                    "filename": "document.pdf",
                    "file_data": "data:application/pdf;base64,JVBER",
                },
            },
        ),
    ],
)
def test_documents_are_translated_where_chat_has_a_form(
    source: dict[str, Any], part: dict[str, Any]
) -> None:
    document = {"type": "document", "source": source, "cache_control": {"type": "ephemeral"}}
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [document, {"type": "text", "text": "sum"}]}],
    }
    assert to_chat(body)["messages"][0]["content"][0] == part


@pytest.mark.parametrize(
    "block",
    [
        {"type": "document", "source": {"type": "url", "url": "https://x/y.pdf"}},
        {"type": "search_result", "source": "s", "title": "t", "content": []},
        {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {}},
        {"type": "container_upload", "file_id": "f"},
    ],
)
def test_blocks_without_a_chat_form_are_refused_with_their_index(block: dict[str, Any]) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [block]}]}
    validate_messages_request(body)
    with pytest.raises(InvalidRequest) as info:
        messages_to_chat_request(body, upstream_model="gpt-x")
    assert info.value.status == 400
    assert info.value.param is not None and info.value.param.startswith("messages.0.content.0")


def test_count_tokens_bodies_need_no_max_tokens() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "foo"}], "tools": []}
    validate_messages_request(body, counting=True)
    with pytest.raises(InvalidRequest) as info:
        validate_messages_request(body)
    assert info.value.param == "max_tokens"
    with pytest.raises(InvalidRequest) as info:
        validate_messages_request({**body, "max_tokens": 0}, counting=True)
    assert info.value.param == "max_tokens"
