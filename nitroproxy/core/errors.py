"""The one error tree. Each kind knows its HTTP status and its name in both APIs' shapes.

JSON is rendered elsewhere (``web/middleware.py`` and the stream relay); this module only
describes failures, so pure code can raise them without knowing about HTTP.
"""

from __future__ import annotations

from typing import ClassVar


class ProxyError(Exception):
    """Base of every failure a client may be told about."""

    status: ClassVar[int] = 500
    openai_type: ClassVar[str] = "server_error"
    anthropic_type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.retry_after = retry_after
        self.headers = headers or {}

    @property
    def error_class(self) -> str:
        """A stable, low-cardinality name for records and metrics."""
        return type(self).__name__


class InvalidRequest(ProxyError):
    status = 400
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class Unauthenticated(ProxyError):
    status = 401
    openai_type = "invalid_request_error"
    anthropic_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(ProxyError):
    status = 403
    openai_type = "invalid_request_error"
    anthropic_type = "permission_error"
    default_code = "permission_denied"


class NotFound(ProxyError):
    status = 404
    openai_type = "invalid_request_error"
    anthropic_type = "not_found_error"
    default_code = "not_found"


class ModelNotFound(NotFound):
    default_code = "model_not_found"


class MethodNotAllowed(ProxyError):
    status = 405
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    default_code = "method_not_allowed"


class PayloadTooLarge(ProxyError):
    status = 413
    openai_type = "invalid_request_error"
    anthropic_type = "request_too_large"
    default_code = "request_too_large"


class RequestTimeout(ProxyError):
    """The client took longer than allowed to send its request (``server.timeouts``)."""

    status = 408
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    default_code = "request_timeout"


class HeadersTooLarge(ProxyError):
    status = 431
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    default_code = "request_header_fields_too_large"


class RateLimited(ProxyError):
    status = 429
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class QuotaExceeded(RateLimited):
    openai_type = "insufficient_quota"
    default_code = "insufficient_quota"


class UpstreamError(ProxyError):
    """The upstream could not be reached or answered with something unusable."""

    status = 502
    openai_type = "api_error"
    anthropic_type = "api_error"
    default_code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    openai_type = "timeout"
    anthropic_type = "timeout_error"
    default_code = "upstream_timeout"


class NoDeploymentAvailable(ProxyError):
    """Every candidate is cooling down, excluded, or failed."""

    status = 503
    openai_type = "server_error"
    anthropic_type = "overloaded_error"
    default_code = "no_deployment_available"


class Overloaded(ProxyError):
    status = 503
    openai_type = "server_error"
    anthropic_type = "overloaded_error"
    default_code = "overloaded"


class StorageUnavailable(Overloaded):
    """Usage records can be neither written nor journalled (``storage.on_failure: refuse``):
    an answer now could not be billed, so none is given."""

    default_code = "storage_unavailable"


class ServerShuttingDown(ProxyError):
    """The server stopped while the call was still running (its shutdown grace ended)."""

    status = 503
    openai_type = "server_error"
    anthropic_type = "overloaded_error"
    default_code = "server_shutting_down"


class UpstreamStatusError(ProxyError):
    """An upstream 4xx/5xx, carried through to the client with its own status and body.

    ``body`` is the upstream's raw JSON body when it is in the client's API shape, so the
    client sees exactly what the provider said.
    """

    openai_type = "api_error"
    anthropic_type = "api_error"

    def __init__(
        self,
        upstream_status: int,
        message: str,
        *,
        body: bytes | None = None,
        body_format: str | None = None,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, param=param, retry_after=retry_after)
        self.upstream_status = upstream_status
        self.body = body
        self.body_format = body_format
        self.error_type = error_type

    @property
    def error_class(self) -> str:
        return f"upstream_{self.upstream_status}"


def status_of(error: ProxyError) -> int:
    if isinstance(error, UpstreamStatusError):
        return error.upstream_status
    return error.status


_ANTHROPIC_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

_OPENAI_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_type_of(error: ProxyError) -> str:
    if isinstance(error, UpstreamStatusError):
        if error.error_type and error.body_format == "openai":
            return error.error_type
        return _OPENAI_TYPE_BY_STATUS.get(error.upstream_status, "api_error")
    return error.openai_type


def anthropic_type_of(error: ProxyError) -> str:
    if isinstance(error, UpstreamStatusError):
        if error.error_type and error.body_format == "anthropic":
            return error.error_type
        return _ANTHROPIC_TYPE_BY_STATUS.get(error.upstream_status, "api_error")
    return error.anthropic_type
