"""What tokens cost: integer nano-dollars from a ``Price`` and a ``Usage``, and the bundled
default price table.

Money is an integer count of nano-USD (1e-9 USD) so that sums over millions of records stay
exact. A ``Price`` is USD per million tokens, so one token at price ``p`` is ``p * 1000``
nano-USD. Arithmetic is decimal on the prices as written (``0.075`` is exactly 0.075), and
rounding happens once, at the end, to the nearest integer (ties to even).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal

from nitroproxy.core import models
from nitroproxy.core.types import Price, Usage

__all__ = [
    "ceiling_price",
    "cost_nanos",
    "estimate_cost_nanos",
    "parse_prices",
    "price_for",
]

# A price is USD per 1e6 tokens and a nano-USD is 1e-9 USD: one token costs price * 1000.
_NANOS_PER_PRICE_UNIT = Decimal(1000)


@functools.lru_cache(maxsize=1024)
def _nanos_per_token(price: float) -> int | Decimal:
    """A token's cost in nano-USD: an int when the price has at most three decimals (every
    published price has), so the sum is exact integer arithmetic, else the exact Decimal.
    Prices come from config, so there are few distinct ones: convert each once."""
    exact = Decimal(repr(price)) * _NANOS_PER_PRICE_UNIT
    return int(exact) if exact == exact.to_integral_value() else exact


def _nanos(pairs: list[tuple[int, float]]) -> int:
    total: int | Decimal = 0
    for tokens, price in pairs:
        if tokens > 0 and price:
            total += tokens * _nanos_per_token(price)
    if isinstance(total, int):
        return total
    return int(total.to_integral_value(ROUND_HALF_EVEN))


def cost_nanos(price: Price, usage: Usage) -> int:
    """The cost of ``usage`` at ``price``, in nano-USD.

    ``usage.prompt_tokens`` includes ``cached_tokens`` and ``cache_write_tokens`` (OpenAI
    reports it so; Anthropic usage is normalized to it), so the uncached remainder, never below
    zero, is billed at ``input``; cache reads at ``cached_input`` and cache writes at
    ``cache_write`` (``cache_write_1h`` for the 1-hour part), each ``input`` when unset.
    ``completion_tokens`` include reasoning tokens and are billed at ``output``. Negative
    counts are treated as zero.
    """
    cached = max(usage.cached_tokens, 0)
    written = max(usage.cache_write_tokens, 0)
    written_1h = min(max(usage.cache_write_1h_tokens, 0), written)
    uncached = usage.prompt_tokens - cached - written
    write_5m = price.input if price.cache_write is None else price.cache_write
    write_1h = write_5m if price.cache_write_1h is None else price.cache_write_1h
    return _nanos(
        [
            (uncached, price.input),
            (cached, price.input if price.cached_input is None else price.cached_input),
            (written - written_1h, write_5m),
            (written_1h, write_1h),
            (usage.completion_tokens, price.output),
        ]
    )


def prompt_ceiling(price: Price) -> float:
    """The dearest price a prompt token can be billed at (cache writes cost more than input),
    for reservations that must not be passed."""
    return max(p for p in (price.input, price.cache_write, price.cache_write_1h) if p is not None)


def estimate_cost_nanos(price: Price, prompt_tokens: int, completion_tokens: int) -> int:
    """The cost of a request before it runs (no cache assumed), for routing by price."""
    return _nanos([(prompt_tokens, price.input), (completion_tokens, price.output)])


def ceiling_price(prices: Iterable[Price]) -> Price:
    """A price no less than any of ``prices`` for any token: each prompt token at the
    dearest rate it can be billed at anywhere (cache writes included), each output token at
    the dearest output rate. Reservations use it, so a settled cost never exceeds what was
    reserved for the same counts."""
    listed = list(prices)
    return Price(
        input=max((prompt_ceiling(p) for p in listed), default=0.0),
        output=max((p.output for p in listed), default=0.0),
    )


# What may follow a table name for a model to share its price: dates and release tags only
# ("gpt-4o-2024-08-06", "claude-3-5-sonnet-latest", "claude-3-5-sonnet@20240620"), never a
# variant word ("-mini", "-audio-preview") nor a minor version ("claude-opus-4-5").
_VERSION_TAIL = re.compile(r"(?:[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest|preview))*")


def price_for(model: str, table: Mapping[str, Price]) -> Price | None:
    """The price of ``model`` in ``table``: its exact entry, else the longest table name that
    is a prefix of the bare model name followed only by a date or release tag."""
    if (price := table.get(model)) is not None:
        return price
    # Fine-tunes ("ft:...") keep their name: OpenAI bills them above their base model, so
    # only an exact table entry prices them.
    name = models.bare_name(model)
    best: str | None = None
    for key in table:
        if (
            name.startswith(key)
            and (best is None or len(key) > len(best))
            and _VERSION_TAIL.fullmatch(name, len(key))
        ):
            best = key
    return None if best is None else table[best]


# prices.yaml is a subset of YAML that the line pattern below reads exactly (tests check it
# against a real YAML parser): `name: {field: decimal, ...}` per line, plus comment lines.
_LINE = re.compile(r"(?P<name>[A-Za-z0-9][\w.\-/:@]*):\s+\{(?P<fields>[^{}#]*)\}(?:\s+#.*)?")
_FIELD = re.compile(r"\s*(?P<key>\w+):\s+(?P<value>\d+(?:\.\d+)?)\s*")
_FIELDS = frozenset({"input", "output", "cached_input", "cache_write", "cache_write_1h"})


def _parse_line(line: str) -> tuple[str, Price]:
    match = _LINE.fullmatch(line.rstrip())
    if match is None:
        raise ValueError("expected `model: {input: 1.0, output: 2.0}`")
    values: dict[str, float] = {}
    for field in match["fields"].split(","):
        item = _FIELD.fullmatch(field)
        if item is None or item["key"] not in _FIELDS or item["key"] in values:
            raise ValueError(f"bad or repeated field {field.strip()!r}")
        values[item["key"]] = float(item["value"])
    if "input" not in values or "output" not in values:
        raise ValueError("input and output are required")
    return match["name"], Price(**values)


def parse_prices(text: str, source: str = "prices.yaml") -> dict[str, Price]:
    """A price table in the ``prices.yaml`` format; errors name ``source`` and the line."""
    table: dict[str, Price] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            name, price = _parse_line(line)
        except ValueError as exc:
            raise ValueError(f"{source}:{number}: {exc}") from None
        if name in table:
            raise ValueError(f"{source}:{number}: {name!r} listed twice")
        table[name] = price
    return table
