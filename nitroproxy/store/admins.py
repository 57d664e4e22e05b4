"""Named admin keys kept in the database (``nitroproxy admins ...``), beside those named in
the configuration (``auth.admin_key``, ``auth.admin_keys``).

Each admin key has a name, and that name is the actor of every audit entry it causes
(``admin:<name>``), so several people can hold the admin API and each action says who.
Only the SHA-256 of a secret is stored. A revoked key keeps its row, so its name is never
reissued and old audit entries keep meaning one person.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from nitroproxy.core.errors import InvalidRequest, NotFound
from nitroproxy.security.crypto import key_digest
from nitroproxy.store import audit
from nitroproxy.store.accounts import AccountStore
from nitroproxy.store.keys import DISPLAY_CHARS, new_secret

__all__ = [
    "AdminKey",
    "IssuedAdminKey",
    "admin_entries",
    "create_admin",
    "list_admins",
    "revoke_admin",
]

NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


@dataclass(frozen=True, slots=True)
class AdminKey:
    name: str
    prefix: str
    revoked: bool
    created: int
    updated: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "prefix": self.prefix,
            "revoked": self.revoked,
            "created": self.created,
            "updated": self.updated,
        }


@dataclass(frozen=True, slots=True)
class IssuedAdminKey:
    key: AdminKey
    secret: str = field(repr=False)


def _row(r: Any) -> AdminKey:
    return AdminKey(str(r[0]), str(r[1]), bool(r[2]), int(r[3]), int(r[4]))


async def create_admin(store: AccountStore, name: str, *, actor: str) -> IssuedAdminKey:
    """A new admin key named ``name``; its secret is returned this once."""
    if not NAME.match(name) or name == "admin":
        raise InvalidRequest(
            "an admin name is 1-64 letters, digits, '.', '_', '@' or '-', and not 'admin'",
            param="name",
        )
    secret = new_secret()
    now = store.now()
    async with store.writing() as conn:
        if await conn.execute_fetchall("SELECT 1 FROM admin_keys WHERE name = ?", (name,)):
            raise InvalidRequest(f"admin {name!r} exists (names are never reused)", param="name")
        await conn.execute(
            "INSERT INTO admin_keys (name, digest, prefix, created, updated) "
            "VALUES (?, ?, ?, ?, ?)",
            (name, key_digest(secret), secret[:DISPLAY_CHARS], now, now),
        )
        await audit.append(
            conn, ts=store.clock(), actor=actor, action="admin.create", target=f"admin:{name}"
        )
    return IssuedAdminKey(AdminKey(name, secret[:DISPLAY_CHARS], False, now, now), secret)


async def revoke_admin(store: AccountStore, name: str, *, actor: str) -> AdminKey:
    async with store.writing() as conn:
        if not await conn.execute_fetchall("SELECT 1 FROM admin_keys WHERE name = ?", (name,)):
            raise NotFound(f"no admin key named {name!r}", code="admin_not_found")
        await conn.execute(
            "UPDATE admin_keys SET revoked = 1, updated = ? WHERE name = ?", (store.now(), name)
        )
        await audit.append(
            conn, ts=store.clock(), actor=actor, action="admin.revoke", target=f"admin:{name}"
        )
    found = [a for a in await list_admins(store) if a.name == name]
    return found[0]


async def list_admins(store: AccountStore) -> list[AdminKey]:
    rows = await store.read(
        "SELECT name, prefix, revoked, created, updated FROM admin_keys ORDER BY rowid"
    )
    return [_row(r) for r in rows]


async def admin_entries(store: AccountStore) -> list[tuple[str, str]]:
    """(digest, name) of every admin key that is not revoked, for the authenticator."""
    rows = await store.read("SELECT digest, name FROM admin_keys WHERE revoked = 0")
    return [(str(r[0]), str(r[1])) for r in rows]
