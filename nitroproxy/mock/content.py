"""Deterministic completion text, prompt token counts and embeddings of the mock (pure).

Prompt tokens are a documented formula, not a tokenizer, so tests can predict them:

- chat / messages / responses: ``3 + sum(3 + words(m) for m in messages)``, plus
  ``3 + words(system)`` when an Anthropic system prompt (or Responses ``instructions``) is
  given; ``words`` counts whitespace-separated words of all text in the content (strings,
  ``text`` parts, nested ``content`` such as tool results, a Responses item's ``output``).
  A Responses ``input`` string is one message. Count-tokens routes answer the same number.
- legacy completions and embeddings: words of each string, length of each token array.

Under the ``echo`` directive the completion is the last user text instead of ``WORDS`` (see
``echo_words``), and a tool call's arguments carry that text (see ``echo_tool_call``).
"""

import base64
import hashlib
import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson

# Each entry, with its leading space, is exactly one token in both cl100k_base and o200k_base,
# and each starts a new pre-token in both split patterns, so N entries joined are exactly N
# tokens: completion_tokens always equals what a tokenizer counts on the text.
# tests/mock/test_mock_provider.py checks this against the bundled rank files.
# fmt: off
WORDS: tuple[str, ...] = (
    " the", " quick", " brown", " fox", " jumps", " over", " lazy", " dog", " while", " a",
    " small", " bird", " sings", " in", " morning", " light", " and", " river", " water", " runs",
    " past", " green", " hills", " under", " blue", " sky", " with", " soft", " wind", " near",
    " old", " stone", " house", " where", " people", " live", " happy",
)
# fmt: on
WORDS_JSON: tuple[bytes, ...] = tuple(orjson.dumps(word) for word in WORDS)
_CYCLE = "".join(WORDS)

TOOL_INPUT = {"query": "mock value"}
TOOL_ARGUMENTS = '{"query": "mock value"}'
# Streamed arguments arrive in fragments that split JSON tokens, as OpenAI's and Anthropic's do;
# a tool-call answer reports one completion token per fragment.
TOOL_ARGUMENT_FRAGMENTS = ('{"', "query", '": "', "mock", " value", '"}')


@dataclass(frozen=True)
class ToolCall:
    """The arguments of a tool-call answer, whole and as streamed fragments."""

    input: dict[str, Any]
    """The arguments as an object (Anthropic's ``input``)."""
    arguments: str
    """The arguments JSON-encoded (OpenAI's ``arguments``); the fragments joined."""
    fragments: tuple[str, ...]
    """One streamed delta, and one reported completion token, each."""


MOCK_TOOL_CALL = ToolCall(TOOL_INPUT, TOOL_ARGUMENTS, TOOL_ARGUMENT_FRAGMENTS)
_ARGUMENTS_OPEN = ('{"', "query", '": "')
# A run of spaces with the word after it, or the first word: the string split before spaces.
_PIECE = re.compile(r" +[^ ]*|[^ ]+")

EMBEDDING_DIMENSIONS = 8


def completion_text(tokens: int) -> str:
    """The text of a ``tokens``-token completion: ``WORDS`` repeated cyclically."""
    rounds, rest = divmod(tokens, len(WORDS))
    return _CYCLE * rounds + "".join(WORDS[:rest])


def echo_words(text: str) -> tuple[str, ...]:
    """The tokens of an ``echo`` completion: each whitespace-separated word of ``text``, with a
    leading space like ``WORDS``; the text is these joined, so whitespace is normalised.

    ``completion_tokens`` counts these words: the mock's count, not a tokenizer's (a word such
    as a canary string is usually several tokens in a real encoding).
    """
    return tuple(" " + word for word in text.split())


def echo_tool_call(text: str) -> ToolCall:
    """Tool arguments ``{"query": text}`` for ``echo``; non-ASCII stays unescaped, so a canary
    without quotes, backslashes or control characters appears verbatim in the JSON.

    The fragments open like ``TOOL_ARGUMENT_FRAGMENTS`` and then split the encoded text before
    each run of spaces; a client must join them before looking for the text.
    """
    arguments = json.dumps({"query": text}, ensure_ascii=False)
    encoded = arguments[len("".join(_ARGUMENTS_OPEN)) : -len('"}')]
    fragments = (*_ARGUMENTS_OPEN, *_PIECE.findall(encoded), '"}')
    return ToolCall({"query": text}, arguments, fragments)


def last_user_text(messages: Sequence[object]) -> str:
    """The text of the last ``"role": "user"`` message (chat, Anthropic Messages and Responses
    input items): its string content, or its ``text``/``input_text`` parts joined by newlines;
    other parts (images, tool results) are skipped. Empty if there is no user message."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(
                    part["text"]
                    for part in content
                    if isinstance(part, dict)
                    and part.get("type") in ("text", "input_text")
                    and isinstance(part.get("text"), str)
                )
            return ""
    return ""


def prompt_text(prompt: object) -> str:
    """The text of a legacy ``prompt``: the string, or the last string of a list of prompts
    (the mock answers only one); token arrays have no text."""
    items = [prompt] if isinstance(prompt, str) else prompt if isinstance(prompt, list) else []
    strings = [item for item in items if isinstance(item, str)]
    return strings[-1] if strings else ""


def word_json(index: int) -> bytes:
    """The JSON string (quotes included) of the token at ``index``."""
    return WORDS_JSON[index % len(WORDS_JSON)]


def chat_prompt_tokens(messages: Sequence[object], system: object = None) -> int:
    total = 3 + sum(3 + _words(_text_of(message)) for message in messages)
    if system:
        total += 3 + _words(_text_of(system))
    return total


def text_prompt_tokens(prompt: object) -> int:
    """Tokens of a legacy ``prompt`` or of embeddings ``input``; ValueError if malformed."""
    return sum(_item_tokens(item) for item in embedding_items(prompt))


def embedding_items(value: object) -> list[str | list[int]]:
    """Normalise a string, token array, or list of either; ValueError if malformed or empty."""
    if isinstance(value, str) or _is_token_array(value):
        return [value]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(item, str) or _is_token_array(item) for item in value)
    ):
        return value
    raise ValueError("expected a string, an array of token ids, or a non-empty array of either")


def embedding_vector(item: str | list[int]) -> tuple[float, ...]:
    """8 floats in [-1, 1) from a hash of ``item``; each is exactly representable as float32,
    so the ``float`` and ``base64`` encodings carry the same numbers."""
    data = item.encode() if isinstance(item, str) else b"tokens:" + bytes(str(item), "ascii")
    digest = hashlib.blake2b(data, digest_size=4 * EMBEDDING_DIMENSIONS).digest()
    raw = (n / 2**31 for n in struct.unpack(f"<{EMBEDDING_DIMENSIONS}i", digest))
    packed = struct.pack(f"<{EMBEDDING_DIMENSIONS}f", *raw)
    return struct.unpack(f"<{EMBEDDING_DIMENSIONS}f", packed)


def embedding_base64(vector: Sequence[float]) -> str:
    """OpenAI's ``encoding_format: "base64"``: little-endian float32 array, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _item_tokens(item: str | list[int]) -> int:
    return _words(item) if isinstance(item, str) else len(item)


def _is_token_array(value: object) -> TypeGuard[list[int]]:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(n, int) and not isinstance(n, bool) for n in value)
    )


def _words(text: str) -> int:
    return len(text.split())


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text_of(part) for part in content)
    if isinstance(content, dict):
        # A message ({"role", "content"}), a text part ({"type": "text", "text"}), an
        # Anthropic tool_result block ({"content": ...}) or a Responses tool output
        # ({"output": ...}).
        return " ".join(_text_of(content.get(key)) for key in ("text", "content", "output"))
    return ""
