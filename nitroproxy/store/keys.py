"""API keys: ``np-`` + 32 random bytes (base64url), stored only as a SHA-256 digest with the
first characters kept for display; per-key models, limits, budgets and expiry.

The secret is returned once, by create and rotate. Rotation keeps the key's id (so its
limits, spend and records carry on) and the old secret stops working at once.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from nitroproxy.core.errors import InvalidRequest, NotFound
from nitroproxy.core.limits import LIMIT_FIELDS
from nitroproxy.security.crypto import key_digest
from nitroproxy.store import audit
from nitroproxy.store.accounts import AccountStore

__all__ = [
    "KEY_COLUMNS",
    "ApiKey",
    "IssuedKey",
    "KeyEntry",
    "KeySpec",
    "create_key",
    "delete_dead_keys",
    "get_key",
    "key_entries",
    "key_from_row",
    "list_keys",
    "new_secret",
    "revoke_key",
    "rotate_key",
]

SECRET_PREFIX = "np-"
DISPLAY_CHARS = 10
KEY_COLUMNS = (
    "id, prefix, name, user_id, models, rpm, tpm, max_concurrent, budget_day_usd, "
    "budget_month_usd, expires_at, revoked, created, updated, cache"
)


def new_secret() -> str:
    return SECRET_PREFIX + base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What an admin chooses for a key. Unset limits (None) inherit the user's tier."""

    name: str
    user_id: str | None = None
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    budget_day_usd: float | None = None
    budget_month_usd: float | None = None
    expires_at: int | None = None
    cache: bool = False
    """Opted in to the response cache (when the server enables it)."""

    def settings(self) -> dict[str, Any]:
        """The key's settings as JSON, without its name: a name may be personal ("Ann's
        laptop"), so this is what the audit log keeps."""
        return {
            "models": list(self.models) if self.models is not None else None,
            **{name: getattr(self, name) for name in LIMIT_FIELDS},
            "expires_at": self.expires_at,
            "cache": self.cache,
        }


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key's metadata: everything but its secret."""

    id: str
    prefix: str
    spec: KeySpec
    revoked: bool
    created: int
    updated: int

    def to_json(self) -> dict[str, Any]:
        s = self.spec
        return {
            "id": self.id,
            "prefix": self.prefix,
            "name": s.name,
            "user_id": s.user_id,
            **s.settings(),
            "revoked": self.revoked,
            "created": self.created,
            "updated": self.updated,
        }


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key with its secret, returned once by create and rotate."""

    key: ApiKey
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """What the authenticator needs about one key, its owner's tier and status included."""

    digest: str
    key: ApiKey
    user_tier: str | None
    user_status: str | None


def key_from_row(row: Any) -> ApiKey:
    models = orjson.loads(row[4]) if row[4] is not None else None
    return ApiKey(
        id=str(row[0]),
        prefix=str(row[1]),
        spec=KeySpec(
            name=str(row[2]),
            user_id=row[3],
            models=tuple(models) if models is not None else None,
            rpm=row[5],
            tpm=row[6],
            max_concurrent=row[7],
            budget_day_usd=row[8],
            budget_month_usd=row[9],
            expires_at=row[10],
            cache=bool(row[14]),
        ),
        revoked=bool(row[11]),
        created=int(row[12]),
        updated=int(row[13]),
    )


async def create_key(store: AccountStore, spec: KeySpec, *, actor: str) -> IssuedKey:
    store.check_models(spec.models)
    key_id = "key_" + secrets.token_hex(12)
    secret = new_secret()
    now = store.now()
    s = spec
    models = orjson.dumps(list(s.models)).decode() if s.models is not None else None
    async with store.writing() as conn:
        owner = s.user_id
        if owner is not None and await store.user_status(owner, param="user_id") == "erased":
            raise InvalidRequest(
                f"user {owner} has been erased", param="user_id", code="user_erased"
            )
        await conn.execute(
            f"INSERT INTO api_keys (digest, {KEY_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
            (
                key_digest(secret),
                key_id,
                secret[:DISPLAY_CHARS],
                s.name,
                s.user_id,
                models,
                s.rpm,
                s.tpm,
                s.max_concurrent,
                s.budget_day_usd,
                s.budget_month_usd,
                s.expires_at,
                now,
                now,
                int(s.cache),
            ),
        )
        settings = s.settings()
        await audit.append(
            conn,
            ts=store.clock(),
            actor=actor,
            action="key.create",
            target=key_id,
            user_id=s.user_id,
            detail=settings,
        )
    return IssuedKey(await get_key(store, key_id), secret)


async def get_key(store: AccountStore, key_id: str) -> ApiKey:
    rows = await store.read(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,))
    if not rows:
        raise NotFound(f"no key with id {key_id!r}", code="key_not_found")
    return key_from_row(rows[0])


async def list_keys(
    store: AccountStore,
    *,
    user_id: str | None = None,
    include_revoked: bool = True,
    after: str | None = None,
    limit: int = 100,
) -> list[ApiKey]:
    """Oldest first; ``after`` is the last id of the previous page."""
    clauses, params = ["1"], list[Any]()
    if user_id is not None:
        clauses.append("user_id = ?")
        params.append(user_id)
    if not include_revoked:
        clauses.append("revoked = 0")
    if after is not None:
        clauses.append("rowid > COALESCE((SELECT rowid FROM api_keys WHERE id = ?), -1)")
        params.append(after)
    rows = await store.read(
        f"SELECT {KEY_COLUMNS} FROM api_keys WHERE {' AND '.join(clauses)} ORDER BY rowid LIMIT ?",
        [*params, limit],
    )
    return [key_from_row(r) for r in rows]


async def revoke_key(store: AccountStore, key_id: str, *, actor: str) -> ApiKey:
    key = await get_key(store, key_id)
    async with store.writing() as conn:
        await conn.execute(
            "UPDATE api_keys SET revoked = 1, updated = ? WHERE id = ?", (store.now(), key_id)
        )
        await audit.append(
            conn,
            ts=store.clock(),
            actor=actor,
            action="key.revoke",
            target=key_id,
            user_id=key.spec.user_id,
        )
    return replace(key, revoked=True)


async def rotate_key(store: AccountStore, key_id: str, *, actor: str) -> IssuedKey:
    key = await get_key(store, key_id)
    if key.revoked:
        raise InvalidRequest(f"key {key_id} is revoked", code="key_revoked")
    secret = new_secret()
    async with store.writing() as conn:
        await conn.execute(
            "UPDATE api_keys SET digest = ?, prefix = ?, updated = ? WHERE id = ?",
            (key_digest(secret), secret[:DISPLAY_CHARS], store.now(), key_id),
        )
        await audit.append(
            conn,
            ts=store.clock(),
            actor=actor,
            action="key.rotate",
            target=key_id,
            user_id=key.spec.user_id,
        )
    return IssuedKey(await get_key(store, key_id), secret)


async def key_entries(store: AccountStore) -> list[KeyEntry]:
    """Every key, revoked ones included (so they are refused by name, not as unknown)."""
    columns = ", ".join(f"k.{c.strip()}" for c in KEY_COLUMNS.split(","))
    rows = await store.read(
        f"SELECT k.digest, u.tier, u.status, {columns} "
        "FROM api_keys k LEFT JOIN users u ON u.id = k.user_id"
    )
    return [KeyEntry(str(r[0]), key_from_row(r[3:]), r[1], r[2]) for r in rows]


async def delete_dead_keys(store: AccountStore, *, before: float, limit: int) -> int:
    """Delete up to ``limit`` keys revoked (``updated`` is the revocation) or expired before
    ``before``: a key is account data, kept while it works plus the closure grace. Each
    deletion is audited (actor ``retention``); records keep the key's id, which is random."""
    rows = await store.read(
        "SELECT id, user_id FROM api_keys WHERE (revoked = 1 AND updated < ?1) "
        "OR (expires_at IS NOT NULL AND expires_at < ?1) ORDER BY rowid LIMIT ?2",
        (before, limit),
    )
    if not rows:  # nothing to do: no write, no accounts-version bump
        return 0
    async with store.writing() as conn:
        for key_id, user_id in rows:
            await conn.execute("DELETE FROM api_keys WHERE id = ?", (key_id,))
            if user_id is None:  # the key was its own subject: its choices go with it
                await conn.execute("DELETE FROM preferences WHERE subject = ?", (key_id,))
            await audit.append(
                conn,
                ts=store.clock(),
                actor="retention",
                action="key.delete",
                target=str(key_id),
                user_id=user_id,
                detail={"reason": "revoked or expired longer than retention.closed_accounts"},
            )
    return len(rows)
