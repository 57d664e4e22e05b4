"""Reading admin request bodies and query strings: typed values or ``InvalidRequest`` naming
the offending parameter. The rules match ``nitroproxy/reports/openapi.py`` (a test fuzzes the two
against each other)."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from aiohttp import web

from nitroproxy.core.errors import InvalidRequest
from nitroproxy.reports.usage import parse_time
from nitroproxy.web.calls import read_json

MAX_LIMIT = 1000
_MISSING: Any = object()


async def body_object(request: web.Request, allowed: Collection[str]) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    for name in body:
        if name not in allowed:
            raise InvalidRequest(f"unknown field {name!r}", param=name)
    return body


def text(
    body: Mapping[str, Any], name: str, *, max_length: int, required: bool = False
) -> str | None:
    """A non-blank string; ``None`` when absent or null (unless ``required``)."""
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"{name!r} is required", param=name)
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{name!r} must be a non-empty string", param=name)
    if len(value) > max_length:
        raise InvalidRequest(f"{name!r} must be at most {max_length} characters", param=name)
    return value.strip()


def integer(body: Mapping[str, Any], name: str, *, minimum: int = 0) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidRequest(f"{name!r} must be an integer >= {minimum}", param=name)
    if value > 2**53:
        raise InvalidRequest(f"{name!r} is too large", param=name)
    return value


def flag(body: Mapping[str, Any], name: str) -> bool:
    """An optional boolean; absent or null is false."""
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name!r} must be true or false", param=name)
    return value


def optional_flag(body: Mapping[str, Any], name: str) -> bool | None:
    """A boolean, or None when absent or null (an update that leaves it as it is)."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name!r} must be true or false", param=name)
    return value


def flags(body: Mapping[str, Any], names: Collection[str]) -> dict[str, bool]:
    """The booleans among ``names`` that the body sets (absent or null: left out)."""
    found = {name: optional_flag(body, name) for name in names}
    return {name: value for name, value in found.items() if value is not None}


def number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or value > 1e12
    ):
        raise InvalidRequest(f"{name!r} must be a number >= 0", param=name)
    return float(value)


def choice(
    body: Mapping[str, Any], name: str, options: Collection[str], *, required: bool = False
) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if value not in options:
        raise InvalidRequest(f"{name!r} must be one of {', '.join(options)}", param=name)
    return str(value)


def names(body: Mapping[str, Any], name: str, *, max_items: int = 100) -> tuple[str, ...] | None:
    value = body.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= max_items
        or not all(isinstance(v, str) and 0 < len(v) <= 200 for v in value)
    ):
        raise InvalidRequest(
            f"{name!r} must be a list of 1 to {max_items} non-empty strings", param=name
        )
    return tuple(dict.fromkeys(value))


def query_text(request: web.Request, name: str, *, max_length: int = 200) -> str | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not value or len(value) > max_length:
        raise InvalidRequest(f"{name!r} must be 1 to {max_length} characters", param=name)
    return value


def query_choice(
    request: web.Request, name: str, options: Collection[str], default: str | None = None
) -> str | None:
    value = request.query.get(name)
    if value is None:
        return default
    if value not in options:
        raise InvalidRequest(f"{name!r} must be one of {', '.join(options)}", param=name)
    return value


def query_flag(request: web.Request, name: str, default: bool) -> bool:
    value = query_choice(request, name, ("true", "false"))
    return default if value is None else value == "true"


def query_limit(request: web.Request, default: int = 100) -> int:
    value = request.query.get("limit")
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_LIMIT}", param="limit")
    return int(value)


def query_time(request: web.Request, name: str) -> float | None:
    """An ISO date or datetime (naive means UTC)."""
    value = request.query.get(name)
    if value is None:
        return None
    try:
        parsed = parse_time(value)
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None:
        raise InvalidRequest(f"{name!r} must be an ISO date or datetime", param=name)
    return parsed
