"""The admin audit log: who did what to which user or key, and when.

Entries are append-only and hold ids, action names, field names and settings (tiers, limits,
statuses), never a secret or personal data: an entry must be safe to keep after its user is
erased. Ids are random and carry no personal data. The actor is a name: ``admin:<name>`` for
an admin key, ``cli:<account>`` for the command line, ``key:<id>`` for a key holder acting
on itself, ``retention`` for the sweeper. Entries older than ``retention.audit`` are deleted
by the retention sweeper (:func:`delete_before`); that is the only deletion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiosqlite
import orjson

__all__ = ["AuditEntry", "append", "delete_before", "list_entries"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts: float
    actor: str
    action: str
    target: str | None
    user_id: str | None
    detail: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "user_id": self.user_id,
            "detail": dict(self.detail),
        }


async def append(
    conn: aiosqlite.Connection,
    *,
    ts: float,
    actor: str,
    action: str,
    target: str | None,
    user_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """One entry; call it inside the transaction of the change it describes."""
    await conn.execute(
        "INSERT INTO audit (ts, actor, action, target, user_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (ts, actor, action, target, user_id, orjson.dumps(dict(detail or {})).decode()),
    )


async def list_entries(
    conn: aiosqlite.Connection,
    *,
    target: str | None = None,
    user_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Newest first; ``before`` is a ``seq`` to page backwards from."""
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (
        ("target = ?", target),
        ("user_id = ?", user_id),
        ("actor = ?", actor),
        ("action = ?", action),
        ("seq < ?", before),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    where = " AND ".join(clauses) or "1"
    rows = await conn.execute_fetchall(
        "SELECT seq, ts, actor, action, target, user_id, detail FROM audit "
        f"WHERE {where} ORDER BY seq DESC LIMIT ?",
        [*params, limit],
    )
    return [
        AuditEntry(
            seq=int(r[0]),
            ts=float(r[1]),
            actor=str(r[2]),
            action=str(r[3]),
            target=r[4],
            user_id=r[5],
            detail=orjson.loads(r[6]),
        )
        for r in rows
    ]


async def delete_before(conn: aiosqlite.Connection, *, ts: float, limit: int) -> int:
    """Delete up to ``limit`` of the oldest entries with ``ts`` before ``ts``; one statement."""
    async with conn.execute(
        "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE ts < ? ORDER BY seq LIMIT ?)",
        (ts, limit),
    ) as cursor:
        return max(cursor.rowcount, 0)
