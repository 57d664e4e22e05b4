"""Deterministic completion text, prompt token counts and embeddings of the mock (pure).

Prompt tokens are a documented formula, not a tokenizer, so tests can predict them:

- chat / messages: ``3 + sum(3 + words(m) for m in messages)``, plus ``3 + words(system)``
  when an Anthropic system prompt is given; ``words`` counts whitespace-separated words of
  all text in the content (strings, ``text`` parts, nested ``content`` such as tool results).
- legacy completions and embeddings: words of each string, length of each token array.
"""

import base64
import hashlib
import struct
from collections.abc import Sequence
from typing import TypeGuard

import orjson

# Each entry, with its leading space, is exactly one token in both cl100k_base and o200k_base,
# and each starts a new pre-token in both split patterns, so N entries joined are exactly N
# tokens: completion_tokens always equals what a tokenizer counts on the text.
# tests/test_mock_provider.py checks this against the bundled rank files.
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

EMBEDDING_DIMENSIONS = 8


def completion_text(tokens: int) -> str:
    """The text of a ``tokens``-token completion: ``WORDS`` repeated cyclically."""
    rounds, rest = divmod(tokens, len(WORDS))
    return _CYCLE * rounds + "".join(WORDS[:rest])


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
    raise ValueError(
        "expected a string, an array of token ids, or a non-empty array of either"
    )


def embedding_vector(item: str | list[int]) -> tuple[float, ...]:
    """8 floats in [-1, 1) from a hash of ``item``; each is exactly representable as float32,
    so the ``float`` and ``base64`` encodings carry the same numbers."""
    data = (
        item.encode()
        if isinstance(item, str)
        else b"tokens:" + bytes(str(item), "ascii")
    )
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
        # A message ({"role", "content"}), a text part ({"type": "text", "text"}) or an
        # Anthropic tool_result block ({"content": ...}).
        return " ".join(_text_of(content.get(key)) for key in ("text", "content"))
    return ""
