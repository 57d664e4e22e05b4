"""``SharedHealth``: the routing health book, with cool-downs and measured speed shared by
every process through Redis.

The hot path keeps reading this process's :class:`~nitroproxy.core.health.HealthBook`
(memory, no await). What is shared moves in the background, every ``state.health_interval``
(250 ms), in one script (``_SYNC``) that pushes what happened here and pulls what everyone
knows:

- a breaker that opened here is written as the time left on the server's clock (one clock
  for every machine); any process that sees a later end than it knew cools the deployment
  down as long;
- each success's time to first token, tokens per second and latency is folded into one
  exponentially weighted mean per deployment, on the server, in arrival order, and every
  process adopts the shared means.

So a provider that fails in one process is avoided by all within about a quarter second,
and routing by speed ranks deployments by everyone's measurements. If Redis is down the
book simply stays local until it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from nitroproxy.core.health import HealthBook
from nitroproxy.proxy.clock import Clock
from nitroproxy.state.link import RedisLink, StateUnavailable, as_text

__all__ = ["SharedHealth"]

MAX_SAMPLES = 10_000

_SYNC = """
-- ARGV: prefix alpha ncool (dep remaining_ms)* nsamples (dep ttft tps latency)* names*
local P, alpha = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hc = P..':hc'
local i = 3
local nc = tonumber(ARGV[i]); i = i + 1
for _ = 1, nc do
  local u = now + tonumber(ARGV[i+1])
  if u > tonumber(redis.call('HGET', hc, ARGV[i]) or '0') then
    redis.call('HSET', hc, ARGV[i], u)
  end
  i = i + 2
end
local ns = tonumber(ARGV[i]); i = i + 1
for _ = 1, ns do
  local h = P..':hm:'..ARGV[i]
  for j, f in ipairs({'ttft', 'tps', 'lat'}) do
    local v = ARGV[i + j]
    if v ~= '' then
      local x, cur = tonumber(v), redis.call('HGET', h, f)
      if cur then x = alpha * x + (1 - alpha) * tonumber(cur) end
      redis.call('HSET', h, f, tostring(x))
    end
  end
  redis.call('HINCRBY', h, 'n', 1)
  i = i + 4
end
local out = {}
while i <= #ARGV do
  local d = ARGV[i]
  local m = redis.call('HMGET', P..':hm:'..d, 'ttft', 'tps', 'lat', 'n')
  local u = tonumber(redis.call('HGET', hc, d) or '0')
  table.insert(out, d)
  table.insert(out, tostring(u - now))
  table.insert(out, tostring(u))
  for j = 1, 4 do table.insert(out, m[j] or '') end
  i = i + 1
end
return out
"""


class SharedHealth(HealthBook):
    def __init__(
        self, link: RedisLink, clock: Clock, names: Iterable[str], **book: float | int
    ) -> None:
        super().__init__(**book)  # type: ignore[arg-type]
        self._link = link
        self._clock = clock
        self._names = sorted(set(names))
        self._cooling: dict[str, float] = {}
        self._samples: list[tuple[str, str, str, str]] = []
        self._known: dict[str, int] = {}
        self._script = link.client.register_script(_SYNC)
        self._task: asyncio.Task[None] | None = None

    def record_failure(self, name: str, now: float, *, retry_after: float | None = None) -> None:
        before = self.cooldown_until(name)
        super().record_failure(name, now, retry_after=retry_after)
        after = self.cooldown_until(name)
        if after is not None and after != before and after > now:
            self._cooling[name] = max(self._cooling.get(name, 0.0), after)

    def record_success(
        self,
        name: str,
        now: float,
        *,
        ttft_s: float | None = None,
        tokens_per_s: float | None = None,
        latency_s: float | None = None,
    ) -> None:
        super().record_success(
            name, now, ttft_s=ttft_s, tokens_per_s=tokens_per_s, latency_s=latency_s
        )
        if len(self._samples) < MAX_SAMPLES:
            self._samples.append((name, _num(ttft_s), _num(tokens_per_s), _num(latency_s)))

    def start(self, interval: float) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._loop(interval), name="nitroproxy-state-health"
        )

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(StateUnavailable):
                await self.sync()

    async def sync(self) -> None:
        """Push this process's cool-downs and samples; adopt everyone's."""
        now = self._clock.now()
        cooling, self._cooling = self._cooling, {}
        samples, self._samples = self._samples, []
        args: list[str | int | float] = [self._link.prefix, self.alpha, len(cooling)]
        for name, until in cooling.items():
            args.extend((name, max(0, round((until - now) * 1000))))
        args.append(len(samples))
        for sample in samples:
            args.extend(sample)
        args.extend(self._names)
        try:
            reply = await self._link.background(lambda: self._script(args=args))
        except StateUnavailable:
            # Put back what was not sent (cool-downs still in the future, the samples).
            for name, until in cooling.items():
                self._cooling.setdefault(name, until)
            self._samples[:0] = samples[: MAX_SAMPLES - len(self._samples)]
            raise
        self._adopt([as_text(v) for v in reply], self._clock.now())

    def _adopt(self, flat: list[str], now: float) -> None:
        for i in range(0, len(flat), 7):
            name, left_ms, until_ms, ttft, tps, lat, n = flat[i : i + 7]
            until = int(float(until_ms))
            if float(left_ms) > 0 and until > self._known.get(name, 0):
                self._known[name] = until
                self.impose_cooldown(name, now + float(left_ms) / 1000, now)
            if n:
                self.adopt(
                    name,
                    ttft_s=float(ttft) if ttft else None,
                    tokens_per_s=float(tps) if tps else None,
                    latency_s=float(lat) if lat else None,
                    samples=int(n),
                )


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))
