"""The Anthropic Messages surface: /v1/messages (errors in Anthropic's shape)."""

from __future__ import annotations

from aiohttp import web

from nitroproxy.core.types import ApiFormat, Endpoint
from nitroproxy.web.calls import decode_call
from nitroproxy.web.relay import relay


async def messages(request: web.Request) -> web.StreamResponse:
    return await relay(request, await decode_call(request, Endpoint.MESSAGES, ApiFormat.ANTHROPIC))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
