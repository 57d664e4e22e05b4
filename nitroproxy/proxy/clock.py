"""The proxy's one clock: records, budgets, limits and health all read it.

``now()`` is monotonic seconds (windows, cool-downs, latencies); ``wall()`` is epoch seconds
(record timestamps, the UTC day a budget counts against), derived from the same source at a
fixed offset taken at start, so a test that moves the monotonic clock moves both together and
the two can never disagree about how much time has passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Clock:
    __slots__ = ("_offset", "now")

    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        wall_at_start: float | None = None,
    ) -> None:
        self.now = monotonic
        start = time.time() if wall_at_start is None else wall_at_start
        self._offset = start - monotonic()

    def wall(self) -> float:
        return self._offset + self.now()

    def __call__(self) -> float:
        """The monotonic time: a ``Clock`` can stand wherever a ``() -> float`` is expected."""
        return self.now()
