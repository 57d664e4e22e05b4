import json
from typing import Any

import pytest

from nitroproxy.core.cache_policy import (
    HEADER,
    CacheScope,
    Mode,
    cacheable,
    canonical_request,
    decide,
    digest,
    mode_from,
    sampled,
    scope_for,
)
from nitroproxy.core.errors import InvalidRequest
from nitroproxy.core.types import Endpoint

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("header", "opt_in", "expected"),
    [
        (None, False, Mode.SKIP),
        (None, True, Mode.USE),
        ("", True, Mode.USE),
        ("use", False, Mode.USE),
        ("USE", False, Mode.USE),
        (" refresh ", False, Mode.REFRESH),
        ("skip", True, Mode.SKIP),
    ],
)
def test_the_header_wins_over_the_key_opt_in(header, opt_in, expected):
    assert mode_from(header, opt_in) is expected


def test_an_unknown_header_value_is_a_client_error_naming_the_header():
    with pytest.raises(InvalidRequest) as caught:
        mode_from("always", True)
    assert caught.value.param == HEADER == "x-nitroproxy-cache"
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("extra", "sampled_"),
    [
        ({}, False),
        ({"temperature": 0}, False),
        ({"temperature": 0.0}, False),
        ({"temperature": 0.7}, True),
        ({"temperature": 0.7, "seed": 42}, False),
        ({"temperature": True}, False),
        ({"n": 1}, False),
        ({"n": 3}, True),
        ({"temperature": 0, "n": 2, "seed": 1}, True),
        ({"best_of": 2}, True),
    ],
)
def test_sampled_means_an_explicit_request_for_variety(extra, sampled_):
    assert sampled({**CHAT, **extra}) is sampled_


@pytest.mark.parametrize(
    ("header", "extra", "expected"),
    [
        (None, {}, Mode.USE),
        (None, {"temperature": 0}, Mode.USE),
        (None, {"temperature": 1, "seed": 7}, Mode.USE),
        (None, {"temperature": 1}, Mode.SKIP),  # opt-in alone never fixes a sampled answer
        ("use", {"temperature": 1}, Mode.USE),
        ("refresh", {"temperature": 1}, Mode.REFRESH),
        ("use", {"logprobs": True}, Mode.SKIP),
        ("skip", {}, Mode.SKIP),
    ],
)
def test_decide_applies_the_sampling_policy_to_opted_in_keys(header, extra, expected):
    body = {**CHAT, **extra}
    assert decide(header, key_opt_in=True, body=body, endpoint=Endpoint.CHAT) is expected


def test_decide_validates_the_header_even_for_uncacheable_bodies():
    with pytest.raises(InvalidRequest):
        decide("yes", key_opt_in=False, body={**CHAT, "store": True}, endpoint=Endpoint.CHAT)


@pytest.mark.parametrize(
    ("endpoint", "extra", "ok"),
    [
        (Endpoint.CHAT, {}, True),
        (Endpoint.CHAT, {"store": True}, False),
        (Endpoint.CHAT, {"store": False}, True),
        (Endpoint.CHAT, {"logprobs": True}, False),
        (Endpoint.CHAT, {"logprobs": False}, True),
        (Endpoint.CHAT, {"top_logprobs": 2}, False),
        (Endpoint.CHAT, {"modalities": ["text", "audio"]}, False),
        (Endpoint.CHAT, {"audio": {"voice": "alloy"}}, False),
        (Endpoint.COMPLETIONS, {"logprobs": 3}, False),
        (Endpoint.COMPLETIONS, {}, True),
        (Endpoint.MESSAGES, {"mcp_servers": [{"url": "x"}]}, False),
        (Endpoint.MESSAGES, {"container": "c1"}, False),
        (Endpoint.MESSAGES, {"thinking": {"type": "enabled"}}, True),
        (Endpoint.EMBEDDINGS, {"input": "x"}, True),
    ],
)
def test_cacheable(endpoint, extra, ok):
    assert cacheable({**CHAT, **extra}, endpoint) is ok


def material(
    body: dict[str, Any], endpoint: Endpoint = Endpoint.CHAT, model: str = "gpt-4o"
) -> bytes:
    return canonical_request(endpoint, model, body)


def test_material_is_sorted_compact_utf8_json_of_the_answer_fields():
    raw = material({**CHAT, "messages": [{"role": "user", "content": "héllo"}]})
    assert (
        raw
        == (
            '{"endpoint":"chat.completions","model":"gpt-4o",'
            '"request":{"messages":[{"content":"héllo","role":"user"}]},"v":1}'
        ).encode()
    )


@pytest.mark.parametrize(
    "variant",
    [
        {"stream": True},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"user": "someone"},
        {"metadata": {"trace": "1"}},
        {"provider": {"order": ["a"]}},
        {"service_tier": "flex"},
        {"store": False},
        {"model": "gpt-4o:floor"},
    ],
)
def test_routing_and_delivery_fields_do_not_change_the_material(variant):
    assert material({**CHAT, **variant}) == material(CHAT)


@pytest.mark.parametrize(
    "variant",
    [
        {"temperature": 0.5},
        {"seed": 1},
        {"max_tokens": 10},
        {"max_completion_tokens": 10},
        {"stop": ["x"]},
        {"top_p": 0.9},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"tool_choice": "required"},
        {"response_format": {"type": "json_object"}},
        {"reasoning_effort": "high"},  # a field this proxy does not model still counts
        {"messages": [{"role": "user", "content": "hi!"}]},
    ],
)
def test_answer_fields_change_the_material(variant):
    assert material({**CHAT, **variant}) != material(CHAT)


def test_material_ignores_key_order_and_integral_float_spelling():
    a = {"temperature": 0, "messages": CHAT["messages"], "model": "m", "top_p": 1}
    b = {"top_p": 1.0, "model": "m", "messages": CHAT["messages"], "temperature": 0.0}
    assert material(a) == material(b)
    assert b"0.5" in material({**a, "temperature": 0.5})


def test_material_separates_endpoints_and_public_models():
    assert material(CHAT, Endpoint.CHAT) != material(CHAT, Endpoint.MESSAGES)
    assert material(CHAT, model="gpt-4o") != material(CHAT, model="gpt-4o-mini")
    assert json.loads(material(CHAT, model="gpt-4o"))["model"] == "gpt-4o"


@pytest.mark.parametrize(
    ("key", "user", "setting", "expected"),
    [
        ("k1", "u1", "key", CacheScope("key:k1", "k1", "u1")),
        ("k1", "u1", "user", CacheScope("user:u1", "k1", "u1")),
        ("k1", None, "user", CacheScope("key:k1", "k1", None)),  # falls back to the key
        (None, "u1", "user", None),
        (None, None, "key", None),  # anonymous callers never share a cache
    ],
)
def test_scope_for(key, user, setting, expected):
    assert scope_for(key, user, setting) == expected


def test_the_digest_separates_scopes():
    m = material(CHAT)
    a, b = scope_for("k1", None, "key"), scope_for("k2", None, "key")
    assert a is not None and b is not None
    assert digest(a, m) != digest(b, m)
    assert digest(a, m) == digest(scope_for("k1", "u9", "key"), m)  # type: ignore[arg-type]
