"""`core.money.usd`: two decimals, more until two significant digits show."""

from __future__ import annotations

import pytest

from nitroproxy.core.money import usd


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0.00"),
        (5, "5.00"),
        (1.5, "1.50"),
        (12.3456, "12.35"),
        (0.1, "0.10"),
        (0.01, "0.01"),
        (0.0003, "0.0003"),
        (0.00031, "0.00031"),
        (0.000123456, "0.00012"),
        (0.0000001375, "0.00000014"),
        (1e-9, "0.000000001"),
        (-0.0003, "-0.0003"),
    ],
)
def test_usd(value: float, text: str) -> None:
    assert usd(value) == text


def test_a_non_zero_amount_down_to_a_nanodollar_never_reads_as_zero() -> None:
    for exponent in range(-9, 3):
        for mantissa in (1, 2.5, 9.99):
            assert float(usd(mantissa * 10.0**exponent)) != 0
