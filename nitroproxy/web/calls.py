"""From an HTTP request to a ``Call``: authenticate, read the body under its cap, decode,
resolve the model. Everything that can be refused is refused here, before routing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from nitroproxy.core import anthropic_request, cache_policy, end_users, openai_wire, selection
from nitroproxy.core.accounting import client_ip
from nitroproxy.core.errors import InvalidRequest, ModelNotFound, PermissionDenied
from nitroproxy.core.types import ApiFormat, Endpoint
from nitroproxy.proxy.call import Call
from nitroproxy.web.appkeys import AUTH, GATEWAY, SETTINGS
from nitroproxy.web.middleware import REQUEST_ID


async def read_json(request: web.Request) -> Any:
    raw = await request.read()  # bounded by the application's client_max_size
    if not raw:
        raise InvalidRequest("the request body is empty; expected a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc.msg}") from None


def _validator(endpoint: Endpoint) -> Callable[[Any], Mapping[str, Any]]:
    if endpoint is Endpoint.MESSAGES:

        def validate(body: Any) -> Mapping[str, Any]:
            anthropic_request.validate_messages_request(body)
            return body  # type: ignore[no-any-return]

        return validate
    return openai_wire.VALIDATORS[endpoint]


def peer_address(request: web.Request, trust_forwarded: bool) -> str | None:
    if trust_forwarded:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.remote


async def decode_call(request: web.Request, endpoint: Endpoint, fmt: ApiFormat) -> Call:
    app = request.app
    settings = app[SETTINGS]
    principal = app[AUTH].authenticate(request.headers)
    body = _validator(endpoint)(await read_json(request))
    name, forced = selection.split_model_suffix(body["model"])
    model = settings.models.get(name)
    if model is None:
        raise ModelNotFound(
            f"the model '{name}' does not exist or you do not have access to it",
            param="model",
        )
    if not principal.may_use(name):
        raise PermissionDenied(f"this key may not use the model '{name}'", param="model")
    prefs = selection.NO_PREFS
    if "provider" in body and fmt is ApiFormat.OPENAI:
        prefs = selection.parse_provider_prefs(body["provider"])
    stream = body.get("stream") is True
    if fmt is ApiFormat.OPENAI:
        options = body.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    else:
        wants_usage = True  # Anthropic streams always carry usage
    return Call(
        request_id=request[REQUEST_ID],
        endpoint=endpoint,
        client_format=fmt,
        body=dict(body),
        model=model,
        strategy=forced or prefs.sort or model.strategy,
        prefs=prefs,
        stream=stream and endpoint is not Endpoint.EMBEDDINGS,
        principal=principal,
        meter=app[GATEWAY].new_meter(),
        client_ip=client_ip(
            peer_address(request, settings.server.trust_forwarded_for),
            settings.privacy.client_ip,
        ),
        user_agent=request.headers.get("User-Agent") if settings.privacy.store_user_agent else None,
        path=request.path,
        method=request.method,
        wants_usage=wants_usage,
        cache_header=request.headers.get(cache_policy.HEADER),
        end_user=end_users.from_body(body, fmt),
    )
