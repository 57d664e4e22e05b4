"""Data rights for one end user of the installation's clients: export their records, and
erase what identifies them.

An end user's records are also their account's billing history, so erasing does not delete
them: it removes the ``end_user`` value (a pseudonym or the value as sent) from every record,
leaving totals unchanged, in one transaction with its audit entry, then truncates the WAL so
no old page image keeps the value. Callers pass the value as recorded
(``core.end_users.EndUsers.recorded``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from nitroproxy.store import audit
from nitroproxy.store.accounts import AccountStore
from nitroproxy.store.rights import truncate_wal
from nitroproxy.store.usage import list_records

EXPORT_FORMAT = "nitroproxy.end_user_export.v1"
_NO_LIMIT = 2**62


async def export_end_user(store: AccountStore, recorded: str) -> dict[str, Any]:
    async with store.lock:
        records = await list_records(store.conn, end_user=recorded, limit=_NO_LIMIT)
    if store.remote_records is not None:  # records kept in PostgreSQL
        records = [*records, *await store.remote_records.records_of_end_user(recorded)]
    return {
        "format": EXPORT_FORMAT,
        "exported_at": store.clock(),
        "end_user": recorded,
        "usage_records": [asdict(r) for r in records],
    }


async def erase_end_user(store: AccountStore, recorded: str, *, actor: str) -> dict[str, Any]:
    async with store.writing() as conn:
        await conn.execute("PRAGMA secure_delete = ON")
        async with conn.execute(
            "UPDATE usage SET end_user = NULL WHERE end_user = ?", (recorded,)
        ) as cursor:
            records = cursor.rowcount
        await audit.append(
            conn,
            ts=store.clock(),
            actor=actor,
            action="end_user.erase",
            target=None,  # the value itself would keep what was just erased
            user_id=None,
            detail={"usage_records_cleared": records},
        )
    if store.remote_records is not None:  # records kept in PostgreSQL
        records += await store.remote_records.erase_end_user(recorded)
    return {"usage_records_cleared": records, "wal_truncated": await truncate_wal(store)}
