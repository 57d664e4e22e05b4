"""Token counting: bundled tiktoken encodings, prompt counts per API shape, and an
incremental completion counter for streams.

Counts for models that are not OpenAI's (``is_estimate``) use ``o200k_base`` and are estimates;
so are the fixed per-image figures and the tool-definition counts (see each function).

The rank files ship as package data; ``nitroproxy.data`` reads each once per process and
builds it here (:func:`build_encoding`), so nothing touches the network or writes a cache,
whatever ``TIKTOKEN_CACHE_DIR`` says. Always take encodings from
``nitroproxy.data.get_encoding``: ``tiktoken.get_encoding`` would try to download them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import tiktoken

from nitroproxy.core import models

__all__ = [
    "ANTHROPIC_IMAGE_TOKENS",
    "ENCODINGS",
    "IMAGE_TOKENS_DEFAULT",
    "IMAGE_TOKENS_LOW",
    "OFFLOAD_CHARS",
    "PromptSize",
    "build_encoding",
    "check_encoding_name",
    "count_anthropic_prompt",
    "count_chat_prompt",
    "count_completion_prompt",
    "count_embedding_input",
    "count_text",
    "encoding_name_for_model",
    "prompt_chars",
    "prompt_size",
]

# Above this many characters (see prompt_chars) a caller should count in a worker thread:
# tiktoken encodes roughly 5-10 M chars/s, so 20k chars hold the event loop for 2-4 ms.
OFFLOAD_CHARS = 20_000

# The OpenAI cookbook's chat framing (gpt-3.5-turbo-0613 and later, gpt-4*, gpt-4o*):
# <|start|>{role}\n{content}<|end|> per message, +1 for a name, and the reply is primed with
# <|start|>assistant<|message|>. We apply the same framing to Anthropic bodies as an estimate.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
# OpenAI images: detail "low" costs a flat 85; "high"/"auto" cost 85 + 170 per 512px tile,
# which we cannot know without decoding the image, so we take a 1024x1024 image (4 tiles).
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS_DEFAULT = 765
# Anthropic bills an image as about width*height/750 tokens, and downsizes anything above
# ~1.15 megapixels, so about 1600 is the ceiling; without decoding we assume the ceiling.
ANTHROPIC_IMAGE_TOKENS = 1600
# Tool definitions are rendered by the provider in a private format. We count the name, the
# description and the compact JSON of the schema, plus the cookbook's measured framing
# (7 per function, 12 per list), which lands within a few percent for typical schemas.
_TOOL_DEF_TOKENS = 7
_TOOL_LIST_TOKENS = 12
_TOOL_CALL_TOKENS = 3

# ---------------------------------------------------------------------------------------
# Encodings


@dataclass(frozen=True, slots=True)
class _Spec:
    sha256: str
    pat_str: str
    special_tokens: Mapping[str, int]


# pat_str and special tokens are copied from tiktoken_ext.openai_public, whose constructors
# download the rank file before returning them; tests check the copies stay identical.
_SPECS = {
    "cl100k_base": _Spec(
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=(
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
            r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        special_tokens={
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": _Spec(
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
                r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
                r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}


ENCODINGS = tuple(_SPECS)


def check_encoding_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a bundled encoding."""
    if name not in _SPECS:
        raise ValueError(f"unknown encoding {name!r}; bundled: {', '.join(_SPECS)}")


def build_encoding(name: str, data: bytes) -> tiktoken.Encoding:
    """The encoding ``name`` from the bytes of its rank file (``nitroproxy.data`` reads them).

    Raises ``ValueError`` for another name or a rank file that fails its SHA-256 check.
    """
    check_encoding_name(name)
    spec = _SPECS[name]
    if hashlib.sha256(data).hexdigest() != spec.sha256:
        raise ValueError(f"bundled {name}.tiktoken does not match its SHA-256")
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(
        name,
        pat_str=spec.pat_str,
        mergeable_ranks=ranks,
        special_tokens=dict(spec.special_tokens),
    )


# Checked in order, so "gpt-4o" and "gpt-4.1" win over "gpt-4".
_PREFIXES = (
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("gpt-oss", "o200k_base"),
    ("omni-moderation", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),  # Azure deployment spelling
    ("text-embedding-3-", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)
_ESTIMATE_ENCODING = "o200k_base"


def _bare_model(model: str) -> str:
    """``"openai/gpt-4o:floor"`` → ``"gpt-4o"``; ``"ft:gpt-4o-mini:org::id"`` →
    ``"gpt-4o-mini"`` (a fine-tune counts like its base model)."""
    name = models.bare_name(model)
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    return name


def encoding_name_for_model(model: str) -> tuple[str, bool]:
    """``(encoding name, is_estimate)`` for ``model``.

    OpenAI families get their own encoding. Every other model (Claude, Llama, Mistral, unknown
    names) gets ``o200k_base`` with ``is_estimate=True``: it is the most compact of the two on
    modern multilingual text, and those providers report usage themselves in most cases.
    """
    name = _bare_model(model)
    for prefix, encoding in _PREFIXES:
        if name.startswith(prefix):
            return encoding, False
    # The o-series: o1, o1-mini, o3-pro, o4-mini-2025-04-16 ... but not "o1x" or "olmo".
    if len(name) >= 2 and name[0] == "o" and name[1].isdigit():
        rest = name[1:].lstrip("0123456789")
        if not rest or rest[0] == "-":
            return "o200k_base", False
    return _ESTIMATE_ENCODING, True


def count_text(enc: tiktoken.Encoding, text: str) -> int:
    """Tokens in ``text``; special-token strings such as ``<|endoftext|>`` count as text."""
    return len(enc.encode_ordinary(text)) if text else 0


# ---------------------------------------------------------------------------------------
# Prompts. Bodies are client JSON: parts of an unexpected shape are skipped, never raised
# on (validation belongs to the wire decoders).


def _dicts(value: object) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, Mapping))


def _str(enc: tiktoken.Encoding, value: object) -> int:
    return count_text(enc, value) if isinstance(value, str) else 0


def _json(enc: tiktoken.Encoding, value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return count_text(enc, value)
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return count_text(enc, text)


def _tool_definitions(enc: tiktoken.Encoding, defs: list[Mapping[str, Any]], schema: str) -> int:
    """An estimate: name, description and compact JSON of ``defs[i][schema]``, plus framing."""
    if not defs:
        return 0
    total = _TOOL_LIST_TOKENS
    for d in defs:
        total += _TOOL_DEF_TOKENS + _str(enc, d.get("name")) + _str(enc, d.get("description"))
        total += _json(enc, d.get(schema))
    return total


def _openai_content(enc: tiktoken.Encoding, content: object) -> int:
    if isinstance(content, str):
        return count_text(enc, content)
    total = 0
    for part in _dicts(content):
        kind = part.get("type")
        if kind == "text":
            total += _str(enc, part.get("text"))
        elif kind == "refusal":
            total += _str(enc, part.get("refusal"))
        elif kind == "image_url":
            image = part.get("image_url")
            low = isinstance(image, Mapping) and image.get("detail") == "low"
            total += IMAGE_TOKENS_LOW if low else IMAGE_TOKENS_DEFAULT
        # input_audio and file parts are not estimated.
    return total


def _openai_call(enc: tiktoken.Encoding, function: object) -> int:
    if not isinstance(function, Mapping):
        return 0
    return (
        _TOOL_CALL_TOKENS + _str(enc, function.get("name")) + _json(enc, function.get("arguments"))
    )


def count_chat_prompt(enc: tiktoken.Encoding, body: Mapping[str, Any]) -> int:
    """Prompt tokens of an OpenAI chat completions request body, framed as OpenAI does.

    Exact for plain text messages on OpenAI models; images, tool calls, ``tools``/``functions``
    and ``response_format`` schemas are estimates (see the constants above).
    """
    total = REPLY_PRIMING
    for message in _dicts(body.get("messages")):
        total += TOKENS_PER_MESSAGE + _str(enc, message.get("role"))
        if isinstance(name := message.get("name"), str):
            total += TOKENS_PER_NAME + count_text(enc, name)
        total += _openai_content(enc, message.get("content"))
        total += _str(enc, message.get("refusal")) + _str(enc, message.get("tool_call_id"))
        for call in _dicts(message.get("tool_calls")):
            total += _openai_call(enc, call.get("function"))
        total += _openai_call(enc, message.get("function_call"))
    defs = [t.get("function") for t in _dicts(body.get("tools"))]
    defs += _dicts(body.get("functions"))
    total += _tool_definitions(enc, [d for d in defs if isinstance(d, Mapping)], "parameters")
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping):
        total += _json(enc, response_format.get("json_schema"))
    return total


def _anthropic_blocks(enc: tiktoken.Encoding, content: object, *, nested: bool = False) -> int:
    if isinstance(content, str):
        return count_text(enc, content)
    total = 0
    for block in _dicts(content):
        kind = block.get("type")
        if kind == "text":
            total += _str(enc, block.get("text"))
        elif kind == "image":
            total += ANTHROPIC_IMAGE_TOKENS
        elif kind == "thinking":
            total += _str(enc, block.get("thinking"))
        elif kind == "document":
            source = block.get("source")
            if isinstance(source, Mapping) and source.get("type") == "text":
                total += _str(enc, source.get("data"))
        elif kind in ("tool_use", "server_tool_use"):
            total += (
                _TOOL_CALL_TOKENS + _str(enc, block.get("name")) + _json(enc, block.get("input"))
            )
        elif kind == "tool_result" and not nested:
            # One level only: a tool result holds text and images, not further results.
            total += _TOOL_CALL_TOKENS + _anthropic_blocks(enc, block.get("content"), nested=True)
        # redacted_thinking, PDF documents and server tool results are not estimated.
    return total


def count_anthropic_prompt(enc: tiktoken.Encoding, body: Mapping[str, Any]) -> int:
    """An estimate of the input tokens of an Anthropic Messages request body.

    Claude's tokenizer is not public: text is counted with ``enc`` and framed like OpenAI
    chat (per message and reply priming); images count ``ANTHROPIC_IMAGE_TOKENS`` each.
    """
    total = REPLY_PRIMING + _anthropic_blocks(enc, body.get("system"))
    for message in _dicts(body.get("messages")):
        total += TOKENS_PER_MESSAGE + _str(enc, message.get("role"))
        total += _anthropic_blocks(enc, message.get("content"))
    return total + _tool_definitions(enc, list(_dicts(body.get("tools"))), "input_schema")


def _count_inputs(enc: tiktoken.Encoding, value: object) -> int:
    if isinstance(value, str):
        return count_text(enc, value)
    if not isinstance(value, list):
        return 0
    total = 0
    for item in value:
        if isinstance(item, str):
            total += count_text(enc, item)
        elif isinstance(item, int):
            total += 1  # a token id
        elif isinstance(item, list):
            total += len(item)  # a list of token ids
    return total


def count_completion_prompt(enc: tiktoken.Encoding, prompt: object) -> int:
    """Tokens in a legacy completions ``prompt``: str, list[str], list[int] or list[list[int]]."""
    return _count_inputs(enc, prompt)


def count_embedding_input(enc: tiktoken.Encoding, input: object) -> int:
    """Tokens in an embeddings ``input``; the same shapes as a completions prompt."""
    return _count_inputs(enc, input)


# Keys whose values are media payloads (URLs, base64), which are never tokenized as text.
_PAYLOAD_KEYS = frozenset({"image_url", "source", "input_audio", "file"})


def prompt_chars(body: Mapping[str, Any]) -> int:
    """A cheap size measure: the total length of the strings in ``body`` outside media
    payloads. Compare with ``OFFLOAD_CHARS`` to decide whether to count in a thread."""
    total = 0
    stack: list[object] = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, Mapping):
            stack.extend(v for k, v in value.items() if k not in _PAYLOAD_KEYS)
        elif isinstance(value, list):
            stack.extend(value)
    return total


# -- sizes for admission, without a tokenizer ----------------------------------------------

# One image or document part counts at most this many prompt tokens (OpenAI's largest image
# tiles and Anthropic's ~1.15 megapixel images stay under it); tool definitions may add a
# provider's hidden tool-use prompt (Anthropic's is ~350 tokens).
MEDIA_TOKEN_ALLOWANCE = 3000
TOOLS_TOKEN_ALLOWANCE = 1000
_MEDIA_MARKS = (b'"image', b'"document"', b'"input_file"', b'"file"')


@dataclass(frozen=True, slots=True)
class PromptSize:
    """What admission knows of a prompt from its request bytes alone.

    ``guess`` is OpenAI's own rate-limit estimate (a token per four bytes): tokens/min
    windows hold it until the call settles at its real count. ``ceiling`` can only be
    passed by text that was not in the request: a byte-pair token stands for at least one
    byte of UTF-8 text, JSON escapes only add bytes, and a chat template adds fewer tokens
    per message than its JSON wrapper has bytes; image and document parts and tool
    definitions get the allowances above. Budgets reserve the ceiling."""

    guess: int
    ceiling: int


def prompt_size(raw: bytes | bytearray) -> PromptSize:
    """The size of a request's prompt from its raw JSON body, in a few C-speed scans."""
    n = len(raw)
    media = sum(raw.count(mark) for mark in _MEDIA_MARKS)
    tools = TOOLS_TOKEN_ALLOWANCE if b'"tools"' in raw else 0
    return PromptSize(guess=n // 4, ceiling=n + media * MEDIA_TOKEN_ALLOWANCE + tools)
