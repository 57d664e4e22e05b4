"""Who is calling: the authenticated identity every request carries through the gateway."""

from __future__ import annotations

from dataclasses import dataclass

from nitroproxy.core.limits import KeyLimits

UNLIMITED = KeyLimits(
    rpm=None, tpm=None, max_concurrent=None, budget_day_usd=None, budget_month_usd=None
)


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str | None
    user_id: str | None
    name: str | None = None
    models: frozenset[str] | None = None
    """Public models this key may call; None means all."""
    limits: KeyLimits = UNLIMITED
    admin: bool = False
    cache: bool = False
    """The key opted in to the response cache (requests may still say otherwise)."""

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


ANONYMOUS = Principal(key_id=None, user_id=None, name="anonymous")
