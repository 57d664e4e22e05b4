"""Dollar amounts for people: never a non-zero amount shown as ``$0.00``.

A budget of $0.0003 printed with two decimals reads "budget of $0.00 (spent $0.00)", which
says the opposite of the truth. Amounts here keep two decimals and gain more until two
significant digits show, up to nanodollars (the unit spend is counted in).
"""

from __future__ import annotations

import math

_MAX_DECIMALS = 9


def usd(value: float) -> str:
    """``1.5`` → ``1.50``, ``0.0003`` → ``0.0003``, ``0.000123456`` → ``0.00012``."""
    if value == 0 or not math.isfinite(value):
        return f"{value:.2f}"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = min(_MAX_DECIMALS, max(2, 1 - magnitude))
    text = f"{value:.{decimals}f}"
    if decimals > 2:
        whole, _, fraction = text.partition(".")
        text = f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
    return text
