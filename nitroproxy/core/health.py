"""Per-deployment health: smoothed speed measurements and a circuit breaker.

The book never reads a clock: every method that depends on time takes ``now`` (seconds on
any monotonic scale, the same one for every call).

Breaker states: *healthy* (closed); *cooling_down* (open until ``cooldown_until``);
*half_open* (the cool-down ended: exactly one probe request may go; success closes the
breaker, failure re-opens it with the next, doubled cool-down).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nitroproxy.core.selection import Measurement

__all__ = ["DeploymentHealth", "HealthBook", "HealthState"]

HealthState = Literal["healthy", "cooling_down", "half_open"]


@dataclass(frozen=True, slots=True)
class DeploymentHealth:
    """One deployment's row in /admin/status."""

    state: HealthState
    cooldown_remaining_s: float
    ttft_s: float | None
    tokens_per_s: float | None
    latency_s: float | None
    samples: int
    failure_streak: int
    cooldowns: int


class _Ewma:
    """An exponentially weighted mean that reports its seed until ``min_samples`` real
    samples exist; from then on the mean, which started from the seed, takes over."""

    __slots__ = ("mean", "samples", "seed")

    def __init__(self) -> None:
        self.seed: float | None = None
        self.mean: float | None = None
        self.samples = 0

    def reseed(self, value: float | None) -> None:
        self.seed = value
        if self.samples == 0:
            self.mean = value

    def add(self, value: float, alpha: float) -> None:
        self.mean = value if self.mean is None else alpha * value + (1 - alpha) * self.mean
        self.samples += 1

    def value(self, min_samples: int) -> float | None:
        if self.samples < min_samples and self.seed is not None:
            return self.seed
        return self.mean


class _Deployment:
    __slots__ = (
        "cooldown_until",
        "cooldowns",
        "failure_streak",
        "latency",
        "probe_since",
        "successes",
        "tokens_per_s",
        "ttft",
    )

    def __init__(self) -> None:
        self.ttft = _Ewma()
        self.tokens_per_s = _Ewma()
        self.latency = _Ewma()
        self.successes = 0
        self.failure_streak = 0
        self.cooldown_until: float | None = None  # None = breaker closed
        self.cooldowns = 0  # consecutive cool-downs, for the doubling
        self.probe_since: float | None = None  # half-open probe in flight since


class HealthBook:
    """Mutable, pure bookkeeping of every deployment's health. Unknown names are healthy and
    unmeasured; state is created on first use, and names come from config, so the book is
    bounded by the number of deployments.

    ``probe_timeout`` frees a half-open probe whose outcome was never recorded (a cancelled
    request), so a lost probe cannot keep a deployment out of rotation forever.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.2,
        min_samples: int = 3,
        failure_threshold: int = 3,
        base_cooldown: float = 5.0,
        max_cooldown: float = 60.0,
        probe_timeout: float = 60.0,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.alpha = alpha
        self.min_samples = min_samples
        self.failure_threshold = failure_threshold
        self.base_cooldown = base_cooldown
        self.max_cooldown = max_cooldown
        self.probe_timeout = probe_timeout
        self._book: dict[str, _Deployment] = {}

    def _get(self, name: str) -> _Deployment:
        dep = self._book.get(name)
        if dep is None:
            dep = self._book[name] = _Deployment()
        return dep

    def seed(
        self,
        name: str,
        *,
        ttft_s: float | None = None,
        tokens_per_s: float | None = None,
    ) -> None:
        """Configured expectations, reported until ``min_samples`` real samples exist."""
        dep = self._get(name)
        dep.ttft.reseed(ttft_s)
        dep.tokens_per_s.reseed(tokens_per_s)

    def record_success(
        self,
        name: str,
        now: float,
        *,
        ttft_s: float | None = None,
        tokens_per_s: float | None = None,
        latency_s: float | None = None,
    ) -> None:
        """A request succeeded: fold in its measurements and close the breaker."""
        del now  # part of the contract so a future decay-by-age needs no caller changes
        dep = self._get(name)
        for ewma, value in (
            (dep.ttft, ttft_s),
            (dep.tokens_per_s, tokens_per_s),
            (dep.latency, latency_s),
        ):
            if value is not None:
                ewma.add(value, self.alpha)
        dep.successes += 1
        dep.failure_streak = 0
        dep.cooldown_until = None
        dep.cooldowns = 0
        dep.probe_since = None

    def record_failure(self, name: str, now: float, *, retry_after: float | None = None) -> None:
        """A retryable failure. With ``retry_after`` (an upstream 429) the deployment cools
        down for exactly that long. Otherwise it opens after ``failure_threshold`` consecutive
        failures, or at once when a half-open probe fails, for ``base_cooldown`` doubled per
        consecutive cool-down up to ``max_cooldown``. Failures that arrive while it is already
        cooling down come from requests started earlier and do not extend the cool-down."""
        dep = self._get(name)
        dep.failure_streak += 1
        dep.probe_since = None
        if retry_after is not None:
            dep.cooldown_until = now + max(0.0, retry_after)
            return
        if dep.cooldown_until is not None and now < dep.cooldown_until:
            return
        half_open = dep.cooldown_until is not None
        if half_open or dep.failure_streak >= self.failure_threshold:
            dep.cooldowns += 1
            step = self.base_cooldown * 2.0 ** min(dep.cooldowns - 1, 62)
            dep.cooldown_until = now + min(step, self.max_cooldown)

    def state(self, name: str, now: float) -> HealthState:
        dep = self._book.get(name)
        if dep is None or dep.cooldown_until is None:
            return "healthy"
        return "cooling_down" if now < dep.cooldown_until else "half_open"

    def available(self, name: str, now: float) -> bool:
        """True when healthy, or half-open with no probe in flight."""
        state = self.state(name, now)
        if state == "healthy":
            return True
        if state == "cooling_down":
            return False
        probe = self._book[name].probe_since
        return probe is None or now - probe >= self.probe_timeout

    def begin_attempt(self, name: str, now: float) -> bool:
        """Claim the right to send a request now. For a half-open deployment this takes the
        single probe slot; returns False when the deployment is not available."""
        if not self.available(name, now):
            return False
        if self.state(name, now) == "half_open":
            self._book[name].probe_since = now
        return True

    def end_attempt(self, name: str) -> None:
        """An attempt ended with neither a success nor a retryable failure (a client error,
        a client that left): free the probe slot so the deployment is not held out of
        rotation until ``probe_timeout``. The breaker's state is otherwise unchanged."""
        dep = self._book.get(name)
        if dep is not None:
            dep.probe_since = None

    # -- sharing with other processes (``state.health``) ------------------------------------

    def cooldown_until(self, name: str) -> float | None:
        dep = self._book.get(name)
        return None if dep is None else dep.cooldown_until

    def impose_cooldown(self, name: str, until: float, now: float) -> None:
        """Another process opened this deployment's breaker until ``until`` (on this book's
        scale): cool down as long, unless already cooling down longer."""
        if until <= now:
            return
        dep = self._get(name)
        if dep.cooldown_until is None or dep.cooldown_until < until:
            dep.cooldown_until = until
            dep.probe_since = None

    def adopt(
        self,
        name: str,
        *,
        ttft_s: float | None,
        tokens_per_s: float | None,
        latency_s: float | None,
        samples: int,
    ) -> None:
        """Replace the smoothed measurements by the shared ones (every process's samples
        folded into one mean); the seeds stay, for as long as samples are few."""
        dep = self._get(name)
        pairs = ((dep.ttft, ttft_s), (dep.tokens_per_s, tokens_per_s), (dep.latency, latency_s))
        for ewma, value in pairs:
            if value is not None:
                ewma.mean = value
                ewma.samples = samples
        dep.successes = max(dep.successes, samples)

    def measurement(self, name: str) -> Measurement:
        dep = self._book.get(name)
        if dep is None:
            return Measurement(ttft_s=None, tokens_per_s=None, samples=0)
        return Measurement(
            ttft_s=dep.ttft.value(self.min_samples),
            tokens_per_s=dep.tokens_per_s.value(self.min_samples),
            samples=dep.successes,
        )

    def measurements(self) -> dict[str, Measurement]:
        return {name: self.measurement(name) for name in self._book}

    def snapshot(self, now: float) -> dict[str, DeploymentHealth]:
        out: dict[str, DeploymentHealth] = {}
        for name, dep in self._book.items():
            m = self.measurement(name)
            state = self.state(name, now)
            remaining = 0.0
            if state == "cooling_down" and dep.cooldown_until is not None:
                remaining = dep.cooldown_until - now
            out[name] = DeploymentHealth(
                state=state,
                cooldown_remaining_s=remaining,
                ttft_s=m.ttft_s,
                tokens_per_s=m.tokens_per_s,
                latency_s=dep.latency.mean,
                samples=dep.successes,
                failure_streak=dep.failure_streak,
                cooldowns=dep.cooldowns,
            )
        return out
