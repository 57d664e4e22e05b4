import json
from typing import Any

import pytest
from anthropic.types import ContentBlockParam, Message, ToolChoiceParam, ToolParam
from anthropic.types.message_create_params import MessageCreateParams
from openai.types.chat import ChatCompletion, ChatCompletionContentPartParam
from openai.types.chat.completion_create_params import CompletionCreateParams
from pydantic import TypeAdapter

from nitroproxy.core.anthropic_request import (
    chat_to_messages_request,
    validate_messages_request,
)
from nitroproxy.core.anthropic_wire import (
    anthropic_error_body,
    chat_response_to_messages,
    messages_response_to_chat,
    parse_anthropic_error,
    usage_from_anthropic,
    usage_to_anthropic,
    usage_to_openai,
)
from nitroproxy.core.chat_request import messages_to_chat_request
from nitroproxy.core.errors import InvalidRequest, UpstreamError
from nitroproxy.core.openai_wire import parse_error, usage_from
from nitroproxy.core.types import Usage

IMAGE_DATA = "iVBORw0KGgo="
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ANTHROPIC_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def assert_valid_anthropic_request(body: dict[str, Any]) -> None:
    """The SDK's request TypedDicts, checked deeply (pydantic checks Iterable fields lazily)."""
    TypeAdapter(MessageCreateParams).validate_python(body)
    for message in body["messages"]:
        if isinstance(message["content"], list):
            TypeAdapter(list[ContentBlockParam]).validate_python(message["content"])
    TypeAdapter(list[ToolParam]).validate_python(body.get("tools", []))
    if "tool_choice" in body:
        TypeAdapter(ToolChoiceParam).validate_python(body["tool_choice"])


def assert_valid_chat_request(body: dict[str, Any]) -> None:
    TypeAdapter(CompletionCreateParams).validate_python(body)
    for message in body["messages"]:
        if message["role"] == "user" and isinstance(message["content"], list):
            TypeAdapter(list[ChatCompletionContentPartParam]).validate_python(message["content"])


def chat(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    out = chat_to_messages_request(
        {"model": "gpt-4o", "messages": messages, **fields}, upstream_model="claude-x"
    )
    assert_valid_anthropic_request(out)
    return out


def anthropic(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    body = {"model": "claude-x", "max_tokens": 100, "messages": messages, **fields}
    validate_messages_request(body)
    out = messages_to_chat_request(body, upstream_model="gpt-4o")
    assert_valid_chat_request(out)
    return out


# --- validate_messages_request --------------------------------------------------------------

VALID = {
    "model": "claude-x",
    "max_tokens": 10,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": None}, "model"),
        ({"model": 3}, "model"),
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": ["hi"]}, "messages.0"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": None}]}, "messages.0.content"),
        (
            {"messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "messages.0.content.0",
        ),
        ({"system": 5}, "system"),
        ({"system": [{"type": "image"}]}, "system"),
        ({"stream": "yes"}, "stream"),
        ({"temperature": "hot"}, "temperature"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"tools": {"name": "x"}}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
    ],
)
def test_invalid_messages_request_names_the_param(change: dict[str, Any], param: str) -> None:
    body = {key: value for key, value in {**VALID, **change}.items() if value is not None}
    with pytest.raises(InvalidRequest) as info:
        validate_messages_request(body)
    assert info.value.param == param
    assert info.value.status == 400


def test_non_object_body_is_invalid() -> None:
    with pytest.raises(InvalidRequest):
        validate_messages_request([VALID])


def test_valid_messages_request_passes() -> None:
    validate_messages_request(
        {**VALID, "system": [{"type": "text", "text": "be brief"}], "stream": True}
    )


# --- chat_to_messages_request ------------------------------------------------------------------


def test_system_and_developer_messages_become_the_system_prompt() -> None:
    out = chat(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": "Hello"},
        ]
    )
    assert out["system"] == "Be brief.\n\nUse French."
    assert out["messages"] == [{"role": "user", "content": "Hello"}]
    assert out["model"] == "claude-x"
    assert out["max_tokens"] == 4096


def test_image_parts_become_image_blocks() -> None:
    out = chat(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {"type": "text", "text": ""},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{IMAGE_DATA}"},
                    },
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://x.test/a.jpg", "detail": "low"},
                    },
                ],
            }
        ]
    )
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": IMAGE_DATA},
        },
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
    ]


def test_pdf_file_part_becomes_a_document_block() -> None:
    part = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
    }
    out = chat([{"role": "user", "content": [part]}])
    source = {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}
    assert out["messages"][0]["content"] == [{"type": "document", "source": source}]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        (
            {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}},
            "messages.[0].content.[1]",
        ),
        (
            {"type": "image_url", "image_url": {"url": "ftp://x.test/a.png"}},
            "messages.[0].content.[1]",
        ),
        (
            {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}},
            "messages.[0].content.[1]",
        ),
    ],
)
def test_unsupported_user_parts_are_rejected(part: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        chat([{"role": "user", "content": [{"type": "text", "text": "x"}, part]}])
    assert info.value.param == param


def test_tool_calls_and_tool_results_round_a_turn() -> None:
    out = chat(
        [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city":"Paris"}',
                        },
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "21C"}],
            },
            {"role": "user", "content": "Thanks, and Oslo?"},
        ],
        tools=[TOOL],
    )
    assert out["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "get_weather",
                    "input": {},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2",
                    "content": [{"type": "text", "text": "21C"}],
                },
                {"type": "text", "text": "Thanks, and Oslo?"},
            ],
        },
    ]


def test_tool_results_come_first_when_user_text_precedes_them() -> None:
    out = chat(
        [
            {"role": "user", "content": "a"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ],
            },
            {"role": "user", "content": "note"},
            {"role": "tool", "tool_call_id": "c", "content": "ok"},
        ]
    )
    assert [b["type"] for b in out["messages"][2]["content"]] == ["tool_result", "text"]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", "3"])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    call = {
        "id": "c",
        "type": "function",
        "function": {"name": "f", "arguments": arguments},
    }
    with pytest.raises(InvalidRequest) as info:
        chat(
            [
                {"role": "user", "content": "a"},
                {"role": "assistant", "tool_calls": [call]},
            ]
        )
    assert info.value.param == "messages.[1].tool_calls.[0].function.arguments"


def test_consecutive_same_role_messages_are_merged() -> None:
    out = chat(
        [
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "three"},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "four"},
        ]
    )
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "one"},
                {"type": "text", "text": "two"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "three"},
                {"type": "text", "text": "four"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            {"type": "tool", "name": "get_weather"},
        ),
        (
            {"parallel_tool_calls": False},
            {"type": "auto", "disable_parallel_tool_use": True},
        ),
        (
            {"tool_choice": "required", "parallel_tool_calls": False},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
        ({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}),
        ({"tool_choice": "auto", "parallel_tool_calls": True}, {"type": "auto"}),
    ],
)
def test_tool_choice_maps_to_anthropic(
    fields: dict[str, Any], expected: dict[str, Any] | None
) -> None:
    out = chat([{"role": "user", "content": "hi"}], tools=[TOOL], **fields)
    assert out["tools"] == [ANTHROPIC_TOOL]
    assert out.get("tool_choice") == expected


def test_tool_choice_without_tools_is_dropped() -> None:
    out = chat([{"role": "user", "content": "hi"}], tool_choice="none", tools=[])
    assert "tools" not in out
    assert "tool_choice" not in out


def test_tool_without_parameters_gets_an_empty_object_schema() -> None:
    out = chat(
        [{"role": "user", "content": "hi"}],
        tools=[{"type": "function", "function": {"name": "now", "strict": True}}],
    )
    assert out["tools"] == [
        {
            "name": "now",
            "input_schema": {"type": "object", "properties": {}},
            "strict": True,
        }
    ]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools.[0]"),
        ({"tools": [TOOL], "tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
        ({"n": 2}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": "many"}, "max_completion_tokens"),
        ({"temperature": "warm"}, "temperature"),
        ({"stop": 7}, "stop"),
        ({"stream": "true"}, "stream"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "only system"}]}, "messages"),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages.[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.[0].tool_call_id"),
    ],
)
def test_untranslatable_chat_requests_are_rejected(fields: dict[str, Any], param: str) -> None:
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }
    with pytest.raises(InvalidRequest) as info:
        chat_to_messages_request(body, upstream_model="claude-x")
    assert info.value.param == param


@pytest.mark.parametrize(("given", "sent"), [(0, 0), (0.7, 0.7), (1, 1), (1.5, 1), (2, 1), (-1, 0)])
def test_temperature_is_clamped_to_anthropic_range(given: float, sent: float) -> None:
    assert chat([{"role": "user", "content": "hi"}], temperature=given)["temperature"] == sent


@pytest.mark.parametrize(
    ("stop", "sequences"),
    [("END", ["END"]), (["a", "b"], ["a", "b"]), (None, None), ([], None)],
)
def test_stop_becomes_stop_sequences(stop: Any, sequences: list[str] | None) -> None:
    assert chat([{"role": "user", "content": "hi"}], stop=stop).get("stop_sequences") == sequences


@pytest.mark.parametrize(
    ("fields", "max_tokens"),
    [
        ({}, 4096),
        ({"max_tokens": 50}, 50),
        ({"max_completion_tokens": 70, "max_tokens": 50}, 70),
    ],
)
def test_max_tokens_defaults_and_prefers_max_completion_tokens(
    fields: dict[str, Any], max_tokens: int
) -> None:
    assert chat([{"role": "user", "content": "hi"}], **fields)["max_tokens"] == max_tokens


def test_sampling_stream_user_and_openai_only_fields() -> None:
    out = chat(
        [{"role": "user", "content": "hi"}],
        top_p=0.9,
        stream=True,
        stream_options={"include_usage": True},
        user="user-42",
        n=1,
        logprobs=True,
        top_logprobs=2,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        seed=7,
        logit_bias={"1": 2},
        response_format={"type": "json_object"},
    )
    assert out == {
        "model": "claude-x",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "hi"}],
        "top_p": 0.9,
        "stream": True,
        "metadata": {"user_id": "user-42"},
    }


def test_json_schema_response_format_becomes_output_config() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    out = chat([{"role": "user", "content": "hi"}], response_format=fmt)
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


# --- messages_to_chat_request ----------------------------------------------------------------


@pytest.mark.parametrize(
    "system",
    [
        "Be brief.",
        [{"type": "text", "text": "Be brief."}],
        [
            {"type": "text", "text": "Be", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "brief."},
        ],
    ],
)
def test_anthropic_system_becomes_a_system_message(system: Any) -> None:
    out = anthropic([{"role": "user", "content": "hi"}], system=system)
    assert out["messages"][0]["role"] == "system"
    assert out["messages"][0]["content"] in ("Be brief.", "Be\n\nbrief.")
    assert out["messages"][1] == {"role": "user", "content": "hi"}


def test_anthropic_images_and_documents_become_parts() -> None:
    out = anthropic(
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": IMAGE_DATA,
                        },
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://x.test/a.jpg"},
                    },
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBE",
                        },
                    },
                    {
                        "type": "text",
                        "text": "Describe",
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            }
        ]
    )
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:image/png;base64,{IMAGE_DATA}"},
                },
                {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                {
                    "type": "file",
                    "file": {
                        "filename": "document.pdf",
                        "file_data": "data:application/pdf;base64,JVBE",
                    },
                },
                {"type": "text", "text": "Describe"},
            ],
        }
    ]


def test_tool_use_and_tool_results_become_tool_calls_and_tool_messages() -> None:
    out = anthropic(
        [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris", "unit": "°C"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Here you go"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [
                            {"type": "text", "text": "18C"},
                            {"type": "text", "text": "sunny"},
                        ],
                    },
                    {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True},
                ],
            },
        ],
        tools=[ANTHROPIC_TOOL],
    )
    assert out["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city":"Paris","unit":"°C"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C\nsunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": ""},
        {"role": "user", "content": "Here you go"},
    ]
    assert out["tools"] == [TOOL]


def test_tool_result_images_move_to_the_following_user_message() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": IMAGE_DATA},
    }
    out = anthropic(
        [
            {"role": "user", "content": "shot"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "screenshot", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [image]}],
            },
        ]
    )
    assert out["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "t1",
                "type": "function",
                "function": {"name": "screenshot", "arguments": "{}"},
            }
        ],
    }
    assert out["messages"][2:] == [
        {"role": "tool", "tool_call_id": "t1", "content": ""},
        {
            "role": "user",
            "content": [
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:image/png;base64,{IMAGE_DATA}"},
                }
            ],
        },
    ]


@pytest.mark.parametrize(
    ("tool_choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
            None,
        ),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
    ],
)
def test_tool_choice_maps_to_openai(
    tool_choice: dict[str, Any], expected: Any, parallel: bool | None
) -> None:
    out = anthropic(
        [{"role": "user", "content": "hi"}],
        tools=[ANTHROPIC_TOOL],
        tool_choice=tool_choice,
    )
    assert out["tool_choice"] == expected
    assert out.get("parallel_tool_calls") == parallel


def test_anthropic_fields_map_to_chat_fields() -> None:
    out = anthropic(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hel"}],
        temperature=0.3,
        top_p=0.8,
        top_k=5,
        stop_sequences=["\n\nHuman:"],
        stream=True,
        metadata={"user_id": "u-1"},
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert out == {
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hel"},
        ],
        "max_tokens": 100,
        "temperature": 0.3,
        "top_p": 0.8,
        "stop": ["\n\nHuman:"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u-1",
    }


def test_output_config_format_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {}}
    out = anthropic(
        [{"role": "user", "content": "hi"}],
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "search_result", "source": "x"}],
                    }
                ]
            },
            "messages.0.content.0",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {"type": "file", "file_id": "f"},
                            }
                        ],
                    }
                ]
            },
            "messages.0.content.0",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
            "messages.0.content.0.tool_use_id",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": [
                            {
                                "type": "server_tool_use",
                                "id": "s",
                                "name": "web_search",
                                "input": {},
                            }
                        ],
                    }
                ]
            },
            "messages.0.content.0",
        ),
    ],
)
def test_untranslatable_anthropic_requests_are_rejected(fields: dict[str, Any], param: str) -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }
    validate_messages_request(body)
    with pytest.raises(InvalidRequest) as info:
        messages_to_chat_request(body, upstream_model="gpt-4o")
    assert info.value.param == param


def test_requests_survive_a_round_trip() -> None:
    original = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city":"Oslo"}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "3C"},
        ],
        "tools": [TOOL],
        "tool_choice": "required",
        "max_tokens": 30,
        "stop": ["x"],
    }
    there = chat_to_messages_request(original, upstream_model="claude-x")
    back = messages_to_chat_request(there, upstream_model="gpt-4o")
    assert back == {**original, "tools": [TOOL]}


# --- responses ---------------------------------------------------------------------------------

ANTHROPIC_MESSAGE: dict[str, Any] = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "Need weather.", "signature": "EqQB"},
        {"type": "text", "text": "Let me check "},
        {"type": "text", "text": "that."},
        {
            "type": "tool_use",
            "id": "toolu_01A",
            "name": "get_weather",
            "input": {"city": "Zürich"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 20,
        "output_tokens": 30,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 5,
    },
}


def test_anthropic_message_becomes_chat_completion() -> None:
    out = messages_response_to_chat(ANTHROPIC_MESSAGE, model="my-model", created=1700000000)
    ChatCompletion.model_validate(out)
    assert out == {
        "id": "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "my-model",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check that.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_01A",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"city":"Zürich"}',
                            },
                        }
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 125,
            "completion_tokens": 30,
            "total_tokens": 155,
            "prompt_tokens_details": {"cached_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


def test_tool_only_anthropic_message_has_null_content() -> None:
    body = {**ANTHROPIC_MESSAGE, "content": ANTHROPIC_MESSAGE["content"][3:]}
    assert (
        messages_response_to_chat(body, model="m", created=1)["choices"][0]["message"]["content"]
        is None
    )


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
    ],
)
def test_stop_reason_maps_to_finish_reason(stop_reason: str | None, finish_reason: str) -> None:
    body = {
        **ANTHROPIC_MESSAGE,
        "content": [{"type": "text", "text": "x"}],
        "stop_reason": stop_reason,
    }
    out = messages_response_to_chat(body, model="m", created=1)
    assert out["choices"][0]["finish_reason"] == finish_reason


CHAT_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_abc",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city": "Paris"}',
                        },
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 1117,
        "completion_tokens": 46,
        "total_tokens": 1163,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
}


def test_chat_completion_becomes_anthropic_message() -> None:
    out = chat_response_to_messages(CHAT_COMPLETION, model="claude-alias")
    Message.model_validate(out)
    assert out == {
        "id": "msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "type": "message",
        "role": "assistant",
        "model": "claude-alias",
        "content": [
            {"type": "text", "text": "Checking."},
            {
                "type": "tool_use",
                "id": "call_abc",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 93,
            "output_tokens": 46,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 1024,
        },
    }


def test_message_ids_round_trip() -> None:
    chat_body = messages_response_to_chat(ANTHROPIC_MESSAGE, model="m", created=1)
    assert chat_response_to_messages(chat_body, model="m")["id"] == ANTHROPIC_MESSAGE["id"]


@pytest.mark.parametrize(
    ("finish_reason", "has_tool", "stop_reason"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("tool_calls", True, "tool_use"),
        ("content_filter", False, "refusal"),
        ("stop", True, "tool_use"),
        ("length", True, "max_tokens"),
        (None, False, "end_turn"),
    ],
)
def test_finish_reason_maps_to_stop_reason(
    finish_reason: str | None, has_tool: bool, stop_reason: str
) -> None:
    message: dict[str, Any] = {"role": "assistant", "content": "x"}
    if has_tool:
        message["tool_calls"] = CHAT_COMPLETION["choices"][0]["message"]["tool_calls"]
    body = {
        **CHAT_COMPLETION,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    assert chat_response_to_messages(body, model="m")["stop_reason"] == stop_reason


def test_upstream_tool_arguments_that_are_not_json_are_an_upstream_error() -> None:
    call = {
        "id": "c",
        "type": "function",
        "function": {"name": "f", "arguments": '{"a": '},
    }
    body = {
        **CHAT_COMPLETION,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "tool_calls": [call]},
                "finish_reason": "tool_calls",
            }
        ],
    }
    with pytest.raises(UpstreamError):
        chat_response_to_messages(body, model="m")


def test_chat_completion_without_usage_or_content_is_tolerated() -> None:
    body = {
        "id": "x",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None},
                "finish_reason": "stop",
            }
        ],
    }
    out = chat_response_to_messages(body, model="m")
    Message.model_validate(out)
    assert out["content"] == []
    assert out["usage"]["input_tokens"] == 0


# --- usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "usage"),
    [
        ({"input_tokens": 10, "output_tokens": 5}, Usage(10, 5)),
        (
            {
                "input_tokens": 10,
                "output_tokens": 5,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 50,
            },
            Usage(
                prompt_tokens=160,
                completion_tokens=5,
                cached_tokens=100,
                cache_write_tokens=50,
            ),
        ),
        (
            {
                "input_tokens": 3,
                "output_tokens": 9,
                "cache_read_input_tokens": None,
                "output_tokens_details": {"thinking_tokens": 4},
            },
            Usage(3, 9, reasoning_tokens=4),
        ),
        ({}, Usage()),
        (None, Usage()),
    ],
)
def test_usage_from_anthropic_includes_cache_reads_and_writes(raw: Any, usage: Usage) -> None:
    assert usage_from_anthropic(raw) == usage


@pytest.mark.parametrize(
    ("raw", "usage"),
    [
        (
            {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            Usage(10, 5),
        ),
        (
            {
                "prompt_tokens": 1117,
                "completion_tokens": 46,
                "prompt_tokens_details": {"cached_tokens": 1024},
                "completion_tokens_details": {"reasoning_tokens": 12},
            },
            Usage(
                prompt_tokens=1117,
                completion_tokens=46,
                cached_tokens=1024,
                reasoning_tokens=12,
            ),
        ),
        (
            {
                "prompt_tokens": 7,
                "completion_tokens": None,
                "prompt_tokens_details": None,
                "completion_tokens_details": None,
            },
            Usage(7, 0),
        ),
        (None, Usage()),
    ],
)
def test_usage_from_openai_tolerates_missing_parts(raw: Any, usage: Usage) -> None:
    assert (usage_from(raw) or Usage()) == usage


def test_anthropic_cache_write_tiers_survive_both_ways() -> None:
    raw = {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
    }
    usage = usage_from_anthropic(raw)
    assert usage == Usage(
        prompt_tokens=3110,
        completion_tokens=5,
        cached_tokens=100,
        cache_write_tokens=3000,
        cache_write_1h_tokens=2000,
    )
    assert usage_to_anthropic(usage) == raw


def test_usage_to_wire_formats() -> None:
    usage = Usage(
        prompt_tokens=160,
        completion_tokens=5,
        cached_tokens=100,
        cache_write_tokens=50,
        reasoning_tokens=2,
    )
    assert usage_to_anthropic(usage) == {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 50,
        "cache_read_input_tokens": 100,
        "cache_creation": {"ephemeral_5m_input_tokens": 50, "ephemeral_1h_input_tokens": 0},
        "output_tokens_details": {"thinking_tokens": 2},
    }
    assert usage_from_anthropic(usage_to_anthropic(usage)) == usage
    assert usage_to_openai(usage) == {
        "prompt_tokens": 160,
        "completion_tokens": 5,
        "total_tokens": 165,
        "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    assert usage_from(usage_to_openai(usage)) == Usage(
        160, 5, cached_tokens=100, reasoning_tokens=2
    )


# --- errors --------------------------------------------------------------------------------


def test_anthropic_error_body_round_trips() -> None:
    body = anthropic_error_body("rate_limit_error", "slow down")
    assert body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    assert parse_anthropic_error(body) == ("rate_limit_error", "slow down")
    assert parse_anthropic_error(json.dumps(body).encode()) == (
        "rate_limit_error",
        "slow down",
    )


@pytest.mark.parametrize(
    "body", [None, b"<html>502</html>", "[]", {"error": "x"}, {"message": "hi"}]
)
def test_unparseable_anthropic_errors_give_nothing(body: Any) -> None:
    assert parse_anthropic_error(body) == (None, None)


@pytest.mark.parametrize(
    ("body", "parsed"),
    [
        (
            {
                "error": {
                    "message": "Invalid 'messages[0].role'",
                    "type": "invalid_request_error",
                    "param": "messages.[0].role",
                    "code": "invalid_value",
                }
            },
            (
                "invalid_request_error",
                "Invalid 'messages[0].role'",
                "invalid_value",
                "messages.[0].role",
            ),
        ),
        (
            {
                "error": {
                    "message": "Rate limit",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            ("requests", "Rate limit", "rate_limit_exceeded", None),
        ),
        (
            {
                "object": "error",
                "message": "bad model",
                "type": "NotFoundError",
                "param": None,
                "code": 404,
            },
            ("NotFoundError", "bad model", "404", None),
        ),
        ({"error": "upstream down"}, (None, "upstream down", None, None)),
        ({"detail": "Not Found"}, (None, "Not Found", None, None)),
        (b'{"error": {"message": "m", "type": "t"}}', ("t", "m", None, None)),
        (b"not json", (None, None, None, None)),
        (None, (None, None, None, None)),
    ],
)
def test_parse_openai_error(body: Any, parsed: tuple[str | None, ...]) -> None:
    assert parse_error(body) == parsed
