from __future__ import annotations

import json
import random
import socket
import time
from typing import Any, cast

import pytest
import tiktoken
import tiktoken_ext.openai_public as openai_public  # type: ignore[import-untyped]

from nitroproxy import data
from nitroproxy.core import tokens
from nitroproxy.core.completion_counter import CompletionCounter
from nitroproxy.core.tokens import (
    ANTHROPIC_IMAGE_TOKENS,
    IMAGE_TOKENS_DEFAULT,
    IMAGE_TOKENS_LOW,
    count_anthropic_prompt,
    count_chat_prompt,
    count_completion_prompt,
    count_embedding_input,
    count_text,
    encoding_name_for_model,
    prompt_chars,
)
from nitroproxy.data import encoding_for_model, get_encoding

ENCODINGS = ["o200k_base", "cl100k_base"]


@pytest.fixture(params=ENCODINGS)
def enc(request: pytest.FixtureRequest) -> tiktoken.Encoding:
    return get_encoding(request.param)


@pytest.fixture
def o200k() -> tiktoken.Encoding:
    return get_encoding("o200k_base")


# -- loading ------------------------------------------------------------------------------


def test_encodings_load_without_network_or_cache_writes(monkeypatch, tmp_path):
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("network access while loading an encoding")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    get_encoding.cache_clear()

    for name in ENCODINGS:
        assert count_text(get_encoding(name), "hello world") == 2
    assert list(tmp_path.iterdir()) == []


def test_each_encoding_is_loaded_once():
    assert get_encoding("o200k_base") is get_encoding("o200k_base")
    assert encoding_for_model("gpt-4o") is get_encoding("o200k_base")


def test_a_corrupt_rank_file_is_rejected(monkeypatch, tmp_path):
    (tmp_path / "o200k_base.tiktoken").write_bytes(b"aGk= 0\n")
    monkeypatch.setattr(data, "files", lambda package: tmp_path)
    get_encoding.cache_clear()
    try:
        with pytest.raises(ValueError, match="does not match its SHA-256"):
            get_encoding("o200k_base")
    finally:
        get_encoding.cache_clear()


def test_unknown_encoding_is_rejected():
    with pytest.raises(ValueError, match="unknown encoding 'p50k_base'"):
        get_encoding("p50k_base")


@pytest.mark.parametrize("name", ENCODINGS)
def test_bundled_definitions_match_tiktoken(monkeypatch, name):
    # The official constructors download the ranks first; give them none to see the rest.
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *a, **k: {})
    official = openai_public.ENCODING_CONSTRUCTORS[name]()
    ours = get_encoding(name)
    assert ours._pat_str == official["pat_str"]
    assert ours._special_tokens == official["special_tokens"]


@pytest.mark.parametrize(
    ("name", "text", "ids"),
    [
        ("cl100k_base", "hello world", [15339, 1917]),
        ("o200k_base", "hello world", [24912, 2375]),
    ],
)
def test_bundled_ranks_give_official_ids(name, text, ids):
    assert get_encoding(name).encode_ordinary(text) == ids


# -- model → encoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", ("o200k_base", False)),
        ("gpt-4o-mini-2024-07-18", ("o200k_base", False)),
        ("chatgpt-4o-latest", ("o200k_base", False)),
        ("gpt-4.1-nano", ("o200k_base", False)),
        ("gpt-4.5-preview", ("o200k_base", False)),
        ("gpt-5-mini", ("o200k_base", False)),
        ("o1", ("o200k_base", False)),
        ("o1-mini", ("o200k_base", False)),
        ("o3-pro-2025-06-10", ("o200k_base", False)),
        ("o4-mini", ("o200k_base", False)),
        ("omni-moderation-latest", ("o200k_base", False)),
        ("openai/gpt-4o:floor", ("o200k_base", False)),
        ("GPT-4o:nitro", ("o200k_base", False)),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", ("o200k_base", False)),
        ("gpt-4", ("cl100k_base", False)),
        ("gpt-4-turbo-2024-04-09", ("cl100k_base", False)),
        ("gpt-4-0613", ("cl100k_base", False)),
        ("gpt-3.5-turbo", ("cl100k_base", False)),
        ("gpt-35-turbo", ("cl100k_base", False)),
        ("text-embedding-3-small", ("cl100k_base", False)),
        ("text-embedding-ada-002", ("cl100k_base", False)),
        ("ft:gpt-3.5-turbo-0125:acme::x", ("cl100k_base", False)),
        ("claude-3-5-sonnet-20241022", ("o200k_base", True)),
        ("anthropic/claude-sonnet-4", ("o200k_base", True)),
        ("llama-3.1-70b", ("o200k_base", True)),
        ("mistral-large", ("o200k_base", True)),
        ("olmo-2", ("o200k_base", True)),
        ("o1x", ("o200k_base", True)),
        ("mock-fast", ("o200k_base", True)),
        ("", ("o200k_base", True)),
    ],
)
def test_encoding_name_for_model(model, expected):
    assert encoding_name_for_model(model) == expected


# -- text and prompts ----------------------------------------------------------------------


def test_special_token_text_counts_as_text(enc):
    assert count_text(enc, "a <|endoftext|> b <|fim_prefix|>") > 4
    assert count_text(enc, "") == 0


# The OpenAI cookbook's example, with the counts the API reported for it.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]


@pytest.mark.parametrize(("model", "expected"), [("gpt-4-0613", 129), ("gpt-4o", 124)])
def test_chat_prompt_matches_the_cookbook(model, expected):
    body = {"model": model, "messages": COOKBOOK_MESSAGES}
    assert count_chat_prompt(encoding_for_model(model), body) == expected


def test_chat_prompt_frames_each_message(o200k):
    def n(text: str) -> int:
        return count_text(o200k, text)

    body = {"messages": [{"role": "user", "content": "hi there"}]}
    assert count_chat_prompt(o200k, body) == 3 + 3 + n("user") + n("hi there")
    named = {"messages": [{"role": "user", "name": "bob", "content": "hi there"}]}
    assert count_chat_prompt(o200k, named) == count_chat_prompt(o200k, body) + 1 + n("bob")
    assert count_chat_prompt(o200k, {"messages": []}) == 3


def test_chat_prompt_counts_parts_and_images(o200k):
    def body(*parts: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": list(parts)}]}

    text = {"type": "text", "text": "describe this"}
    base = count_chat_prompt(o200k, body(text))
    assert base == count_chat_prompt(
        o200k, {"messages": [{"role": "user", "content": "describe this"}]}
    )
    low = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
    }
    high = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    assert count_chat_prompt(o200k, body(text, low)) == base + IMAGE_TOKENS_LOW
    assert count_chat_prompt(o200k, body(text, high)) == base + IMAGE_TOKENS_DEFAULT
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    assert count_chat_prompt(o200k, body(text, audio)) == base


def test_chat_prompt_counts_tool_calls_and_results(o200k):
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    plain = {"messages": [{"role": "assistant", "content": None}]}
    with_call = {"messages": [{"role": "assistant", "content": None, "tool_calls": [call]}]}
    extra = count_chat_prompt(o200k, with_call) - count_chat_prompt(o200k, plain)
    assert extra == 3 + count_text(o200k, "get_weather") + count_text(o200k, '{"city":"Paris"}')

    result = {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"}
    counted = count_chat_prompt(o200k, {"messages": [result]})
    expected = 3 + 3 + sum(count_text(o200k, s) for s in ("tool", "call_1", "18C and sunny"))
    assert counted == expected


def test_chat_prompt_estimates_tool_definitions(o200k):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
    }
    function = {
        "name": "get_weather",
        "description": "Current weather.",
        "parameters": schema,
    }
    base = {"messages": [{"role": "user", "content": "weather?"}]}
    tools = {**base, "tools": [{"type": "function", "function": function}]}
    legacy = {**base, "functions": [function]}
    added = count_chat_prompt(o200k, tools) - count_chat_prompt(o200k, base)
    assert added == count_chat_prompt(o200k, legacy) - count_chat_prompt(o200k, base)
    schema_tokens = count_text(o200k, json.dumps(schema, separators=(",", ":")))
    assert (
        added
        == 12
        + 7
        + count_text(o200k, "get_weather")
        + count_text(o200k, "Current weather.")
        + schema_tokens
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": None},
        {"messages": "hello"},
        {
            "messages": [
                None,
                3,
                "x",
                {"content": 5},
                {"content": [None, {"type": "text"}]},
            ]
        },
        {"messages": [{"role": "assistant", "tool_calls": [{"function": "x"}, None]}]},
        {
            "tools": [None, {"function": None}],
            "functions": {"a": 1},
            "response_format": "json",
        },
    ],
)
def test_malformed_bodies_are_counted_without_raising(o200k, body):
    assert count_chat_prompt(o200k, body) >= 3
    assert count_anthropic_prompt(o200k, body) >= 3


def test_anthropic_prompt(o200k):
    def n(text: str) -> int:
        return count_text(o200k, text)

    body: dict[str, Any] = {
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "hi"}],
    }
    base = count_anthropic_prompt(o200k, body)
    assert base == 3 + n("Be brief.") + 3 + n("user") + n("hi")
    blocks = {**body, "system": [{"type": "text", "text": "Be brief."}]}
    assert count_anthropic_prompt(o200k, blocks) == base

    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    with_image = {
        **body,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, image]}],
    }
    assert count_anthropic_prompt(o200k, with_image) == base + ANTHROPIC_IMAGE_TOKENS


def test_anthropic_prompt_counts_tools(o200k):
    use = {
        "type": "tool_use",
        "id": "tu_1",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    result = {
        "type": "tool_result",
        "tool_use_id": "tu_1",
        "content": [{"type": "text", "text": "18C"}],
    }
    body = {
        "messages": [
            {"role": "assistant", "content": [use]},
            {"role": "user", "content": [result]},
        ]
    }
    framing = 3 + 2 * 3 + count_text(o200k, "assistant") + count_text(o200k, "user")
    use_tokens = 3 + count_text(o200k, "get_weather") + count_text(o200k, '{"city":"Paris"}')
    result_tokens = 3 + count_text(o200k, "18C")
    assert count_anthropic_prompt(o200k, body) == framing + use_tokens + result_tokens

    string_result = {**result, "content": "18C"}
    same = {"messages": [body["messages"][0], {"role": "user", "content": [string_result]}]}
    assert count_anthropic_prompt(o200k, same) == count_anthropic_prompt(o200k, body)

    tool = {
        "name": "get_weather",
        "description": "Weather.",
        "input_schema": {"type": "object"},
    }
    with_tools = {**body, "tools": [tool]}
    assert count_anthropic_prompt(o200k, with_tools) > count_anthropic_prompt(o200k, body) + 7


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hello world", 2),
        (["hello world", "hello"], 3),
        ([15339, 1917, 0], 3),
        ([[1, 2, 3], [4]], 4),
        ([], 0),
        ("", 0),
        (None, 0),
        ({"text": "hello"}, 0),
    ],
)
def test_completion_prompt_and_embedding_input_shapes(o200k, value, expected):
    assert count_completion_prompt(o200k, value) == expected
    assert count_embedding_input(o200k, value) == expected


def test_prompt_chars_sums_text_but_not_media():
    image = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + "A" * 10_000},
    }
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "x" * 100}, image]},
            {"role": "assistant", "content": None},
        ],
        "max_tokens": 5,
    }
    assert prompt_chars(body) == len("gpt-4o") + len("user") + len("text") + 100 + len(
        "image_url"
    ) + len("assistant")
    assert prompt_chars({"prompt": [1, 2, 3]}) == 0
    assert tokens.OFFLOAD_CHARS > 0


# -- the streaming counter ---------------------------------------------------------------

REALISTIC = {
    "prose": "I'll be honest: it's not what you'd expect. \"We're SURE,\" they said -- but DON'T "
    "worry; y'all'll see. Mr. O'Neil's café in São Paulo costs R$ 12,50 (about $2.40). " * 25,
    "markdown": "## Usage\n\n```python\ndef fib(n: int) -> int:\n    if n < 2:\n        return n\n"
    "    return fib(n - 1) + fib(n - 2)  # slow!\n```\n\n| col | value |\n|-----|------:|\n"
    "| a   |  1.5e-3 |\n\n- item one\n- item two\n\n> quote\t\ttabs\n" * 15,
    "numbers": "On 2024-08-06 at 13:45:07Z, 1234567 requests (0.1% of 1,000,000,000) hit v2.3.4; "
    "sha=3f9a0c2e7b, ip 192.168.0.1, x=-42e10, 3rd of 12th. " * 25,
    # accents, combining marks, curly quotes, emoji with skin tones, ZWJ and flags, RTL, Indic
    "unicode": (
        "Ünïcödé naïve façade — “curly” ‘quotes’… e\u0301 n\u0303 😀👍🏽👨\u200d👩\u200d👧 🇫🇷🇯🇵 "  # noqa: RUF001
        "✓ → ∑ Привет, мир! مرحبا بالعالم. नमस्ते दुनिया। "
    )
    * 25,
    "cjk": (
        "你好，世界。这是一个测试：我们正在检查中文文本的分词是否精确（没有空格）。"  # noqa: RUF001
        "日本語の文章もあります。カタカナとひらがな、漢字。한국어 문장도 있습니다. "
    )
    * 25,
    "whitespace": "a  b   c    d\n\n\n    e\t\tf \r\n g   \n  \n\t x  " * 40,
    "json": json.dumps(
        [{"id": i, "name": f"item {i}", "ok": i % 2 == 0} for i in range(60)], indent=2
    ),
}


def _random_pieces(text: str, rng: random.Random) -> list[str]:
    cap = rng.choice([1, 4, 16, 64])
    pieces, i = [], 0
    while i < len(text):
        size = rng.randint(1, cap)
        pieces.append(text[i : i + size])
        i += size
    return pieces


@pytest.mark.parametrize("text", REALISTIC.values(), ids=REALISTIC.keys())
def test_completion_counter_is_exact_on_realistic_text(enc, text):
    rng = random.Random(f"{enc.name}:{text[:20]}")
    expected = count_text(enc, text)
    for _ in range(30):
        counter = CompletionCounter(enc, flush_chars=rng.choice([8, 64, 256]))
        pieces = _random_pieces(text, rng)
        checks = set(rng.sample(range(len(pieces)), 3))
        fed = 0
        for n, piece in enumerate(pieces):
            counter.feed(piece)
            fed += len(piece)
            if n in checks:
                assert counter.total == count_text(enc, text[:fed])
        assert counter.total == expected
        assert counter.chars == len(text)


def test_completion_counter_is_exact_at_every_boundary_of_tricky_text(enc):
    # flush_chars=1 tries a cut after every delta, so every cut rule meets every neighbour.
    alphabet = [
        *"aZé'’ 1２½\n\r\t.,-/#_😀你。 x$\u0301\u200d\u00a0\u3000",  # noqa: RUF001 - deliberately confusable characters
        "'s",
        "'LL",
        "\r\n",
    ]
    alphabet.append("\U00031350")  # unassigned in Python 3.11's Unicode 14, a letter since 15
    rng = random.Random(enc.name)
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 16)))
        counter = CompletionCounter(enc, flush_chars=1)
        for char in text:
            counter.feed(char)
        assert counter.total == count_text(enc, text), repr(text)


@pytest.mark.parametrize("unit", ["a", "-", " ", "7", "\n", "你"])
def test_completion_counter_is_near_exact_on_long_runs_without_cuts(enc, unit):
    # Runs longer than the forced-cut size are cut blindly: within a token or two per cut.
    text = "start " + unit * 40_000 + " end"
    counter = CompletionCounter(enc)
    for piece in _random_pieces(text, random.Random(unit)):
        counter.feed(piece)
    expected = count_text(enc, text)
    assert abs(counter.total - expected) <= max(3, expected // 300)


class _MeteredEncoding:
    """Counts the characters handed to the encoder."""

    def __init__(self, enc: tiktoken.Encoding) -> None:
        self.enc = enc
        self.encoded_chars = 0

    def encode_ordinary(self, text: str) -> list[int]:
        self.encoded_chars += len(text)
        return self.enc.encode_ordinary(text)


@pytest.mark.parametrize("text", [REALISTIC["prose"] * 4, REALISTIC["cjk"] * 4, "x" * 100_000])
def test_completion_counter_encodes_each_character_about_once(o200k, text):
    metered = _MeteredEncoding(o200k)
    counter = CompletionCounter(cast(tiktoken.Encoding, metered))
    for i in range(0, len(text), 3):
        counter.feed(text[i : i + 3])
    assert counter.total > 0
    assert metered.encoded_chars <= 1.1 * len(text)


def test_completion_counter_needs_a_positive_flush_size(o200k):
    with pytest.raises(ValueError, match="flush_chars"):
        CompletionCounter(o200k, flush_chars=0)


def test_completion_counter_starts_empty_and_ignores_empty_deltas(o200k):
    counter = CompletionCounter(o200k)
    assert (counter.total, counter.chars) == (0, 0)
    counter.feed("")
    counter.feed("Hello")
    counter.feed("")
    assert (counter.total, counter.chars) == (1, 5)


def test_completion_counter_feed_is_cheap(o200k):
    text = REALISTIC["prose"]
    deltas = [text[i : i + 4] for i in range(0, 4000, 4)]
    best = float("inf")
    for _ in range(5):
        counter = CompletionCounter(o200k)
        start = time.perf_counter()
        for delta in deltas:
            counter.feed(delta)
        assert counter.total > 0
        best = min(best, time.perf_counter() - start)
    print(f"CompletionCounter.feed: {best / len(deltas) * 1e6:.2f} us per 4-char delta")  # -s
    assert best / len(deltas) < 50e-6  # generous, so that slow CI machines pass too
