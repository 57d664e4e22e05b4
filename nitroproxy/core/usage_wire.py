"""Usage in each API's own shape, for answers the proxy completes itself (an upstream that
reported none): the client gets the numbers the record carries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nitroproxy.core.anthropic_wire import usage_to_anthropic, usage_to_openai
from nitroproxy.core.responses_wire import input_tokens_body, usage_to_responses
from nitroproxy.core.types import ApiFormat, Endpoint, Usage


def shaped(fmt: ApiFormat, endpoint: Endpoint, usage: Usage) -> dict[str, Any]:
    if fmt is ApiFormat.ANTHROPIC:
        return usage_to_anthropic(usage)
    if endpoint is Endpoint.RESPONSES:
        return usage_to_responses(usage)
    if endpoint is Endpoint.EMBEDDINGS:
        return {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens}
    return usage_to_openai(usage)


def attach(
    document: Mapping[str, Any], fmt: ApiFormat, endpoint: Endpoint, usage: Usage
) -> dict[str, Any]:
    """A copy of a non-streamed answer with ``usage`` in the client's format."""
    return {**document, "usage": shaped(fmt, endpoint, usage)}


def count_answer(endpoint: Endpoint, tokens: int) -> dict[str, Any]:
    """The answer of a token-counting endpoint: Anthropic's count_tokens or OpenAI's
    Responses input_tokens."""
    if endpoint is Endpoint.INPUT_TOKENS:
        return input_tokens_body(tokens)
    return {"input_tokens": tokens}
