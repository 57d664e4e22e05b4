"""The Anthropic Messages surface: /v1/messages and /v1/messages/count_tokens (errors in
Anthropic's shape). The SDK's beta resources add ``?beta=true``; the query is not part of
the route, so they land here too."""

from __future__ import annotations

from aiohttp import web

from nitroproxy.core.types import ApiFormat, Endpoint
from nitroproxy.web.calls import decode_call
from nitroproxy.web.relay import relay


async def messages(request: web.Request) -> web.StreamResponse:
    return await relay(request, await decode_call(request, Endpoint.MESSAGES, ApiFormat.ANTHROPIC))


async def count_tokens(request: web.Request) -> web.StreamResponse:
    call = await decode_call(request, Endpoint.COUNT_TOKENS, ApiFormat.ANTHROPIC)
    return await relay(request, call)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
