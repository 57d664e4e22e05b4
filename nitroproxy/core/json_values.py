"""Reading JSON values that came from a client or an upstream: counts, numbers, compact text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeGuard


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def count(value: Any) -> int:
    """A token count; null, missing or junk counts as 0."""
    return value if is_int(value) else 0


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def is_text_block(block: Any) -> bool:
    return (
        isinstance(block, Mapping)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )
