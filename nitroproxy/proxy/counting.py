"""Token counts the proxy makes itself (tiktoken), on the loop for small texts and in a
thread for large ones, so a 1 MB prompt never stalls other calls."""

from __future__ import annotations

import asyncio

from nitroproxy import data
from nitroproxy.core import responses_wire, tokens
from nitroproxy.core.types import Endpoint
from nitroproxy.proxy.call import Call


def count_prompt(call: Call) -> int:
    enc = data.encoding_for_model(call.meter.upstream_model or call.model.name)
    if call.endpoint in (Endpoint.MESSAGES, Endpoint.COUNT_TOKENS):
        return tokens.count_anthropic_prompt(enc, call.body)
    if call.endpoint in (Endpoint.RESPONSES, Endpoint.INPUT_TOKENS):
        return tokens.count_chat_prompt(enc, responses_wire.chat_view(call.body))
    if call.endpoint is Endpoint.COMPLETIONS:
        return tokens.count_completion_prompt(enc, call.body.get("prompt", ""))
    if call.endpoint is Endpoint.EMBEDDINGS:
        return tokens.count_embedding_input(enc, call.body.get("input", ""))
    return tokens.count_chat_prompt(enc, call.body)


def prompt_is_large(call: Call, offload_chars: int) -> bool:
    """Worth a thread: the request's bytes (which the prompt's characters never exceed)
    say so at once; a call built without them is measured."""
    if call.prompt.ceiling:
        return call.prompt.guess * 4 > offload_chars and (
            tokens.prompt_chars(call.body) > offload_chars
        )
    return tokens.prompt_chars(call.body) > offload_chars


async def count_prompt_async(call: Call, offload_chars: int) -> int:
    if prompt_is_large(call, offload_chars):
        return await asyncio.get_running_loop().run_in_executor(None, count_prompt, call)
    return count_prompt(call)


async def count_output(model: str, text: str, offload_chars: int) -> int:
    enc = data.encoding_for_model(model)
    if len(text) > offload_chars:
        return await asyncio.get_running_loop().run_in_executor(None, tokens.count_text, enc, text)
    return tokens.count_text(enc, text)
