"""Per-key rate limits (requests/min, tokens/min, concurrent requests) and budgets.

The windows are sliding logs of ``(timestamp, amount)`` over the last 60 s, not GCRA or a
token bucket: "60 requests per minute" then means exactly "never more than 60 in any 60 s",
request N+1 inside the window is refused and admitted again once the oldest entry is 60 s
old (to the millisecond, rounded up: an entry never leaves early), and a token estimate can
be corrected afterwards at its own timestamp. Memory per key is one entry per distinct
millisecond of admission in the last minute (at most 60,000, and at most ``rpm`` when
requests are limited); idle keys are swept away.

Time is always an argument (``now``), on one monotonic scale.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import Literal

from nitroproxy.core.errors import QuotaExceeded, RateLimited
from nitroproxy.core.money import usd
from nitroproxy.core.windows import WINDOW_S, KeyState

__all__ = [
    "INTEGER_LIMITS",
    "LIMIT_FIELDS",
    "WINDOW_S",
    "Admission",
    "KeyLimits",
    "RateLimits",
    "WindowFigures",
    "check_budget",
    "format_duration",
    "layered",
    "limits_of",
    "ratelimit_headers",
    "to_error",
    "verdict",
]


@functools.lru_cache(maxsize=1024)
def _nanos(usd: float) -> int:
    return round(usd * 1e9)


# A refused concurrency slot frees when some stream ends, which no clock predicts; this is
# the hint sent as Retry-After.
CONCURRENCY_RETRY_AFTER_S = 1.0

Reason = Literal["requests", "tokens", "concurrency", "budget"]


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """``None`` means unlimited. The one definition of the per-key limit fields: config
    (tiers, keys), the key store, the admin API and the CLI all iterate ``LIMIT_FIELDS``."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    budget_day_usd: float | None = None
    budget_month_usd: float | None = None

    @property
    def unlimited(self) -> bool:
        return (
            self.rpm is None
            and self.tpm is None
            and self.max_concurrent is None
            and self.budget_day_usd is None
            and self.budget_month_usd is None
        )


LIMIT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(KeyLimits))
INTEGER_LIMITS = frozenset({"rpm", "tpm", "max_concurrent"})
"""The limits that are counts; the others are USD amounts."""


def limits_of(source: object) -> KeyLimits:
    """The ``LIMIT_FIELDS`` of any object that has them as attributes (a key's spec)."""
    return KeyLimits(**{name: getattr(source, name) for name in LIMIT_FIELDS})


def layered(*layers: KeyLimits) -> KeyLimits:
    """Later layers win field by field where they set a value (default tier < tier < key)."""
    values: dict[str, float | int | None] = {}
    for layer in layers:
        for name in LIMIT_FIELDS:
            value = getattr(layer, name)
            if value is not None:
                values[name] = value
    return KeyLimits(**values)  # type: ignore[arg-type]


@dataclass(slots=True)
class Admission:
    """The verdict plus what the ``x-ratelimit-*`` headers report. Header fields are
    ``None`` for unlimited dimensions; resets are seconds until the window is empty.

    Not frozen only because a frozen dataclass sets each field through
    ``object.__setattr__``, which made one per call cost ~2 us; treat it as immutable."""

    allowed: bool
    reason: Reason | None = None
    retry_after: float | None = None
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None
    tokens_requested: int = 0
    message: str | None = None


class RateLimits:
    """All keys' windows and concurrency counters in one process. Mutable and pure: each
    call is one atomic step, so the async shell needs no lock as long as it doesn't await
    between a check and its update.

    A key is dropped once its windows are empty and it holds no slot; a full sweep runs at
    most once per window, triggered by ``admit``, so memory follows the keys active in the
    last minute.
    """

    def __init__(self) -> None:
        self._keys: dict[str, KeyState] = {}
        self._last_sweep: float | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def admit(
        self,
        key: str,
        limits: KeyLimits,
        *,
        tokens: int,
        now: float,
        concurrent: bool = True,
        spent_day_usd: float = 0.0,
        spent_month_usd: float = 0.0,
        cost_usd: float = 0.0,
    ) -> Admission:
        """Check budget, concurrency, requests/min and tokens/min together; if all pass,
        record one request, ``tokens`` estimated tokens and (when ``concurrent``) one slot,
        which the caller returns with :meth:`release`."""
        admission = self.check(
            key,
            limits,
            tokens=tokens,
            now=now,
            concurrent=concurrent,
            spent_day_usd=spent_day_usd,
            spent_month_usd=spent_month_usd,
            cost_usd=cost_usd,
        )
        if admission.allowed:
            self.apply(key, limits, tokens=tokens, now=now, concurrent=concurrent)
        return admission

    def check(
        self,
        key: str,
        limits: KeyLimits,
        *,
        tokens: int,
        now: float,
        concurrent: bool = True,
        spent_day_usd: float = 0.0,
        spent_month_usd: float = 0.0,
        cost_usd: float = 0.0,
    ) -> Admission:
        """The verdict of :meth:`admit` without counting anything: a caller admitting one
        request against several scopes (a key and one of its end users) checks them all,
        then applies to all, in one step."""
        self._maybe_sweep(now)
        state = self._keys.get(key)
        if state is None:
            state = KeyState()
        else:
            state.prune(now)
        return verdict(
            limits,
            _figures(state, limits, tokens, now, concurrent, spent_day_usd, spent_month_usd),
            tokens=tokens,
            cost_usd=cost_usd,
        )

    def apply(
        self, key: str, limits: KeyLimits, *, tokens: int, now: float, concurrent: bool = True
    ) -> None:
        """Count one admitted request (after :meth:`check` said yes, with no await between)."""
        state = self._keys.get(key)
        if state is None:
            state = KeyState()
        if limits.rpm is not None:
            state.requests.add(now, 1)
        if limits.tpm is not None:
            state.tokens.add(now, tokens)
        if concurrent:
            state.active += 1
        if not state.idle():
            self._keys[key] = state

    def settle(
        self,
        key: str,
        *,
        admitted_tokens: int,
        actual_tokens: int,
        at: float,
        now: float,
    ) -> None:
        """Replace the estimate admitted at ``at`` by the real usage, at its own timestamp,
        so the correction expires when the estimate would have. A no-op once it left the
        window."""
        state = self._keys.get(key)
        if state is None:
            return
        state.prune(now)
        state.tokens.adjust(at, actual_tokens - admitted_tokens)
        self._drop_if_idle(key, state)

    def finish(
        self, key: str, *, admitted_tokens: int, actual_tokens: int, at: float, now: float
    ) -> None:
        """:meth:`release` and :meth:`settle` in one step (one prune): the end of a call."""
        state = self._keys.get(key)
        if state is None:
            return
        state.active = max(0, state.active - 1)
        state.prune(now)
        if actual_tokens != admitted_tokens:
            state.tokens.adjust(at, actual_tokens - admitted_tokens)
        self._drop_if_idle(key, state)

    def release(self, key: str, now: float) -> None:
        """Return a concurrency slot taken by :meth:`admit`."""
        state = self._keys.get(key)
        if state is None:
            return
        state.active = max(0, state.active - 1)
        state.prune(now)
        self._drop_if_idle(key, state)

    def active(self, key: str) -> int:
        state = self._keys.get(key)
        return state.active if state else 0

    def sweep(self, now: float) -> None:
        """Prune every key and forget the idle ones."""
        self._last_sweep = now
        for key, state in list(self._keys.items()):
            state.prune(now)
            self._drop_if_idle(key, state)

    def _maybe_sweep(self, now: float) -> None:
        if self._last_sweep is None:
            self._last_sweep = now
        elif now - self._last_sweep >= WINDOW_S:
            self.sweep(now)

    def _drop_if_idle(self, key: str, state: KeyState) -> None:
        if state.idle():
            del self._keys[key]


@dataclass(frozen=True, slots=True)
class WindowFigures:
    """One scope's state at the instant of a check, before the request is counted: all a
    verdict needs, so a shared backend (a Lua script in Redis) that reads these figures
    atomically reaches the same verdict, with the same messages, as :class:`RateLimits`.

    The waits are seconds until enough has left a window for this request to fit, and
    only mean something when that window is over its limit; resets are seconds until the
    window is empty."""

    active: int = 0
    requests: int = 0
    tokens: int = 0
    request_wait: float = WINDOW_S
    token_wait: float = WINDOW_S
    request_reset: float = 0.0
    token_reset: float = 0.0
    spent_day_usd: float = 0.0
    spent_month_usd: float = 0.0
    concurrent: bool = True


def _figures(
    state: KeyState,
    limits: KeyLimits,
    tokens: int,
    now: float,
    concurrent: bool,
    spent_day: float,
    spent_month: float,
) -> WindowFigures:
    requests, used = state.requests.total, state.tokens.total
    over_requests = limits.rpm is not None and requests + 1 > limits.rpm
    over_tokens = limits.tpm is not None and used + tokens > limits.tpm
    return WindowFigures(
        active=state.active,
        requests=requests,
        tokens=used,
        request_wait=state.requests.wait_for(requests + 1 - (limits.rpm or 0), now)
        if over_requests
        else WINDOW_S,
        token_wait=state.tokens.wait_for(used + tokens - (limits.tpm or 0), now)
        if over_tokens
        else WINDOW_S,
        request_reset=state.requests.reset_in(now),
        token_reset=state.tokens.reset_in(now),
        spent_day_usd=spent_day,
        spent_month_usd=spent_month,
        concurrent=concurrent,
    )


def verdict(limits: KeyLimits, f: WindowFigures, *, tokens: int, cost_usd: float) -> Admission:
    """Admit or refuse one request of ``tokens`` estimated tokens and ``cost_usd`` worst
    case against ``limits``, given the scope's figures; the headers leave the request out
    when it is refused and count it when it is admitted."""
    denial = _deny(f, limits, tokens, cost_usd)
    return _admission(f, limits, tokens, denial, counted=denial is None)


def _deny(
    f: WindowFigures, limits: KeyLimits, tokens: int, cost: float
) -> tuple[Reason, float | None, str] | None:
    quota = check_budget(limits, f.spent_day_usd, f.spent_month_usd, cost)
    if quota is not None:
        return "budget", None, quota.message
    reasons: list[tuple[Reason, float | None, str]] = []
    if f.concurrent and limits.max_concurrent is not None and f.active >= limits.max_concurrent:
        reasons.append(
            (
                "concurrency",
                CONCURRENCY_RETRY_AFTER_S,
                f"Rate limit reached: {limits.max_concurrent} concurrent requests in flight",
            )
        )
    if limits.rpm is not None and f.requests + 1 > limits.rpm:
        reasons.append(
            ("requests", f.request_wait, f"Rate limit reached: {limits.rpm} requests per min")
        )
    if limits.tpm is not None and tokens > limits.tpm:
        message = (
            f"Request too large: about {tokens} tokens, over the limit of "
            f"{limits.tpm} tokens per min"
        )
        return "tokens", None, message
    if limits.tpm is not None and f.tokens + tokens > limits.tpm:
        message = (
            f"Rate limit reached: {limits.tpm} tokens per min (used {f.tokens}, requested {tokens})"
        )
        reasons.append(("tokens", f.token_wait, message))
    if not reasons:
        return None
    # Name the first limit hit, but wait for all of them, so a retry then succeeds.
    waits = [w for _, w, _ in reasons if w is not None]
    return reasons[0][0], max(waits) if waits else None, reasons[0][2]


def _admission(
    f: WindowFigures,
    limits: KeyLimits,
    tokens: int,
    denial: tuple[Reason, float | None, str] | None,
    *,
    counted: bool = False,
) -> Admission:
    """The verdict and its headers; ``counted`` when the request is about to be counted, so
    the remaining figures already leave it out."""
    rpm, tpm = limits.rpm, limits.tpm
    used_requests = f.requests + (1 if counted else 0)
    used_tokens = f.tokens + (tokens if counted else 0)
    return Admission(
        allowed=denial is None,
        reason=None if denial is None else denial[0],
        retry_after=None if denial is None else denial[1],
        message=None if denial is None else denial[2],
        limit_requests=rpm,
        remaining_requests=None if rpm is None else max(0, rpm - used_requests),
        # A request just counted is the newest entry: its window ends a full WINDOW_S away.
        reset_requests=None if rpm is None else WINDOW_S if counted else f.request_reset,
        limit_tokens=tpm,
        remaining_tokens=None if tpm is None else max(0, tpm - used_tokens),
        reset_tokens=None if tpm is None else WINDOW_S if counted else f.token_reset,
        tokens_requested=tokens,
    )


def check_budget(
    limits: KeyLimits, spent_day_usd: float, spent_month_usd: float, cost_usd: float = 0.0
) -> QuotaExceeded | None:
    """Refuse when a budget is used up, or when this request's worst case (``cost_usd``, what
    it reserves) would take what is spent and reserved past the budget: a budget is never
    passed by the requests it admits, only by what they were not made to reserve.

    Compared in whole nano-dollars, so a float's last bit never admits or refuses."""
    cost = round(cost_usd * 1e9)
    for period, budget, spent in (
        ("daily", limits.budget_day_usd, spent_day_usd),
        ("monthly", limits.budget_month_usd, spent_month_usd),
    ):
        if budget is None:
            continue
        cap, used = _nanos(budget), round(spent * 1e9)
        if used >= cap:
            return QuotaExceeded(
                f"You exceeded your {period} budget of ${usd(budget)} (spent ${usd(spent)})"
            )
        if used + cost > cap:
            return QuotaExceeded(
                f"This request may cost up to ${usd(cost_usd)} (its prompt and max_tokens at "
                f"the dearest deployment's prices), more than the ${usd(budget - spent)} left "
                f"of your {period} budget of ${usd(budget)}; send a lower max_tokens or wait "
                "for the budget to reset"
            )
    return None


def to_error(adm: Admission) -> RateLimited:
    """The 429 for a refused admission, with its headers (budget → ``insufficient_quota``)."""
    message = adm.message or "Rate limit reached"
    headers = ratelimit_headers(adm)
    if adm.reason == "budget":
        return QuotaExceeded(message, headers=headers)
    return RateLimited(message, retry_after=adm.retry_after, headers=headers)


def ratelimit_headers(adm: Admission) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for the limited dimensions, plus ``retry-after``
    (whole seconds, rounded up) on a refusal that has one."""
    headers: dict[str, str] = {}
    for kind, limit, remaining, reset in (
        ("requests", adm.limit_requests, adm.remaining_requests, adm.reset_requests),
        ("tokens", adm.limit_tokens, adm.remaining_tokens, adm.reset_tokens),
    ):
        if limit is None:
            continue
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(remaining or 0)
        headers[f"x-ratelimit-reset-{kind}"] = format_duration(reset or 0.0)
    if not adm.allowed and adm.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(adm.retry_after)))
    return headers


@functools.lru_cache(maxsize=4096)
def format_duration(seconds: float) -> str:
    """OpenAI's (Go's) duration style at millisecond precision, rounded up:
    ``"20ms"``, ``"1s"``, ``"1.5s"``, ``"6m0s"``, ``"1h0m0s"``."""
    ms = math.ceil(round(max(0.0, seconds) * 1000, 6))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
