"""The sliding-window log behind every requests/min and tokens/min limit of one process
(``core.limits.RateLimits``): sorted ``(timestamp, amount)`` entries with a running total.
An entry counts while ``now < stamp + WINDOW_S``."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

__all__ = ["WINDOW_S", "KeyState", "Window", "tick"]

WINDOW_S = 60.0


def tick(t: float) -> float:
    """Window entries are kept to the millisecond, rounded up: admissions in the same
    millisecond share one entry (memory stays below 60,000 entries a window at any rate),
    and an entry never leaves its window before its exact time would have."""
    return math.ceil(t * 1000.0) / 1000.0


class Window:
    """A sorted log of (timestamp, amount) with a running total. Pruning advances a head
    index and compacts the lists once half of them is dead, so it is amortized O(1)."""

    __slots__ = ("amounts", "head", "stamps", "total")

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.amounts: list[int] = []
        self.head = 0
        self.total = 0

    def __len__(self) -> int:
        return len(self.stamps) - self.head

    def prune(self, now: float) -> None:
        # An entry counts while now < stamp + WINDOW_S.
        end = bisect_right(self.stamps, now - WINDOW_S, self.head)
        self.total -= sum(self.amounts[self.head : end])
        self.head = end
        if self.head and self.head * 2 >= len(self.stamps):
            del self.stamps[: self.head], self.amounts[: self.head]
            self.head = 0

    def add(self, now: float, amount: int) -> None:
        self.total += amount
        now = tick(now)
        if self.stamps and self.stamps[-1] == now:
            self.amounts[-1] += amount  # coalesce admissions at the same instant
            return
        i = bisect_right(self.stamps, now, self.head)  # == len() unless the clock went back
        self.stamps.insert(i, now)
        self.amounts.insert(i, amount)

    def adjust(self, at: float, delta: int) -> None:
        """Change the amount recorded at ``at``; a pruned or unknown entry is left alone."""
        at = tick(at)
        i = bisect_left(self.stamps, at, self.head)
        if i < len(self.stamps) and self.stamps[i] == at:
            new = max(0, self.amounts[i] + delta)
            self.total += new - self.amounts[i]
            self.amounts[i] = new

    def wait_for(self, excess: int, now: float) -> float:
        """Seconds until at least ``excess`` has expired from the window."""
        freed = 0
        for i in range(self.head, len(self.stamps)):
            freed += self.amounts[i]
            if freed >= excess:
                return self.stamps[i] + WINDOW_S - now
        return WINDOW_S

    def reset_in(self, now: float) -> float:
        return self.stamps[-1] + WINDOW_S - now if len(self) else 0.0


class KeyState:
    __slots__ = ("active", "requests", "tokens")

    def __init__(self) -> None:
        self.requests = Window()
        self.tokens = Window()
        self.active = 0

    def prune(self, now: float) -> None:
        self.requests.prune(now)
        self.tokens.prune(now)

    def idle(self) -> bool:
        return not self.active and not len(self.requests) and not len(self.tokens)
