"""The OpenAI-compatible surface: /v1/chat/completions, /v1/completions, /v1/embeddings, and
the Responses API: /v1/responses and /v1/responses/input_tokens (``/v1/models`` is in
``routes.models``)."""

from __future__ import annotations

from aiohttp import web

from nitroproxy.core.types import ApiFormat, Endpoint
from nitroproxy.web.calls import decode_call
from nitroproxy.web.relay import relay


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await relay(request, await decode_call(request, Endpoint.CHAT, ApiFormat.OPENAI))


async def completions(request: web.Request) -> web.StreamResponse:
    call = await decode_call(request, Endpoint.COMPLETIONS, ApiFormat.OPENAI)
    return await relay(request, call)


async def embeddings(request: web.Request) -> web.StreamResponse:
    call = await decode_call(request, Endpoint.EMBEDDINGS, ApiFormat.OPENAI)
    return await relay(request, call)


async def responses(request: web.Request) -> web.StreamResponse:
    call = await decode_call(request, Endpoint.RESPONSES, ApiFormat.OPENAI)
    return await relay(request, call)


async def input_tokens(request: web.Request) -> web.StreamResponse:
    call = await decode_call(request, Endpoint.INPUT_TOKENS, ApiFormat.OPENAI)
    return await relay(request, call)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/v1/responses/input_tokens", input_tokens)
