"""Error responses of the mock, in the shape of the API family of the route."""

from typing import Literal

import orjson
from aiohttp import web

Family = Literal["openai", "anthropic"]

# status -> (OpenAI error type, OpenAI code, Anthropic error type), as each provider sends them.
_KINDS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "invalid_request_error"),
    401: ("invalid_request_error", "invalid_api_key", "authentication_error"),
    403: ("invalid_request_error", None, "permission_error"),
    404: ("invalid_request_error", "model_not_found", "not_found_error"),
    413: ("invalid_request_error", None, "request_too_large"),
    429: ("requests", "rate_limit_exceeded", "rate_limit_error"),
    500: ("server_error", None, "api_error"),
    529: ("server_error", None, "overloaded_error"),
}


class InvalidRequest(Exception):
    """A request the mock rejects with a 400 (it has not written anything yet)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def error_response(
    family: Family,
    status: int,
    message: str,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    default = _KINDS[400] if status < 500 else _KINDS[500]
    openai_type, code, anthropic_type = _KINDS.get(status, default)
    if family == "openai":
        error = {"message": message, "type": openai_type, "param": param, "code": code}
        body = orjson.dumps({"error": error})
    else:
        body = orjson.dumps(
            {"type": "error", "error": {"type": anthropic_type, "message": message}}
        )
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def fault_response(family: Family, status: int, retry_after: str | None) -> web.Response:
    """The answer of a ``failNNN`` directive; 429s always carry ``retry-after`` (default 1)."""
    if retry_after is None and status == 429:
        retry_after = "1"
    headers = {"retry-after": retry_after} if retry_after is not None else None
    return error_response(family, status, f"mock provider: injected fail{status}", headers=headers)
