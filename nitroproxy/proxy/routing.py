"""Which deployments a call may try, in order: config order when nothing cools down,
otherwise ``core.selection`` over the candidates, their measurements and their health."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nitroproxy.config import Deployment, Settings
from nitroproxy.core import selection, tokens
from nitroproxy.core.errors import InvalidRequest
from nitroproxy.core.health import HealthBook
from nitroproxy.proxy.call import Call
from nitroproxy.upstream.provider import Provider


@dataclass(frozen=True, slots=True)
class Route:
    """One deployment and the provider that serves it."""

    deployment: Deployment
    provider: Provider


class Router:
    def __init__(
        self, settings: Settings, providers: Mapping[str, Provider], health: HealthBook
    ) -> None:
        self._health = health
        self._rng = random.Random(settings.routing.seed)
        self._candidates: dict[str, tuple[selection.Candidate, ...]] = {}
        self._routes: dict[str, dict[str, Route]] = {}
        self._in_order: dict[str, tuple[Route, ...]] = {}
        for model in settings.models.values():
            self._candidates[model.name] = tuple(
                selection.Candidate(
                    name=d.name,
                    provider=d.provider,
                    upstream_model=d.upstream_model,
                    weight=d.weight,
                    price=d.price,
                    position=i,
                )
                for i, d in enumerate(model.deployments)
            )
            routes = {d.name: Route(d, providers[d.provider]) for d in model.deployments}
            self._routes[model.name] = routes
            self._in_order[model.name] = tuple(routes[d.name] for d in model.deployments)
            for d in model.deployments:
                health.seed(d.name, ttft_s=d.seed_ttft, tokens_per_s=d.seed_tokens_per_s)

    def plan(self, call: Call, now: float, *, optional: bool = False) -> list[Route]:
        """The routes to try, in order. With ``optional`` a model none of whose deployments
        serves the endpoint gets no routes instead of a 400 (token counting, which the proxy
        can answer itself)."""
        if optional and not any(
            r.provider.serves(call.endpoint) for r in self._in_order[call.model.name]
        ):
            return []
        health = self._health
        static = self._in_order[call.model.name]
        # The common case needs no ranking: config order, unless something cools down.
        if call.prefs == selection.NO_PREFS and (
            len(static) == 1
            or (
                call.strategy is selection.Strategy.FALLBACK
                and all(health.available(r.deployment.name, now) for r in static)
            )
        ):
            return self._serving(call, static)
        prompt = call.meter.prompt_estimate
        if prompt is None:
            # Only price routing and max_price filters look at it: skip the walk otherwise.
            needs = call.strategy is selection.Strategy.PRICE or (
                call.prefs.max_price_prompt is not None
                or call.prefs.max_price_completion is not None
            )
            prompt = tokens.prompt_chars(call.body) // 4 if needs else 0
        candidates = self._candidates[call.model.name]
        chosen = selection.choose(
            candidates,
            strategy=call.strategy,
            prefs=call.prefs,
            measurements={c.name: health.measurement(c.name) for c in candidates},
            available=lambda name: health.available(name, now),
            prompt_tokens=prompt,
            max_output_tokens=call.max_output_tokens,
            rng=self._rng.random,
        )
        routes = self._routes[call.model.name]
        return self._serving(call, [routes[c.name] for c in chosen])

    def routes(self, model: str) -> Sequence[Route]:
        return self._in_order[model]

    @staticmethod
    def _serving(call: Call, plan: Sequence[Route]) -> list[Route]:
        """Only deployments whose API has this endpoint: Anthropic has no embeddings and no
        legacy completions, so those calls skip its deployments instead of failing there."""
        usable = [r for r in plan if r.provider.serves(call.endpoint)]
        if not usable:
            raise InvalidRequest(
                f"model '{call.model.name}' has no deployment that serves "
                f"/v1/{call.endpoint.value}",
                param="model",
            )
        return usable
