"""Retention windows turned into "delete before" cutoffs. Pure: callers pass ``now``.

Usage is kept in two forms: raw records (one row per request) for ``requests_s`` seconds,
then per-day aggregates for ``billing_s`` seconds.

Design: raw records are rolled up only for whole UTC days. ``raw_before`` is aligned down to
the start of a UTC day, so every raw row older than it belongs to a day that ended before the
raw window began, and the day boundaries used here (``day_of``) are the ones the store uses
to label aggregates. A day is therefore never split between raw and aggregate form by the
sweeper, and queries over whole UTC days give the same totals before and after a sweep. A
late row (a record written after its day was rolled up, e.g. by a lagging writer) is still
counted correctly: the store merges roll-ups into an existing aggregate with
``ON CONFLICT DO UPDATE`` adding the counts, so aggregation is additive, never a replace.

Days are UTC days of exactly 86,400 s (Unix time has no leap seconds). Timestamps are
expected to be non-negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nitroproxy.core.days import DAY_S, day_of, day_start

__all__ = ["RetentionPolicy"]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long raw request records and daily billing aggregates are kept, in seconds."""

    requests_s: float = 90 * DAY_S
    billing_s: float = 7 * 365 * DAY_S

    def __post_init__(self) -> None:
        for name in ("requests_s", "billing_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """``raw_before``: raw rows with ``ts`` before this (a UTC day start) are rolled up.
    ``aggregates_before_day``: aggregates for days before this date are deleted."""

    raw_before: float
    aggregates_before_day: str


def cutoffs(policy: RetentionPolicy, now: float) -> Cutoffs:
    # Aligned down: a day is rolled up only once all of it is older than the raw window.
    # Aggregates go only once the whole day is older than the billing window.
    return Cutoffs(
        raw_before=day_start(now - policy.requests_s),
        aggregates_before_day=day_of(now - policy.billing_s),
    )
