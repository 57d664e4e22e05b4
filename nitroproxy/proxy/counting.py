"""Token counts the proxy makes itself (tiktoken), only when a provider reports none or a
stream is cut short. On the loop for small texts once the encoding is loaded; in a thread for
large texts and for the first use of an encoding (loading its rank file takes ~0.3 s), so
neither a 1 MB prompt nor a cold tokenizer ever stalls other calls. Encodings load lazily:
a proxy whose providers report usage never loads one."""

from __future__ import annotations

import asyncio

from nitroproxy import data
from nitroproxy.core import responses_wire, tokens
from nitroproxy.core.types import Endpoint
from nitroproxy.proxy.call import Call


def _model(call: Call) -> str:
    return call.meter.upstream_model or call.model.name


def count_prompt(call: Call) -> int:
    enc = data.encoding_for_model(_model(call))
    if call.endpoint in (Endpoint.MESSAGES, Endpoint.COUNT_TOKENS):
        return tokens.count_anthropic_prompt(enc, call.body)
    if call.endpoint in (Endpoint.RESPONSES, Endpoint.INPUT_TOKENS):
        return tokens.count_chat_prompt(enc, responses_wire.chat_view(call.body))
    if call.endpoint is Endpoint.COMPLETIONS:
        return tokens.count_completion_prompt(enc, call.body.get("prompt", ""))
    if call.endpoint is Endpoint.EMBEDDINGS:
        return tokens.count_embedding_input(enc, call.body.get("input", ""))
    return tokens.count_chat_prompt(enc, call.body)


def count_completion(call: Call, text: str) -> int:
    return tokens.count_text(data.encoding_for_model(_model(call)), text)


def prompt_is_large(call: Call, offload_chars: int) -> bool:
    """Worth a thread: the request's bytes (which the prompt's characters never exceed)
    say so at once; a call built without them is measured."""
    if call.prompt.ceiling:
        return call.prompt.guess * 4 > offload_chars and (
            tokens.prompt_chars(call.body) > offload_chars
        )
    return tokens.prompt_chars(call.body) > offload_chars


def on_loop(call: Call, offload_chars: int, text: str = "") -> bool:
    """Whether counting this call's prompt (and ``text``) may run on the event loop."""
    return (
        data.encoding_ready(_model(call))
        and len(text) <= offload_chars
        and not prompt_is_large(call, offload_chars)
    )


async def count_prompt_async(call: Call, offload_chars: int) -> int:
    if on_loop(call, offload_chars):
        return count_prompt(call)
    return await asyncio.get_running_loop().run_in_executor(None, count_prompt, call)


async def count_output(call: Call, text: str, offload_chars: int) -> int:
    if data.encoding_ready(_model(call)) and len(text) <= offload_chars:
        return count_completion(call, text)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, count_completion, call, text)
