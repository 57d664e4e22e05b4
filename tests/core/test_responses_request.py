"""Responses API requests: validation, and translation to chat completions and to Anthropic
Messages (each output checked against the official SDK's request types)."""

from typing import Any

import pytest
from anthropic.types import ContentBlockParam, ToolChoiceParam, ToolParam
from anthropic.types.message_create_params import MessageCreateParams
from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam
from openai.types.chat.completion_create_params import CompletionCreateParams
from openai.types.responses.response_create_params import ResponseCreateParams
from pydantic import TypeAdapter

from nitroproxy.core.errors import InvalidRequest
from nitroproxy.core.responses_anthropic import responses_to_messages_request
from nitroproxy.core.responses_request import (
    REDACTED_MARK,
    SIGNATURE_MARK,
    responses_to_chat_request,
)
from nitroproxy.core.responses_tools import tool_names
from nitroproxy.core.responses_wire import chat_view, validate_responses_request

FUNCTION = {
    "type": "function",
    "name": "exec_command",
    "description": "Run a command",
    "strict": False,
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
}
CUSTOM = {"type": "custom", "name": "apply_patch", "description": "Edit files"}
NAMESPACE = {
    "type": "namespace",
    "name": "agents",
    "description": "Sub-agents",
    "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}],
}
# A Codex turn after one tool call: developer instructions, the user, the model's reasoning
# and call, and the call's output.
CODEX_TURN: list[dict[str, Any]] = [
    {
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": "Be a coder."}],
    },
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA-openai-blob"},
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "exec_command",
        "arguments": '{"cmd":"ls"}',
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "a.txt\nb.txt"},
]


# Built once: the SDK's Responses types are a union of dozens of items.
RESPONSE_CREATE = TypeAdapter(ResponseCreateParams)
CHAT_CREATE = TypeAdapter(CompletionCreateParams)
MESSAGE_CREATE = TypeAdapter(MessageCreateParams)
# pydantic checks Iterable fields lazily, so the parts are checked one by one too.
CHAT_MESSAGE = TypeAdapter(ChatCompletionMessageParam)
CHAT_PARTS = TypeAdapter(list[ChatCompletionContentPartParam])
BLOCKS = TypeAdapter(list[ContentBlockParam])
TOOLS = TypeAdapter(list[ToolParam])
TOOL_CHOICE = TypeAdapter(ToolChoiceParam)


def body(**fields: Any) -> dict[str, Any]:
    out = {"model": "gpt-test", "input": "hi", **fields}
    RESPONSE_CREATE.validate_python(out)
    validate_responses_request(out)
    return out


def chat(**fields: Any) -> dict[str, Any]:
    out = responses_to_chat_request(body(**fields), upstream_model="gpt-x")
    CHAT_CREATE.validate_python(out)
    for message in out["messages"]:
        CHAT_MESSAGE.validate_python(message)
        if message["role"] == "user" and isinstance(message["content"], list):
            CHAT_PARTS.validate_python(message["content"])
    return out


def claude(**fields: Any) -> dict[str, Any]:
    out = responses_to_messages_request(body(**fields), upstream_model="claude-x")
    MESSAGE_CREATE.validate_python(out)
    for message in out["messages"]:
        if isinstance(message["content"], list):
            BLOCKS.validate_python(message["content"])
    TOOLS.validate_python(out.get("tools", []))
    if "tool_choice" in out:
        TOOL_CHOICE.validate_python(out["tool_choice"])
    return out


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": None}, "model"),
        ({"model": ""}, "model"),
        ({"input": 5}, "input"),
        ({"input": ["hi"]}, "input[0]"),
        ({"input": None}, "input"),
        ({"instructions": ["x"]}, "instructions"),
        ({"stream": "yes"}, "stream"),
        ({"store": 1}, "store"),
        ({"tools": {}}, "tools"),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_output_tokens": True}, "max_output_tokens"),
        ({"temperature": "warm"}, "temperature"),
        ({"tool_choice": 3}, "tool_choice"),
    ],
)
def test_invalid_requests_name_the_param(fields: dict[str, Any], param: str) -> None:
    raw = {
        key: value
        for key, value in {"model": "m", "input": "hi", **fields}.items()
        if value is not None
    }
    with pytest.raises(InvalidRequest) as info:
        validate_responses_request(raw)
    assert info.value.param == param and info.value.status == 400


def test_counting_needs_no_input_but_a_model() -> None:
    validate_responses_request({"model": "m"}, counting=True)
    validate_responses_request({"model": "m", "previous_response_id": "resp_1"})
    with pytest.raises(InvalidRequest):
        validate_responses_request({"input": "hi"}, counting=True)


# --- to chat -----------------------------------------------------------------------------------


def test_codex_turn_becomes_chat_messages_with_the_tool_round_trip() -> None:
    out = chat(input=CODEX_TURN, instructions="Top.", tools=[FUNCTION], stream=True)
    assert out["messages"] == [
        {"role": "system", "content": "Top."},
        {"role": "system", "content": "Be a coder."},
        {"role": "user", "content": "list files"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a.txt\nb.txt"},
    ]
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "exec_command",
                "parameters": FUNCTION["parameters"],
                "description": "Run a command",
                "strict": False,
            },
        }
    ]
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}


def test_assistant_text_and_a_following_call_are_one_chat_message() -> None:
    out = chat(
        input=[
            {"role": "user", "content": "go"},
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "ok", "annotations": []}],
            },
            {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "exec_command", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": "two"},
        ],
        tools=[FUNCTION],
    )
    assistant = out["messages"][1]
    assert assistant["content"] == "ok"
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "tool", "tool"]


def test_images_in_tool_outputs_follow_the_tool_messages() -> None:
    image = {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "low"}
    out = chat(
        input=[
            {"role": "user", "content": "look"},
            {"type": "function_call", "call_id": "c1", "name": "view", "arguments": "{}"},
            {
                "type": "function_call_output",
                "call_id": "c1",
                "output": [{"type": "input_text", "text": "here"}, image],
            },
        ]
    )
    assert out["messages"][2] == {"role": "tool", "tool_call_id": "c1", "content": "here"}
    assert out["messages"][3] == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": image["image_url"], "detail": "low"}}
        ],
    }


def test_custom_and_namespaced_tools_become_functions_and_calls_keep_their_names() -> None:
    out = chat(
        input=[
            {"role": "user", "content": "patch"},
            {
                "type": "custom_tool_call",
                "call_id": "c1",
                "name": "apply_patch",
                "input": "*** Begin",
            },
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "done"},
            {
                "type": "function_call",
                "call_id": "c2",
                "namespace": "agents",
                "name": "spawn",
                "arguments": "{}",
            },
        ],
        tools=[CUSTOM, NAMESPACE],
        tool_choice={"type": "custom", "name": "apply_patch"},
    )
    names = [t["function"]["name"] for t in out["tools"]]
    assert names == ["apply_patch", "agents__spawn"]
    assert out["tools"][0]["function"]["parameters"]["required"] == ["input"]
    calls = [m["tool_calls"][0]["function"] for m in out["messages"] if m.get("tool_calls")]
    assert calls == [
        {"name": "apply_patch", "arguments": '{"input":"*** Begin"}'},
        {"name": "agents__spawn", "arguments": "{}"},
    ]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    names_back = tool_names(body(tools=[CUSTOM, NAMESPACE]))
    assert names_back.client("agents__spawn").namespace == "agents"
    assert names_back.client("apply_patch").custom is True
    assert names_back.client("never_declared").name == "never_declared"


def test_sampling_format_effort_and_user_map_to_chat() -> None:
    schema = {"type": "object", "properties": {}}
    out = chat(
        max_output_tokens=50,
        temperature=0.5,
        top_p=0.9,
        text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
        reasoning={"effort": "low", "summary": "auto"},
        safety_identifier="u1",
        include=["reasoning.encrypted_content"],
        truncation="auto",
        prompt_cache_key="k",
        store=False,
    )
    assert out["max_tokens"] == 50 and out["temperature"] == 0.5 and out["top_p"] == 0.9
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema, "strict": True},
    }
    assert out["reasoning_effort"] == "low" and out["user"] == "u1"
    assert not {"include", "truncation", "prompt_cache_key", "store"} & out.keys()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"background": True}, "background"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ],
)
@pytest.mark.parametrize("translate", [chat, claude])
def test_stored_state_is_refused_saying_why(
    translate: Any, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        translate(**fields)
    assert info.value.param == param and info.value.status == 400
    assert "keeps no conversation content" in info.value.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        (
            {"tools": [{"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]}]},
            "tools[0].tools[0]",
        ),
        (
            {
                "input": [
                    {
                        "type": "web_search_call",
                        "id": "ws_1",
                        "status": "completed",
                        "action": {"type": "search", "query": "q"},
                    }
                ]
            },
            "input[0]",
        ),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_image", "file_id": "file-1", "detail": "auto"}],
                    }
                ]
            },
            "input[0].content[0]",
        ),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_file", "file_url": "https://x/a.pdf"}],
                    }
                ]
            },
            "input[0].content[0]",
        ),
        (
            {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]},
            "input[0].arguments",
        ),
        ({"tool_choice": {"type": "web_search_preview"}, "tools": [FUNCTION]}, "tool_choice"),
    ],
)
@pytest.mark.parametrize("translate", [chat, claude])
def test_what_has_no_equivalent_is_refused_naming_it(
    translate: Any, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        translate(**fields)
    assert info.value.param == param and info.value.status == 400


# --- to Anthropic -----------------------------------------------------------------------------


def test_codex_turn_becomes_anthropic_turns_with_tool_results_first() -> None:
    out = claude(input=CODEX_TURN, instructions="Top.", tools=[FUNCTION], max_output_tokens=300)
    assert out["system"] == "Top.\n\nBe a coder."
    assert out["max_tokens"] == 300
    assert out["messages"] == [
        {"role": "user", "content": "list files"},
        # The OpenAI reasoning blob means nothing to Claude: dropped.
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "exec_command", "input": {"cmd": "ls"}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "a.txt\nb.txt"}
            ],
        },
    ]
    assert out["tools"] == [
        {
            "name": "exec_command",
            "input_schema": FUNCTION["parameters"],
            "description": "Run a command",
        }
    ]


def test_reasoning_made_from_thinking_goes_back_as_that_thinking() -> None:
    out = claude(
        input=[
            {"role": "user", "content": "hi"},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "plan"}],
                "encrypted_content": SIGNATURE_MARK + "c2ln",
            },
            {
                "type": "reasoning",
                "id": "rs_2",
                "summary": [],
                "encrypted_content": REDACTED_MARK + "ZW5j",
            },
            {
                "type": "function_call",
                "call_id": "toolu_1",
                "name": "exec_command",
                "arguments": "{}",
            },
            {
                "type": "function_call_output",
                "call_id": "toolu_1",
                "output": [{"type": "input_text", "text": "ok"}],
            },
        ],
        tools=[FUNCTION],
    )
    assert out["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "plan", "signature": "c2ln"},
        {"type": "redacted_thinking", "data": "ZW5j"},
        {"type": "tool_use", "id": "toolu_1", "name": "exec_command", "input": {}},
    ]
    assert out["messages"][2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": [{"type": "text", "text": "ok"}],
        }
    ]


@pytest.mark.parametrize(
    ("effort", "max_output", "thinking"),
    [
        ("high", 20000, {"type": "enabled", "budget_tokens": 16384}),
        ("high", 5000, {"type": "enabled", "budget_tokens": 4999}),
        ("low", 1000, None),  # no room to think in
        ("minimal", 5000, None),
    ],
)
def test_reasoning_effort_becomes_a_thinking_budget(
    effort: str, max_output: int, thinking: dict[str, Any] | None
) -> None:
    out = claude(reasoning={"effort": effort}, max_output_tokens=max_output, temperature=0.2)
    assert out.get("thinking") == thinking
    # Anthropic takes no temperature with thinking.
    assert ("temperature" in out) is (thinking is None)


def test_images_files_choice_and_format_map_to_anthropic() -> None:
    out = claude(
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "read"},
                    {"type": "input_image", "image_url": "https://x/cat.png", "detail": "auto"},
                    {
                        "type": "input_file",
                        "filename": "a.pdf",
                        "file_data": "data:application/pdf;base64,JVBER",
                    },
                ],
            }
        ],
        tools=[FUNCTION],
        tool_choice="required",
        parallel_tool_calls=False,
        text={"format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}}},
        temperature=1.5,
        user="alice",
        stream=True,
    )
    assert out["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"},
            "title": "a.pdf",
        },
    ]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    assert (
        out["temperature"] == 1
        and out["metadata"] == {"user_id": "alice"}
        and out["stream"] is True
    )


def test_chat_view_counts_what_the_model_reads() -> None:
    view = chat_view(body(input=CODEX_TURN, instructions="Top.", tools=[FUNCTION, NAMESPACE]))
    assert [m["role"] for m in view["messages"]] == [
        "system",
        "developer",
        "user",
        "assistant",
        "assistant",
        "tool",
    ]
    assert [t["function"]["name"] for t in view["tools"]] == ["exec_command", "spawn"]
