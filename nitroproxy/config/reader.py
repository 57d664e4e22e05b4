"""A typed cursor over parsed YAML that knows its own path, for one-line config errors."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from nitroproxy.config.errors import ConfigError

_MISSING: Any = object()
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*$")
_UNIT_SECONDS = {
    None: 1.0,
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "y": 365 * 86400.0,
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


class Reader:
    def __init__(self, value: Any, path: str, *, present: bool = True) -> None:
        self.value = value
        self.path = path
        self.present = present

    def _at(self, key: str | None) -> str:
        if key is None:
            return self.path or "(top level)"
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str | None, message: str) -> NoReturn:
        raise ConfigError(f"{self._at(key)}: {message}")

    def require_mapping(self) -> None:
        if not isinstance(self.value, dict):
            self.fail(None, f"expected a mapping, got {_type_name(self.value)}")

    def only(self, allowed: str | Sequence[str]) -> None:
        """Unknown keys are errors: a typo such as ``max_atempts`` must not be ignored.
        ``allowed`` is a sequence of names or one space-separated string of them."""
        if isinstance(allowed, str):
            allowed = allowed.split()
        if not self.present:
            return
        self.require_mapping()
        for key in self.value:
            if key not in allowed:
                self.fail(str(key), f"unknown setting (allowed: {', '.join(sorted(allowed))})")

    def child(self, key: str) -> Reader:
        if not self.present or key not in self.value or self.value[key] is None:
            return Reader({}, self._at(key), present=False)
        return Reader(self.value[key], self._at(key))

    def subset(self, keys: Sequence[str]) -> Reader:
        return Reader({k: v for k, v in self.value.items() if k in keys}, self.path)

    def items(self) -> Iterator[tuple[str, Reader]]:
        if not self.present:
            return
        self.require_mapping()
        for key, value in self.value.items():
            yield str(key), Reader(value, self._at(str(key)))

    def seq(self, *, required: bool = False) -> list[Reader]:
        if not self.present:
            if required:
                self.fail(None, "is required")
            return []
        if not isinstance(self.value, list):
            self.fail(None, f"expected a list, got {_type_name(self.value)}")
        return [Reader(v, f"{self.path}[{i}]") for i, v in enumerate(self.value)]

    def _get(self, key: str, default: Any, required: bool) -> Any:
        if self.present and isinstance(self.value, dict) and self.value.get(key) is not None:
            return self.value[key]
        if required:
            self.fail(key, "is required")
        return default

    def text(self, key: str, default: Any, *, required: bool = False) -> Any:
        value = self._get(key, default, required)
        if value is not default and not isinstance(value, str):
            if isinstance(value, int | float) and not isinstance(value, bool):
                return str(value)
            self.fail(key, f"expected a string, got {_type_name(value)}")
        return value

    def texts(self, key: str) -> list[str]:
        value = self._get(key, [], False)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, "expected a list of strings")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, default, False)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {value!r}")
        return value

    def integer(
        self,
        key: str,
        default: int,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = self._get(key, default, False)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {_type_name(value)}")
        self._range(key, value, minimum, maximum)
        return value

    def number(
        self,
        key: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        value = self._get(key, default, False)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"expected a number, got {_type_name(value)}")
        self._range(key, value, minimum, maximum)
        return float(value)

    def optional_int(self, key: str) -> int | None:
        if self._get(key, None, False) is None:
            return None
        return self.integer(key, 0, minimum=0)

    def optional_float(self, key: str) -> float | None:
        if self._get(key, None, False) is None:
            return None
        return self.number(key, 0.0, minimum=0.0)

    def port(self, key: str, default: int) -> int:
        return self.integer(key, default, minimum=0, maximum=65535)

    def choice(
        self,
        key: str,
        options: Sequence[str],
        default: Any = None,
        *,
        required: bool = False,
    ) -> Any:
        value = self._get(key, default, required)
        if value not in options:
            self.fail(key, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    def duration(self, key: str, default: float) -> float:
        """Seconds as a number, or a string such as ``500ms``, ``30s``, ``1h``, ``90d``."""
        value = self._get(key, default, False)
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
            seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        else:
            self.fail(
                key,
                f"expected a duration such as 30, '500ms', '1h' or '90d', got {value!r}",
            )
        self._range(key, seconds, 0.0, None)
        return seconds

    def _range(self, key: str, value: float, lo: float | None, hi: float | None) -> None:
        if lo is not None and value < lo:
            self.fail(key, f"must be at least {lo}, got {value}")
        if hi is not None and value > hi:
            self.fail(key, f"must be at most {hi}, got {value}")
