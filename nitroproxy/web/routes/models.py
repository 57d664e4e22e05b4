"""``GET /v1/models`` and ``GET /v1/models/{model}``, in OpenAI's shape or, for a client that
sends ``anthropic-version`` (Anthropic's SDKs and Claude Code always do), in Anthropic's.
A key sees only the models it may use; any other name is a 404 in the client's shape."""

from __future__ import annotations

from aiohttp import web

from nitroproxy.core import anthropic_wire, openai_wire
from nitroproxy.core.errors import ModelNotFound
from nitroproxy.web.appkeys import AUTH, GATEWAY


def _anthropic(request: web.Request) -> bool:
    return "anthropic-version" in request.headers


def _visible(request: web.Request) -> list[str]:
    principal = request.app[AUTH].authenticate(request.headers)
    # The gateway's settings: SIGHUP reloads the models.
    return [name for name in request.app[GATEWAY].settings.models if principal.may_use(name)]


async def models(request: web.Request) -> web.Response:
    names = _visible(request)
    if _anthropic(request):
        return web.json_response(anthropic_wire.model_list(names))
    return web.json_response(openai_wire.model_list(names, created=0))


async def model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    if name not in _visible(request):
        raise ModelNotFound(
            f"the model '{name}' does not exist or you do not have access to it", param="model"
        )
    if _anthropic(request):
        return web.json_response(anthropic_wire.model_info(name))
    return web.json_response(openai_wire.model_object(name, created=0))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", models)
    # Model names may hold slashes (``openai/gpt-4o``).
    app.router.add_get("/v1/models/{model:.+}", model)
