"""The mock provider's aiohttp application: routes, admission, faults before any response."""

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from nitroproxy.mock import anthropic_routes, openai_routes, responses_routes
from nitroproxy.mock.errors import (
    Family,
    InvalidRequest,
    error_response,
    fault_response,
)
from nitroproxy.mock.exchange import Call, abort, hang
from nitroproxy.mock.script import parse_script
from nitroproxy.mock.settings import MockSettings
from nitroproxy.mock.state import MOCK_STATE, MockState, ReceivedRequest

_Route = Callable[[Call], Awaitable[web.StreamResponse]]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_mock_app(settings: MockSettings | None = None) -> web.Application:
    app = web.Application()
    app[MOCK_STATE] = MockState(settings or MockSettings())
    routes: tuple[tuple[str, Family, tuple[str, ...], _Route], ...] = (
        ("/v1/chat/completions", "openai", ("model", "messages"), openai_routes.chat),
        ("/v1/completions", "openai", ("model", "prompt"), openai_routes.completions),
        ("/v1/embeddings", "openai", ("model", "input"), openai_routes.embeddings),
        ("/v1/messages", "anthropic", ("model", "messages"), anthropic_routes.messages),
        ("/v1/responses", "openai", ("model",), responses_routes.responses),
        ("/v1/responses/input_tokens", "openai", ("model",), responses_routes.input_tokens),
        (
            "/v1/messages/count_tokens",
            "anthropic",
            ("model", "messages"),
            responses_routes.count_tokens,
        ),
    )
    for path, family, required, route in routes:
        app.router.add_post(path, _endpoint(family, required, route))
    app.router.add_get("/v1/models", _models)
    return app


def run_mock(host: str, port: int, settings: MockSettings) -> None:
    """Serve until interrupted (the ``nitroproxy mock-provider`` command)."""
    web.run_app(
        create_mock_app(settings),
        host=host,
        port=port,
        # Without it a dropped client is only noticed at the next write, not during a sleep.
        handler_cancellation=True,
        access_log=None,
    )


def _endpoint(family: Family, required: tuple[str, ...], route: _Route) -> _Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[MOCK_STATE]
        raw = await request.read()
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        refusal = _admit(request, state, family, body)
        if refusal is not None:
            return refusal
        state.in_flight += 1
        state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
        try:
            return await _answer(request, state, family, body, required, route)
        finally:
            state.in_flight -= 1

    return handle


async def _answer(
    request: web.Request,
    state: MockState,
    family: Family,
    body: Any,
    required: tuple[str, ...],
    route: _Route,
) -> web.StreamResponse:
    try:
        call = _accept(request, state, family, body, required)
        script = call.script
        if "reset" in script.flags:
            return abort(request)
        if "hang" in script.flags:
            await hang(state)
        if script.fail_status is not None:
            return fault_response(family, script.fail_status, script.retry_after)
        return await route(call)
    except InvalidRequest as exc:
        return error_response(family, 400, exc.message, param=exc.param)


async def _models(request: web.Request) -> web.StreamResponse:
    refusal = _admit(request, request.app[MOCK_STATE], "openai", None)
    if refusal is not None:
        return refusal
    return web.Response(body=openai_routes.MODELS_BODY, content_type="application/json")


def _admit(
    request: web.Request, state: MockState, family: Family, body: Any
) -> web.Response | None:
    """Count and record the request; return a 401 if the API key is wrong."""
    state.total_requests += 1
    if state.settings.record:
        headers = {name.lower(): value for name, value in request.headers.items()}
        at = time.monotonic()
        state.requests.append(ReceivedRequest(request.path, request.method, headers, body, at))
    key = state.settings.api_key
    if key is None:
        return None
    if family == "openai":
        if request.headers.get("Authorization") != f"Bearer {key}":
            return error_response(family, 401, "Incorrect API key provided.")
    elif request.headers.get("x-api-key") != key:
        return error_response(family, 401, "invalid x-api-key")
    return None


def _accept(
    request: web.Request,
    state: MockState,
    family: Family,
    body: Any,
    required: tuple[str, ...],
) -> Call:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body is not a valid JSON object.")
    for name in required:
        if name not in body:
            raise InvalidRequest(f"Missing required parameter: '{name}'.", name)
    model = body["model"]
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' must be a non-empty string.", "model")
    try:
        script = parse_script(model, state.settings, state.take_fault(model), body.get("mock"))
    except ValueError as exc:
        raise InvalidRequest(str(exc), "model") from exc
    return Call(request, state, family, body, model, script)
