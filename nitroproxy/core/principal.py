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
    cache_refused: bool = False
    """The key's user (or, without one, the key's holder) opted out of the response cache
    (``cache: false``): nothing is read or written, whatever the key or a request says."""

    @property
    def subject(self) -> str | None:
        """Whom this key's records are about: its user, else the key itself."""
        return self.user_id if self.user_id is not None else self.key_id

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


ANONYMOUS = Principal(key_id=None, user_id=None, name="anonymous")
