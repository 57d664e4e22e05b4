"""Retention windows turned into "delete before" cutoffs. Pure: callers pass ``now``.

What is kept, and for how long (each window enforced by the retention sweeper):

- raw request records (``usage``): ``requests_s`` (90 days), then rolled up;
- per-user usage analytics (``usage_daily``): ``analytics_s`` (at most two years; users who
  object to analytics get no rows there at all);
- billing lines (``billing_lines``), what each user owes per day and model, kept for tax:
  ``billing_s`` (7 years), under a pseudonym once the user is erased;
- accounts: while active; a closed account is erased ``closed_accounts_s`` after closure,
  and a revoked or expired key is deleted that long after it stopped working;
- the admin audit log: ``audit_s``.

Raw records are analytics data too, so ``requests_s`` may not exceed ``analytics_s`` (nor
``billing_s``: they carry what is owed).

Design: raw records are rolled up only for whole UTC days. ``raw_before`` is aligned down to
the start of a UTC day, so every raw row older than it belongs to a day that ended before the
raw window began, and the day boundaries used here (``day_of``) are the ones the store uses
to label aggregates. A day is therefore never split between raw and aggregate form by the
sweeper, and queries over whole UTC days give the same totals before and after a sweep. A
late row (a record written after its day was rolled up, e.g. by a lagging writer) is still
counted correctly: the store merges roll-ups into an existing aggregate with
``ON CONFLICT DO UPDATE`` adding the counts, so aggregation is additive, never a replace.
Aggregates and billing lines go only once their whole day is older than their window.

Days are UTC days of exactly 86,400 s (Unix time has no leap seconds). Timestamps are
expected to be non-negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nitroproxy.core.days import DAY_S, day_of, day_start

__all__ = ["ANALYTICS_MAX_S", "Cutoffs", "RetentionPolicy", "cutoffs"]

ANALYTICS_MAX_S = 730 * DAY_S
"""The privacy promise: usage analytics are kept at most two years."""

_WINDOWS = ("requests_s", "analytics_s", "billing_s", "audit_s", "closed_accounts_s")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Every retention window, in seconds."""

    requests_s: float = 90 * DAY_S
    billing_s: float = 7 * 365 * DAY_S
    analytics_s: float = ANALYTICS_MAX_S
    audit_s: float = 730 * DAY_S
    closed_accounts_s: float = 30 * DAY_S

    def __post_init__(self) -> None:
        for name in _WINDOWS:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.analytics_s > ANALYTICS_MAX_S:
            raise ValueError("analytics_s may not exceed two years (730 days)")
        for longer in ("analytics_s", "billing_s"):
            if self.requests_s > getattr(self, longer):
                raise ValueError(f"requests_s may not exceed {longer}")


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """``raw_before``: raw rows with ``ts`` before this (a UTC day start) are rolled up.
    ``aggregates_before_day`` / ``billing_before_day``: analytics aggregates / billing lines
    of days before this date are deleted. ``audit_before``: audit entries with ``ts`` before
    it are deleted. ``closed_before``: accounts closed, and keys revoked or expired, before
    it are erased / deleted."""

    raw_before: float
    aggregates_before_day: str
    billing_before_day: str = "0000-00-00"
    audit_before: float = 0.0
    closed_before: float = 0.0


def cutoffs(policy: RetentionPolicy, now: float) -> Cutoffs:
    # Aligned down: a day is rolled up only once all of it is older than the raw window.
    # Aggregates go only once the whole day is older than their window.
    return Cutoffs(
        raw_before=day_start(now - policy.requests_s),
        aggregates_before_day=day_of(now - policy.analytics_s),
        billing_before_day=day_of(now - policy.billing_s),
        audit_before=now - policy.audit_s,
        closed_before=now - policy.closed_accounts_s,
    )
