"""Key extraction and lookup: a client key becomes a ``Principal`` or a 401/403.

Keys are compared by their SHA-256 digest, looked up in a dict: the lookup time does not
depend on how much of a guessed key is right, and the key itself is never kept. Admin keys
are named (``auth.admin_key`` is "admin", ``auth.admin_keys`` and the database's
``admin_keys`` name the others) and looked up the same way; an admin's principal carries its
name, which every audit entry it causes records as ``admin:<name>`` (:func:`actor_of`).

A person's opt-out of the response cache (``store.preferences``) is applied to the
principals of their keys, config keys included, on every reload.

Every check is served from memory. Keys from the config are fixed; keys from the store are
loaded at start-up and reloaded whenever ``meta.accounts_version`` changes: at once after an
admin action in this process, and within one poll interval (0.5 s) after a change made by
another process (the CLI, another replica). Expiry is checked per request, on ``clock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from nitroproxy.config import KeySettings, Settings
from nitroproxy.core.errors import PermissionDenied, Unauthenticated
from nitroproxy.core.limits import KeyLimits, layered, limits_of
from nitroproxy.core.principal import ANONYMOUS, Principal
from nitroproxy.security.crypto import key_digest
from nitroproxy.store.accounts import AccountStore
from nitroproxy.store.admins import admin_entries
from nitroproxy.store.keys import KeyEntry, key_entries
from nitroproxy.store.preferences import cache_refusers

POLL_INTERVAL_S = 0.5


def admin_principal(name: str) -> Principal:
    return Principal(key_id=f"admin:{name}", user_id=None, name=name, admin=True)


ADMIN = admin_principal("admin")


def actor_of(principal: Principal) -> str:
    """The audit actor: ``admin:<name>`` for an admin, ``key:<id>`` for a key holder."""
    if principal.admin:
        return f"admin:{principal.name}"
    return f"key:{principal.key_id}"


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


def tier_layers(tiers: Mapping[str, KeyLimits], tier: str | None) -> list[KeyLimits]:
    """Tier "default", then the named tier (a tier the config no longer has adds nothing)."""
    layers = [tiers.get("default", KeyLimits())]
    if tier is not None and tier != "default":
        layers.append(tiers.get(tier, KeyLimits()))
    return layers


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    expires_at: float | None = None
    revoked: bool = False
    suspended: bool = False


def _config_entry(k: KeySettings, tiers: Mapping[str, KeyLimits]) -> _Entry:
    return _Entry(
        Principal(
            key_id=f"cfg:{k.name}",
            user_id=k.user,
            name=k.name,
            models=frozenset(k.models) if k.models else None,
            limits=layered(*tier_layers(tiers, k.tier), k.limits),
            cache=k.cache,
        )
    )


def _store_entry(e: KeyEntry, tiers: Mapping[str, KeyLimits]) -> _Entry:
    s = e.key.spec
    own = limits_of(s)
    return _Entry(
        Principal(
            key_id=e.key.id,
            user_id=s.user_id,
            name=s.name,
            models=frozenset(s.models) if s.models is not None else None,
            limits=layered(*tier_layers(tiers, e.user_tier), own),
            cache=s.cache,
        ),
        expires_at=s.expires_at,
        revoked=e.key.revoked,
        suspended=e.user_status is not None and e.user_status != "active",
    )


def _refusing(entry: _Entry, refusers: frozenset[str]) -> _Entry:
    subject = entry.principal.subject
    if subject is None or subject not in refusers:
        return entry
    return replace(entry, principal=replace(entry.principal, cache_refused=True))


class Authenticator:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.required = settings.auth.required
        self.clock = clock
        named = dict(settings.auth.admin_keys)
        if settings.auth.admin_key:
            named["admin"] = settings.auth.admin_key
        self._static_admins = {key_digest(k): admin_principal(n) for n, k in named.items()}
        self._admins: dict[str, Principal] = dict(self._static_admins)
        self._tiers = settings.tiers
        self._static = {key_digest(k.key): _config_entry(k, settings.tiers) for k in settings.keys}
        self._entries: dict[str, _Entry] = dict(self._static)
        self.cache_refusers: frozenset[str] = frozenset()
        self.on_cache_refused: Callable[[frozenset[str]], object] | None = None
        """Called with the subjects newly opted out of the cache by a reload (the server
        purges their entries; a change made in this process is purged by its handler)."""
        self._store: AccountStore | None = None
        self._version = -1
        self._task: asyncio.Task[None] | None = None
        self._log = logging.getLogger("nitroproxy.auth")

    # -- the store's keys -------------------------------------------------------------------

    def load(
        self,
        entries: Iterable[KeyEntry],
        *,
        refusers: frozenset[str] = frozenset(),
        admins: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Replace the store's keys and admin keys (config keys stay) in one assignment
        each: a request sees the old table or the new one, never a mix. ``refusers`` are
        the subjects opted out of the cache; ``admins`` (digest, name) the database's."""
        table = {e.digest: _store_entry(e, self._tiers) for e in entries}
        table.update(self._static)
        self._entries = {d: _refusing(e, refusers) for d, e in table.items()}
        names = {p.name for p in self._static_admins.values()}
        admin_table = dict(self._static_admins)
        for digest, name in admins:
            if name in names:  # one name, one person: the config's holder keeps it
                self._log.warning("admin key %r in the database shadows a config name", name)
                continue
            admin_table[digest] = admin_principal(name)
        self._admins = admin_table
        new = refusers - self.cache_refusers
        self.cache_refusers = refusers
        if new and self.on_cache_refused is not None:
            self.on_cache_refused(new)

    async def reconfigure(self, settings: Settings) -> None:
        """Take the keys and tiers of a reloaded config file (SIGHUP). The store's keys are
        layered on the tiers too, so they are reloaded now as well; until the new table is
        assigned, requests see the old one."""
        self._tiers = settings.tiers
        self._static = {key_digest(k.key): _config_entry(k, settings.tiers) for k in settings.keys}
        if self._store is None:
            self._entries = {d: _refusing(e, self.cache_refusers) for d, e in self._static.items()}
            return
        self._version = -1
        await self.refresh()

    async def refresh(self) -> None:
        """Reload from the store now if its accounts changed since the last load."""
        store = self._store
        if store is None:
            return
        version = await store.version()
        if version != self._version:
            self.load(
                await key_entries(store),
                refusers=await cache_refusers(store),
                admins=await admin_entries(store),
            )
            self._version = version

    async def attach(self, store: AccountStore, *, interval: float = POLL_INTERVAL_S) -> None:
        """Load the store's keys, then keep them fresh from an owned task until ``detach``."""
        self._store = store
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(
            self._poll(interval), name="nitroproxy-key-refresh"
        )

    async def detach(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._store = None

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception:
                # A locked or briefly unreadable database: keep serving the last table.
                self._log.exception("reloading API keys failed")

    # -- checks -------------------------------------------------------------------------

    def _usable(self, entry: _Entry) -> Principal:
        if entry.revoked:
            raise Unauthenticated("this API key has been revoked", code="key_revoked")
        if entry.expires_at is not None and self.clock() >= entry.expires_at:
            raise Unauthenticated("this API key has expired", code="key_expired")
        if entry.suspended:
            raise PermissionDenied("this key's user is suspended", code="user_suspended")
        return entry.principal

    def _admin(self, digest: str) -> Principal | None:
        return self._admins.get(digest)

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        secret = extract_key(headers)
        if secret is None:
            if not self.required:
                return ANONYMOUS
            raise Unauthenticated(
                "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
            )
        digest = key_digest(secret)
        admin = self._admin(digest)
        if admin is not None:
            return admin
        entry = self._entries.get(digest)
        if entry is None:
            if not self.required:
                return ANONYMOUS
            raise Unauthenticated("invalid API key")
        return self._usable(entry)

    def authenticate_digest(self, digest: str) -> Principal:
        """The principal of the key with this digest, checked as a key sent with a request
        is (a dashboard session keeps the key's digest, never the key)."""
        admin = self._admin(digest)
        if admin is not None:
            return admin
        entry = self._entries.get(digest)
        if entry is None:
            raise Unauthenticated("this key is no longer valid", code="invalid_api_key")
        return self._usable(entry)

    def authenticate_admin(self, headers: Mapping[str, str]) -> Principal:
        if not self._admins:
            raise PermissionDenied(
                "the admin API is disabled: set NITROPROXY_ADMIN_KEY or create an admin key "
                "with `nitroproxy admins create NAME`"
            )
        secret = extract_key(headers)
        if secret is None:
            raise Unauthenticated("missing admin key")
        digest = key_digest(secret)
        admin = self._admin(digest)
        if admin is not None:
            return admin
        entry = self._entries.get(digest)
        if entry is not None:
            self._usable(entry)  # a dead key gets the same answer as anywhere else
            raise PermissionDenied("this key may not use the admin API")
        raise Unauthenticated("invalid admin key")

    def authenticate_key(self, headers: Mapping[str, str]) -> Principal:
        """A caller that must present a key of its own (``/v1/me/*``): not anonymous."""
        principal = self.authenticate(headers)
        if principal.key_id is None:
            raise Unauthenticated(
                "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
            )
        return principal
