"""The bundled data files (tokenizer rank files, the default price table) and the only code
that reads them. ``core`` stays free of file I/O: it builds encodings and parses prices from
the bytes read here."""

from __future__ import annotations

import functools
from importlib.resources import files

import tiktoken

from nitroproxy.core import pricing, tokens
from nitroproxy.core.types import Price

__all__ = ["encoding_for_model", "encoding_ready", "get_encoding", "load_default_prices"]


@functools.cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """The bundled encoding ``name`` (``cl100k_base`` or ``o200k_base``), loaded once.

    The first call reads and verifies a 2-4 MB rank file (~0.3 s); warm it up at startup.
    Raises ``ValueError`` for another name or a rank file that fails its SHA-256 check.
    """
    tokens.check_encoding_name(name)
    # Not tiktoken.load.load_tiktoken_bpe: given a path, it still copies the file into
    # TIKTOKEN_CACHE_DIR (default: the temp dir) and fails if that dir is read-only.
    data = (files("nitroproxy.data") / f"{name}.tiktoken").read_bytes()
    encoding = tokens.build_encoding(name, data)
    _LOADED.add(name)
    return encoding


def encoding_for_model(model: str) -> tiktoken.Encoding:
    return get_encoding(tokens.encoding_name_for_model(model)[0])


def encoding_ready(model: str) -> bool:
    """True when ``encoding_for_model(model)`` returns at once; the first load reads a 2-4 MB
    rank file (~0.3 s), which belongs in a thread, never on the event loop."""
    name = tokens.encoding_name_for_model(model)[0]
    return name in _LOADED


_LOADED: set[str] = set()


def load_default_prices() -> dict[str, Price]:
    """The bundled table, ``nitroproxy/data/prices.yaml``; it reads the file on each call."""
    text = (files("nitroproxy.data") / "prices.yaml").read_text(encoding="utf-8")
    return pricing.parse_prices(text)
