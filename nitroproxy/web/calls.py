"""From an HTTP request to a ``Call``: authenticate, read the body under its cap, decode,
resolve the model. Everything that can be refused is refused here, before routing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from nitroproxy.core import (
    anthropic_request,
    cache_policy,
    end_users,
    openai_wire,
    responses_wire,
    selection,
    tokens,
)
from nitroproxy.core.accounting import client_ip
from nitroproxy.core.errors import InvalidRequest, ModelNotFound, PermissionDenied
from nitroproxy.core.types import ApiFormat, Endpoint
from nitroproxy.proxy.call import Call
from nitroproxy.web.appkeys import AUTH, BODIES, GATEWAY, SETTINGS
from nitroproxy.web.bodies import read_body
from nitroproxy.web.middleware import REQUEST_ID


async def read_json(request: web.Request) -> Any:
    """The parsed body. The raw bytes are dropped once parsed (``web.bodies``)."""
    return (await _read_json(request))[0]


async def _read_json(request: web.Request) -> tuple[Any, tokens.PromptSize]:
    """The parsed body and the prompt's size measured on its bytes."""
    server = request.app[SETTINGS].server
    raw = await read_body(
        request,
        request.app[BODIES],
        max_bytes=server.max_body_bytes,
        timeout=server.timeouts.body,
    )
    if not raw:
        raise InvalidRequest("the request body is empty; expected a JSON object")
    try:
        return orjson.loads(raw), tokens.prompt_size(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc.msg}") from None


def _validator(endpoint: Endpoint) -> Callable[[Any], Mapping[str, Any]]:
    if endpoint in (Endpoint.MESSAGES, Endpoint.COUNT_TOKENS):
        counting = endpoint is Endpoint.COUNT_TOKENS

        def validate(body: Any) -> Mapping[str, Any]:
            anthropic_request.validate_messages_request(body, counting=counting)
            return body  # type: ignore[no-any-return]

        return validate
    if endpoint is Endpoint.RESPONSES:
        return responses_wire.validate_responses_request
    if endpoint is Endpoint.INPUT_TOKENS:
        return lambda body: responses_wire.validate_responses_request(body, counting=True)
    return openai_wire.VALIDATORS[endpoint]


def _forwardable(request: web.Request) -> dict[str, str]:
    """The client headers some provider's ``forward_headers`` allow (lower-case names)."""
    names = request.app[GATEWAY].forward_names  # SIGHUP reloads them
    if not names:
        return {}
    headers = request.headers
    return {name: headers[name] for name in names if name in headers}


# Answered whole whatever ``stream`` says: embeddings, and token counting.
_NEVER_STREAM = (Endpoint.EMBEDDINGS, Endpoint.COUNT_TOKENS, Endpoint.INPUT_TOKENS)


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
    raw, prompt = await _read_json(request)
    body = _validator(endpoint)(raw)
    name, forced = selection.split_model_suffix(body["model"])
    model = app[GATEWAY].settings.models.get(name)  # the gateway's: SIGHUP reloads them
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
    stream = body.get("stream") is True and endpoint not in _NEVER_STREAM
    if endpoint is Endpoint.RESPONSES or fmt is ApiFormat.ANTHROPIC:
        wants_usage = True  # Anthropic and Responses streams always carry usage
    else:
        options = body.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    return Call(
        request_id=request[REQUEST_ID],
        endpoint=endpoint,
        client_format=fmt,
        body=dict(body),
        model=model,
        strategy=forced or prefs.sort or model.strategy,
        prefs=prefs,
        stream=stream,
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
        prompt=prompt,
        client_headers=_forwardable(request),
    )
