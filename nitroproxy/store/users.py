"""Users: profile (name and email sealed with the data key, bound to their row), tier and
status (``active``, ``suspended``: keys refused, data kept; ``erased``: see ``rights.py``).
A closed account is suspended with ``closed_at`` set; the sweeper erases it after a grace.

An email is found through its HMAC blind index, computed under every data key so lookups
work during a key rotation. Audit entries name the fields changed, never their values.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from nitroproxy.core.errors import InvalidRequest, NotFound
from nitroproxy.security.crypto import ENV_VAR
from nitroproxy.store import audit
from nitroproxy.store.accounts import AccountStore
from nitroproxy.store.datakey import (
    EMAIL_PURPOSE,
    ensure_check_value,
    normalize_email,
    open_sealed,
)

__all__ = [
    "KEEP",
    "USER_COLUMNS",
    "User",
    "close_user",
    "create_user",
    "find_user_by_email",
    "get_user",
    "list_users",
    "update_user",
    "user_from_row",
]

# The privacy choices come from ``preferences`` (no row: both allowed); correlated
# subqueries, so every ``SELECT {USER_COLUMNS} FROM users ...`` reads them too.
USER_COLUMNS = (
    "id, name, email, tier, status, created, updated, closed_at, "
    "COALESCE((SELECT p.analytics FROM preferences p WHERE p.subject = users.id), 1), "
    "COALESCE((SELECT p.cache FROM preferences p WHERE p.subject = users.id), 1)"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class _Keep:
    """Marks a field an update leaves as it is (``None`` would clear it)."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str | None
    email: str | None
    tier: str
    status: str
    created: int
    updated: int
    closed_at: int | None = None
    """When the account was closed (it is erased ``retention.closed_accounts`` later)."""
    analytics: bool = True
    """False: the user objects to analytics (``store.preferences``)."""
    cache: bool = True
    """False: the user opted out of the response cache."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "tier": self.tier,
            "status": self.status,
            "created": self.created,
            "updated": self.updated,
            "closed_at": self.closed_at,
            "analytics": self.analytics,
            "cache": self.cache,
        }


def user_from_row(store: AccountStore, row: Any) -> User:
    user_id = str(row[0])
    return User(
        id=user_id,
        name=open_sealed(store.keyring, row[1], context=f"users.name:{user_id}"),
        email=open_sealed(store.keyring, row[2], context=f"users.email:{user_id}"),
        tier=str(row[3]),
        status=str(row[4]),
        created=int(row[5]),
        updated=int(row[6]),
        closed_at=None if row[7] is None else int(row[7]),
        analytics=bool(row[8]),
        cache=bool(row[9]),
    )


async def create_user(
    store: AccountStore,
    *,
    actor: str,
    name: str | None = None,
    email: str | None = None,
    tier: str = "default",
) -> User:
    store.check_tier(tier)
    user_id = "usr_" + secrets.token_hex(12)
    now = store.now()
    async with store.writing() as conn:
        await conn.execute(
            "INSERT INTO users (id, tier, status, created, updated) VALUES (?, ?, 'active', ?, ?)",
            (user_id, tier, now, now),
        )
        fields = await _write_pii(store, user_id, name=name, email=email)
        await audit.append(
            conn,
            ts=store.clock(),
            actor=actor,
            action="user.create",
            target=user_id,
            user_id=user_id,
            detail={"tier": tier, "fields": fields},
        )
    return await get_user(store, user_id)


async def get_user(store: AccountStore, user_id: str) -> User:
    rows = await store.read(f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,))
    if not rows:
        raise NotFound(f"no user with id {user_id!r}", code="user_not_found")
    return user_from_row(store, rows[0])


async def find_user_by_email(store: AccountStore, email: str) -> User | None:
    found = await list_users(store, email=email, limit=1)
    return found[0] if found else None


async def list_users(
    store: AccountStore,
    *,
    status: str | None = None,
    email: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[User]:
    """Oldest first; ``after`` is the last id of the previous page."""
    clauses, params = ["1"], list[Any]()
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    if email is not None:
        indexes = _email_indexes(store, email)
        if not indexes:
            return []
        clauses.append(f"email_index IN ({', '.join('?' * len(indexes))})")
        params.extend(indexes)
    if after is not None:
        clauses.append("rowid > COALESCE((SELECT rowid FROM users WHERE id = ?), -1)")
        params.append(after)
    rows = await store.read(
        f"SELECT {USER_COLUMNS} FROM users WHERE {' AND '.join(clauses)} ORDER BY rowid LIMIT ?",
        [*params, limit],
    )
    return [user_from_row(store, r) for r in rows]


async def update_user(
    store: AccountStore,
    user_id: str,
    *,
    actor: str,
    name: str | None = KEEP,
    email: str | None = KEEP,
    tier: str | None = None,
    status: str | None = None,
) -> User:
    """Rectify (name, email; ``None`` clears), re-tier, suspend or reactivate."""
    if tier is not None:
        store.check_tier(tier)
    if status not in (None, "active", "suspended"):
        raise InvalidRequest("status must be 'active' or 'suspended'", param="status")
    pii = {k: v for k, v in (("name", name), ("email", email)) if v is not KEEP}
    changes = {k: v for k, v in (("tier", tier), ("status", status)) if v is not None}
    action = {"suspended": "user.suspend", "active": "user.activate"}.get(
        status or "", "user.update"
    )
    async with store.writing() as conn:
        # Checked inside the transaction: an update racing an erase must not write back.
        if await store.user_status(user_id) == "erased":
            raise InvalidRequest(f"user {user_id} has been erased", code="user_erased")
        fields = await _write_pii(store, user_id, **pii)
        for column, value in changes.items():
            await conn.execute(f"UPDATE users SET {column} = ? WHERE id = ?", (value, user_id))
        if status == "active":  # reopening a closed account stops its erasure
            await conn.execute("UPDATE users SET closed_at = NULL WHERE id = ?", (user_id,))
        await conn.execute("UPDATE users SET updated = ? WHERE id = ?", (store.now(), user_id))
        await audit.append(
            conn,
            ts=store.clock(),
            actor=actor,
            action=action,
            target=user_id,
            user_id=user_id,
            detail={"fields": sorted([*fields, *changes]), **changes},
        )
    return await get_user(store, user_id)


async def close_user(store: AccountStore, user_id: str, *, actor: str) -> User:
    """Close the account: its keys stop working at once (as when suspended) and the
    retention sweeper erases it ``retention.closed_accounts`` after this moment, unless it
    is reactivated first. Closing a closed account keeps the first closure time."""
    async with store.writing() as conn:
        if await store.user_status(user_id) == "erased":
            raise InvalidRequest(f"user {user_id} has been erased", code="user_erased")
        now = store.now()
        await conn.execute(
            "UPDATE users SET status = 'suspended', closed_at = COALESCE(closed_at, ?), "
            "updated = ? WHERE id = ?",
            (now, now, user_id),
        )
        await audit.append(
            conn,
            ts=store.clock(),
            actor=actor,
            action="user.close",
            target=user_id,
            user_id=user_id,
        )
    return await get_user(store, user_id)


def _email_indexes(store: AccountStore, email: str) -> list[str]:
    if store.keyring is None:
        return []
    return store.keyring.blind_indexes(normalize_email(email), purpose=EMAIL_PURPOSE)


async def _write_pii(store: AccountStore, user_id: str, **values: str | None) -> list[str]:
    """Seal and store ``name`` / ``email`` inside the caller's transaction; returns the field
    names written (for the audit entry, which never holds the values)."""
    if not values:
        return []
    keyring, conn = store.keyring, store.conn
    if keyring is None and any(v is not None for v in values.values()):
        raise InvalidRequest(
            f"storing a user's name or email needs a data key: set {ENV_VAR} "
            "(32 random bytes in base64, e.g. `openssl rand -base64 32`)",
            param=next(k for k, v in values.items() if v is not None),
            code="data_key_missing",
        )
    for column, value in values.items():
        index: str | None = None
        sealed: bytes | None = None
        if value is not None:
            assert keyring is not None
            if column == "email":
                index = await _claim_email(store, user_id, value)
            sealed = keyring.seal_text(value, context=f"users.{column}:{user_id}")
        await conn.execute(f"UPDATE users SET {column} = ? WHERE id = ?", (sealed, user_id))
        if column == "email":
            await conn.execute("UPDATE users SET email_index = ? WHERE id = ?", (index, user_id))
    if keyring is not None:
        await ensure_check_value(conn, keyring)
    return sorted(values)


async def _claim_email(store: AccountStore, user_id: str, email: str) -> str:
    if not _EMAIL.match(email) or len(email) > 254:
        raise InvalidRequest("not an email address", param="email", code="invalid_email")
    indexes = _email_indexes(store, email)
    rows = await store.conn.execute_fetchall(
        f"SELECT id FROM users WHERE email_index IN ({', '.join('?' * len(indexes))}) AND id != ?",
        [*indexes, user_id],
    )
    if rows:
        raise InvalidRequest("another user has this email", param="email", code="email_taken")
    return indexes[0]
