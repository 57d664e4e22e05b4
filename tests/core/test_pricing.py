from __future__ import annotations

from importlib.resources import files

import pytest
import yaml

from nitroproxy.core.pricing import (
    cost_nanos,
    estimate_cost_nanos,
    parse_prices,
    price_for,
)
from nitroproxy.core.types import Price, Usage
from nitroproxy.data import load_default_prices

GPT_4O = Price(input=2.50, output=10.00, cached_input=1.25)
# Anthropic's published Sonnet 4.5 / 3.5 prices: input $3, output $15, cache reads 0.1x input
# ($0.30), 5-minute cache writes 1.25x ($3.75), 1-hour cache writes 2x ($6.00) per MTok.
SONNET = Price(input=3.00, output=15.00, cached_input=0.30, cache_write=3.75, cache_write_1h=6.00)


@pytest.mark.parametrize(
    ("price", "usage", "nanos"),
    [
        (GPT_4O, Usage(), 0),
        (GPT_4O, Usage(prompt_tokens=1), 2_500),
        (GPT_4O, Usage(completion_tokens=1), 10_000),
        (GPT_4O, Usage(prompt_tokens=1_000_000), 2_500_000_000),
        # 800 uncached + 200 cached at the cached price + 500 output
        (
            GPT_4O,
            Usage(prompt_tokens=1000, cached_tokens=200, completion_tokens=500),
            7_250_000,
        ),
        # no cached price: cached tokens cost the input price
        (
            Price(input=2.0, output=8.0),
            Usage(prompt_tokens=1000, cached_tokens=200),
            2_000_000,
        ),
        # Anthropic, normalized: 2000 uncached + 6000 read + 2000 written + 100 output
        (
            SONNET,
            Usage(
                prompt_tokens=10_000,
                cached_tokens=6000,
                cache_write_tokens=2000,
                completion_tokens=100,
            ),
            6_000_000 + 1_800_000 + 7_500_000 + 1_500_000,
        ),
        # both write tiers, priced to the nano-dollar: 1000 uncached, 500 read, 1000 written
        # to the 5-minute cache, 2000 to the 1-hour cache, 300 output
        (
            SONNET,
            Usage(
                prompt_tokens=4500,
                cached_tokens=500,
                cache_write_tokens=3000,
                cache_write_1h_tokens=2000,
                completion_tokens=300,
            ),
            # 1000 x 3000 + 500 x 300 + 1000 x 3750 + 2000 x 6000 + 300 x 15000 nano-USD
            3_000_000 + 150_000 + 3_750_000 + 12_000_000 + 4_500_000,
        ),
        # no 1-hour price: 1-hour writes cost the 5-minute write price
        (
            Price(input=3.0, output=15.0, cache_write=3.75),
            Usage(prompt_tokens=100, cache_write_tokens=100, cache_write_1h_tokens=100),
            375_000,
        ),
        # no cache-write price: writes cost the input price
        (
            Price(input=1.0, output=0.0),
            Usage(prompt_tokens=10, cache_write_tokens=10),
            10_000,
        ),
        # reasoning tokens are part of completion_tokens, billed once
        (GPT_4O, Usage(completion_tokens=100, reasoning_tokens=80), 1_000_000),
        # inconsistent provider numbers: the uncached remainder never goes negative
        (GPT_4O, Usage(prompt_tokens=100, cached_tokens=300), 375_000),
        (GPT_4O, Usage(prompt_tokens=-5, completion_tokens=-5), 0),
        # decimal arithmetic: 0.1 + 0.2 is 0.3, and 0.075 per token is 75 nanos
        (
            Price(input=0.1, output=0.2),
            Usage(prompt_tokens=1, completion_tokens=1),
            300,
        ),
        (
            Price(input=0.15, output=0.6, cached_input=0.075),
            Usage(prompt_tokens=1, cached_tokens=1),
            75,
        ),
        # rounded once, at the end, to the nearest nano (ties to even)
        (
            Price(input=0.0004, output=0.0004),
            Usage(prompt_tokens=1, completion_tokens=1),
            1,
        ),
        (Price(input=0.0005, output=0.0), Usage(prompt_tokens=1), 0),
        (Price(input=0.0005, output=0.0), Usage(prompt_tokens=3), 2),
        (Price(input=0.0006, output=0.0), Usage(prompt_tokens=1), 1),
    ],
)
def test_cost_nanos(price, usage, nanos):
    assert cost_nanos(price, usage) == nanos


def test_cost_is_exact_for_large_totals():
    usage = Usage(prompt_tokens=123_456_789, cached_tokens=23_456_789, completion_tokens=9_876_543)
    nanos = 100_000_000 * 2500 + 23_456_789 * 1250 + 9_876_543 * 10_000
    assert cost_nanos(GPT_4O, usage) == nanos


@pytest.mark.parametrize(
    ("prompt", "completion", "nanos"),
    [(0, 0, 0), (1000, 500, 7_500_000), (1000, 0, 2_500_000), (-1, 10, 100_000)],
)
def test_estimate_cost_nanos_ignores_caching(prompt, completion, nanos):
    assert estimate_cost_nanos(GPT_4O, prompt, completion) == nanos


# -- lookup ------------------------------------------------------------------------------

TABLE = {
    "gpt-4o": Price(input=1.0),
    "gpt-4o-mini": Price(input=2.0),
    "gpt-4": Price(input=3.0),
    "claude-opus-4": Price(input=4.0),
    "o3": Price(input=5.0),
    "openai/custom": Price(input=6.0),
}


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4-1106-preview", "gpt-4"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4o:floor", "gpt-4o"),
        ("openai/gpt-4o-mini:nitro", "gpt-4o-mini"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-opus-4@20250514", "claude-opus-4"),
        ("claude-opus-4-latest", "claude-opus-4"),
        ("openai/custom", "openai/custom"),
        # a name that is a prefix but not a version of the model
        ("gpt-4o-audio-preview", None),
        ("gpt-4.1", None),
        ("gpt-4-32k", None),
        ("o3-mini", None),
        ("o3x", None),
        ("claude-opus-4-5", None),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc", None),
        ("llama-3", None),
        ("", None),
    ],
)
def test_price_for_matches_the_longest_versioned_prefix(model, key):
    assert price_for(model, TABLE) == (None if key is None else TABLE[key])


def test_a_variant_missing_from_the_table_gets_no_price():
    assert price_for("gpt-4o-mini", {"gpt-4o": GPT_4O}) is None


# -- the bundled table -------------------------------------------------------------------

REQUIRED = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o3",
    "o4-mini",
    "gpt-3.5-turbo",
    "gpt-4-turbo",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "claude-3-5-haiku",
    "claude-3-5-sonnet",
    "claude-sonnet-4",
    "claude-opus-4",
    "claude-3-haiku",
]


def test_default_prices_cover_the_well_known_models():
    table = load_default_prices()
    assert set(REQUIRED) <= set(table)
    assert table["gpt-4o"] == Price(input=2.50, output=10.00, cached_input=1.25)
    assert table["claude-3-5-sonnet"] == SONNET
    assert price_for("gpt-4o-mini-2024-07-18", table) == table["gpt-4o-mini"]
    assert price_for("claude-3-5-haiku-20241022", table) == table["claude-3-5-haiku"]


def test_default_prices_are_consistent():
    for name, price in load_default_prices().items():
        assert price.output >= 0 and price.input > 0, name
        if price.cached_input is not None:
            assert price.cached_input < price.input, name
        if name.startswith("claude-"):
            # 1.25x input, as listed (Claude 3 Haiku's listed $0.30 is 1.2x of $0.25)
            assert price.cache_write == pytest.approx(1.25 * price.input, rel=0.05), name
        else:
            assert price.cache_write is None, name
        if name.startswith("text-embedding-"):
            assert price.output == 0, name


def test_default_prices_read_the_same_as_with_a_yaml_parser():
    text = (files("nitroproxy") / "data" / "prices.yaml").read_text(encoding="utf-8")
    parsed = {name: Price(**fields) for name, fields in yaml.safe_load(text).items()}
    assert load_default_prices() == parsed


def test_parse_prices_reads_comments_and_optional_fields():
    text = (
        "# header\n\nm-1: {input: 1.5, output: 2}  # note\n"
        "  # indented comment\nm-2: {output: 0.0, input: 0}\n"
    )
    assert parse_prices(text) == {"m-1": Price(input=1.5, output=2.0), "m-2": Price()}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("m: {input: 1.0}", "prices.yaml:1: input and output are required"),
        (
            "m: {input: 1.0, output: 2.0, color: 3.0}",
            "prices.yaml:1: bad or repeated field 'color: 3.0'",
        ),
        (
            "m: {input: 1.0, input: 2.0, output: 1.0}",
            "prices.yaml:1: bad or repeated field 'input: 2.0'",
        ),
        (
            "m: {input: -1.0, output: 2.0}",
            "prices.yaml:1: bad or repeated field 'input: -1.0'",
        ),
        (
            "m: {input: 1e3, output: 2.0}",
            "prices.yaml:1: bad or repeated field 'input: 1e3'",
        ),
        (
            "\nm:\n  input: 1.0\n",
            "prices.yaml:2: expected `model: {input: 1.0, output: 2.0}`",
        ),
        (
            "m: {input: 1.0, output: 2.0}\nm: {input: 1.0, output: 2.0}",
            "prices.yaml:2: 'm' listed twice",
        ),
    ],
)
def test_parse_prices_rejects_what_it_cannot_read_exactly(text, message):
    with pytest.raises(ValueError) as info:
        parse_prices(text)
    assert str(info.value) == message
