"""Which unset environment variables only a provider call would read.

``keys create``, ``usage`` and the other database commands never call a provider, so an
``${OPENAI_API_KEY}`` they cannot expand must not stop them. A variable counts as a provider
secret when every place it is used is a provider's ``api_key`` or one of its ``headers``;
anywhere else (a storage path, a port, the admin key) it stays required, because guessing
those would be worse than refusing.

The places are found by expanding each unset variable to a marker, parsing the YAML and
walking it: that is exact for block and flow style alike, and costs one more parse of a
small file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from nitroproxy.config.loader import interpolate

_MARK = "NITROPROXYUNSETVARIABLE"


class _Marking(Mapping[str, str]):
    """The environment, with every unset name read as a marker naming it."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __getitem__(self, key: str) -> str:
        value = self._env.get(key)
        return f"{_MARK}{key}{_MARK}" if value is None else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def _strings(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, str(index)))
    elif isinstance(value, str):
        yield path, value


def _is_secret_place(path: tuple[str, ...]) -> bool:
    if len(path) < 3 or path[0] != "providers":
        return False
    return (path[2], len(path)) in {("api_key", 3), ("headers", 4)}


def unset_provider_secrets(text: str, env: Mapping[str, str]) -> list[str]:
    """Names unset in ``env`` that ``text`` uses only as provider secrets, sorted."""
    marking = _Marking(env)
    lines = [
        line if line.lstrip().startswith("#") else interpolate(line, marking)
        for line in text.splitlines()
    ]
    try:
        tree = yaml.safe_load("\n".join(lines))
    except yaml.YAMLError:
        return []  # the real load reports the file's error
    secret: set[str] = set()
    elsewhere: set[str] = set()
    for path, value in _strings(tree, ()):
        for name in value.split(_MARK)[1::2]:
            (secret if _is_secret_place(path) else elsewhere).add(name)
    return sorted(secret - elsewhere)
