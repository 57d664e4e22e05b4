"""The OpenAI-compatible surface: /v1/chat/completions, /v1/completions, /v1/embeddings,
/v1/models."""

from __future__ import annotations

from aiohttp import web

from nitroproxy.core import openai_wire
from nitroproxy.core.types import ApiFormat, Endpoint
from nitroproxy.web.appkeys import AUTH, SETTINGS
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


async def models(request: web.Request) -> web.Response:
    principal = request.app[AUTH].authenticate(request.headers)
    names = [n for n in request.app[SETTINGS].models if principal.may_use(n)]
    return web.json_response(openai_wire.model_list(names, created=0))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
