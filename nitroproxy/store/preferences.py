"""People's privacy choices: objection to analytics and opt-out of the response cache.

A *subject* is whoever the records are about: a key's user, or, for a key that belongs to
no user, the key itself (its id). Usage records carry both ids, so "the subject of a record"
is ``COALESCE(user_id, key_id)`` (:data:`SUBJECT_SQL`), and that is how the roll-up and the
public statistics leave objectors out.

``analytics = false``: the subject's records are left out of public statistics and of every
aggregate except billing (their analytics aggregates are deleted when they object, and their
raw records roll up into billing lines only). ``cache = false``: nothing of theirs is read
from or written to the response cache, whatever a key or a request says. Both default to
true (no row). Changes are audited (the choice, never anything else).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiosqlite

from nitroproxy.core.errors import InvalidRequest
from nitroproxy.store import audit

if TYPE_CHECKING:  # store.usage imports this module's SQL; keep it light
    from nitroproxy.store.accounts import AccountStore

__all__ = [
    "ANALYTICS_OBJECTORS_SQL",
    "SUBJECT_SQL",
    "Preferences",
    "cache_refusers",
    "get_preferences",
    "read_preferences",
    "set_preferences",
]

SUBJECT_SQL = "COALESCE(user_id, key_id, '')"
"""A usage row's subject; '' (anonymous callers) never objects."""
ANALYTICS_OBJECTORS_SQL = "SELECT subject FROM preferences WHERE analytics = 0"


@dataclass(frozen=True, slots=True)
class Preferences:
    subject: str
    analytics: bool = True
    cache: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"analytics": self.analytics, "cache": self.cache}


async def read_preferences(conn: aiosqlite.Connection, subject: str) -> Preferences:
    """One statement: safe on any connection, inside a caller's transaction too."""
    rows = list(
        await conn.execute_fetchall(
            "SELECT analytics, cache FROM preferences WHERE subject = ?", (subject,)
        )
    )
    if not rows:
        return Preferences(subject)
    return Preferences(subject, analytics=bool(rows[0][0]), cache=bool(rows[0][1]))


async def get_preferences(store: AccountStore, subject: str) -> Preferences:
    async with store.lock:
        return await read_preferences(store.conn, subject)


async def set_preferences(
    store: AccountStore,
    subject: str,
    *,
    actor: str,
    analytics: bool | None = None,
    cache: bool | None = None,
    require_user: bool = False,
) -> Preferences:
    """Change the given choices (None keeps one), with the audit entry, in one transaction.
    Objecting to analytics deletes the subject's analytics aggregates in the same
    transaction; billing lines stay (a legal obligation). ``require_user``: the subject
    must be a user of the store that is not erased (checked inside the transaction)."""
    async with store.writing() as conn:
        if require_user and await store.user_status(subject) == "erased":
            raise InvalidRequest(f"user {subject} has been erased", code="user_erased")
        before = await read_preferences(conn, subject)
        after = Preferences(
            subject,
            analytics=before.analytics if analytics is None else analytics,
            cache=before.cache if cache is None else cache,
        )
        await conn.execute(
            "INSERT INTO preferences (subject, analytics, cache, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (subject) DO UPDATE SET analytics = excluded.analytics, "
            "cache = excluded.cache, updated = excluded.updated",
            (subject, int(after.analytics), int(after.cache), store.now()),
        )
        removed = 0
        if not after.analytics:
            async with conn.execute(
                "DELETE FROM usage_daily WHERE user_id = ?1 OR (user_id = '' AND key_id = ?1)",
                (subject,),
            ) as cursor:
                removed = max(cursor.rowcount, 0)
        await audit.append(
            conn,
            ts=store.clock(),
            actor=actor,
            action="preferences.update",
            target=subject,
            user_id=subject,
            detail={**after.to_json(), "analytics_aggregates_deleted": removed},
        )
    return after


async def cache_refusers(store: AccountStore) -> frozenset[str]:
    """Every subject that opted out of the response cache."""
    rows = await store.read("SELECT subject FROM preferences WHERE cache = 0")
    return frozenset(str(r[0]) for r in rows)
