"""Pure helpers of ``state.limiter``: a scope as script arguments, the script's figures as
``core.limits.WindowFigures``, and which limit kinds a call is subject to (for the failure
policy)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from nitroproxy.core.limits import KeyLimits, WindowFigures
from nitroproxy.proxy.limiter import Scope

__all__ = ["FIGURES", "budgeted", "figures", "kinds", "scope_args"]

FIGURES = 9
"""Numbers the reserve script returns per scope."""


def figures(v: Sequence[int]) -> WindowFigures:
    return WindowFigures(
        active=int(v[0]),
        requests=int(v[1]),
        tokens=int(v[2]),
        request_wait=int(v[3]) / 1000,
        token_wait=int(v[4]) / 1000,
        request_reset=max(0, int(v[5])) / 1000,
        token_reset=max(0, int(v[6])) / 1000,
        spent_day_usd=int(v[7]) / 1e9,
        spent_month_usd=int(v[8]) / 1e9,
    )


def scope_args(scope: Scope) -> tuple[str | int, ...]:
    lim = scope.limits
    return (
        scope.id,
        -1 if lim.rpm is None else lim.rpm,
        -1 if lim.tpm is None else lim.tpm,
        -1 if lim.max_concurrent is None else lim.max_concurrent,
        _nanos(lim.budget_day_usd),
        _nanos(lim.budget_month_usd),
        1 if budgeted(lim) else 0,
    )


def _nanos(usd: float | None) -> int:
    # The same rounding as core.limits.check_budget, so both backends draw the line alike.
    return -1 if usd is None else round(usd * 1e9)


def budgeted(limits: KeyLimits) -> bool:
    return limits.budget_day_usd is not None or limits.budget_month_usd is not None


def kinds(scopes: Iterable[Scope]) -> list[str]:
    kinds: list[str] = []
    for scope in scopes:
        lim = scope.limits
        for kind, on in (
            ("budget", budgeted(lim)),
            ("concurrency", lim.max_concurrent is not None),
            ("requests", lim.rpm is not None),
            ("tokens", lim.tpm is not None),
        ):
            if on and kind not in kinds:
                kinds.append(kind)
    return kinds
