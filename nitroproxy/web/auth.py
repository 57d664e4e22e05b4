"""Key extraction and lookup: a client key becomes a ``Principal`` or ``Unauthenticated``.

Keys are compared by their SHA-256 digest, looked up in a dict: the lookup time does not
depend on how much of a guessed key is right, and the key itself is never kept.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from nitroproxy.config import KeySettings, LimitSettings, Settings
from nitroproxy.core.errors import PermissionDenied, Unauthenticated
from nitroproxy.core.limits import KeyLimits
from nitroproxy.principal import ANONYMOUS, Principal


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def extract_key(headers: Mapping[str, str]) -> str | None:
    """``Authorization: Bearer`` (OpenAI SDK) or ``x-api-key`` (Anthropic SDK)."""
    auth = headers.get("Authorization")
    if auth is not None and auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    api_key = headers.get("x-api-key")
    return api_key.strip() if api_key and api_key.strip() else None


def _merge(base: LimitSettings, over: LimitSettings) -> KeyLimits:
    return KeyLimits(
        rpm=over.rpm if over.rpm is not None else base.rpm,
        tpm=over.tpm if over.tpm is not None else base.tpm,
        max_concurrent=over.max_concurrent
        if over.max_concurrent is not None
        else base.max_concurrent,
        budget_day_usd=over.budget_day_usd
        if over.budget_day_usd is not None
        else base.budget_day_usd,
        budget_month_usd=over.budget_month_usd
        if over.budget_month_usd is not None
        else base.budget_month_usd,
    )


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.required = settings.auth.required
        admin = settings.auth.admin_key
        self._admin_digest = key_digest(admin) if admin else None
        self._keys: dict[str, Principal] = {}
        for k in settings.keys:
            self._keys[key_digest(k.key)] = self._principal(k, settings)

    @staticmethod
    def _principal(k: KeySettings, settings: Settings) -> Principal:
        tier = settings.tiers.get(k.tier or "default", LimitSettings())
        return Principal(
            key_id=f"cfg:{k.name}",
            user_id=k.user,
            name=k.name,
            models=frozenset(k.models) if k.models else None,
            limits=_merge(tier, k.limits),
        )

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        secret = extract_key(headers)
        if secret is None:
            if not self.required:
                return ANONYMOUS
            raise Unauthenticated(
                "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
            )
        digest = key_digest(secret)
        if self._admin_digest is not None and hmac.compare_digest(
            digest, self._admin_digest
        ):
            return Principal(key_id="admin", user_id=None, name="admin", admin=True)
        principal = self._keys.get(digest)
        if principal is None:
            if not self.required:
                return ANONYMOUS
            raise Unauthenticated("invalid API key")
        return principal

    def authenticate_admin(self, headers: Mapping[str, str]) -> Principal:
        if self._admin_digest is None:
            raise PermissionDenied(
                "the admin API is disabled: set NITROPROXY_ADMIN_KEY"
            )
        secret = extract_key(headers)
        if secret is None:
            raise Unauthenticated("missing admin key")
        if not hmac.compare_digest(key_digest(secret), self._admin_digest):
            if key_digest(secret) in self._keys:
                raise PermissionDenied("this key may not use the admin API")
            raise Unauthenticated("invalid admin key")
        return Principal(key_id="admin", user_id=None, name="admin", admin=True)
