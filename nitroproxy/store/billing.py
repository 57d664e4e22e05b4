"""Billing lines and the statements read from them.

What a user owes lives in two places at any moment: raw ``usage`` records not yet rolled up
(the last ``retention.requests``) and ``billing_lines`` (per UTC day, user, key and model,
kept ``retention.billing``). The roll-up moves whole days from one to the other in one
transaction, so a statement, which adds both, is the same before and after a sweep. After an
erase, the user's lines carry the billing pseudonym the erase returned (and recorded in its
audit entry), so statements stay available under it for the billing window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosqlite

from nitroproxy.core import statements
from nitroproxy.core.errors import NotFound
from nitroproxy.core.statements import Statement
from nitroproxy.store.accounts import AccountStore
from nitroproxy.store.usage import DAY_SQL, TOKEN_COLUMNS

__all__ = [
    "BILLING_COLUMNS",
    "billing_lines",
    "has_billing",
    "key_statements",
    "pseudonyms_of",
    "read_statements",
    "user_statements",
]

BILLING_COLUMNS: tuple[str, ...] = ("day", "user_id", "key_id", "model", "requests", *TOKEN_COLUMNS)
_COUNTS = ("requests", *TOKEN_COLUMNS)


def _where(
    column_ts: str, user_ids: Sequence[str] | None, key_id: str | None, bounds: Any
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if user_ids is not None:
        clauses.append(f"user_id IN ({', '.join('?' * len(user_ids))})")
        params.extend(user_ids)
    if key_id is not None:
        clauses.append("key_id = ?")
        params.append(key_id)
    if bounds is not None:
        clauses.append(f"{column_ts} >= ? AND {column_ts} < ?")
        params.extend(bounds)
    return " AND ".join(clauses) or "1", params


async def read_statements(
    conn: aiosqlite.Connection,
    subject: str,
    *,
    user_ids: Sequence[str] | None,
    key_id: str | None = None,
    period: str | None = None,
) -> list[Statement]:
    """Monthly statements of the records of ``user_ids`` (and/or of one key), raw records
    and billing lines combined; one read statement. ``period`` (``YYYY-MM``) picks one
    month. ``subject`` labels the statements."""
    if user_ids is None and key_id is None:
        raise ValueError("statements need a user or a key")
    if user_ids is not None and not user_ids:
        return []
    raw_bounds = day_bounds = None
    if period is not None:
        raw_bounds = statements.month_bounds(period)
        day_bounds = statements.period_days(period)
    raw_where, raw_params = _where("ts", user_ids, key_id, raw_bounds)
    line_where, line_params = _where("day", user_ids, key_id, day_bounds)
    sums = ", ".join(f"SUM({c})" for c in _COUNTS)
    sql = f"""
    SELECT period, model, {sums} FROM (
        SELECT substr({DAY_SQL}, 1, 7) AS period, model, COUNT(*) AS requests,
            {", ".join(f"SUM({c}) AS {c}" for c in TOKEN_COLUMNS)}
        FROM usage WHERE {raw_where} GROUP BY 1, 2
        UNION ALL
        SELECT substr(day, 1, 7), model, {sums}
        FROM billing_lines WHERE {line_where} GROUP BY 1, 2
    ) GROUP BY period, model ORDER BY period, model
    """
    rows = await conn.execute_fetchall(sql, [*raw_params, *line_params])
    return statements.build(subject, rows)


async def billing_lines(
    conn: aiosqlite.Connection, *, user_id: str | None = None, key_id: str | None = None
) -> list[dict[str, Any]]:
    """A user's (or a key's) billing lines, oldest first, for exports."""
    where, params = _where("day", None if user_id is None else [user_id], key_id, None)
    rows = await conn.execute_fetchall(
        f"SELECT {', '.join(BILLING_COLUMNS)} FROM billing_lines WHERE {where} "
        "ORDER BY day, model, rowid",
        params,
    )
    return [dict(zip(BILLING_COLUMNS, r, strict=True)) for r in rows]


async def has_billing(conn: aiosqlite.Connection, user_id: str) -> bool:
    """True if raw records or billing lines name ``user_id`` (a config user, a pseudonym)."""
    rows = await conn.execute_fetchall(
        "SELECT EXISTS (SELECT 1 FROM billing_lines WHERE user_id = ?1) "
        "OR EXISTS (SELECT 1 FROM usage WHERE user_id = ?1)",
        (user_id,),
    )
    return bool(next(iter(rows))[0])


async def pseudonyms_of(conn: aiosqlite.Connection, user_id: str) -> list[str]:
    """The billing pseudonyms an erased user's lines were moved to, from the erase entries
    in the audit log (so this link ends when ``retention.audit`` deletes them)."""
    rows = await conn.execute_fetchall(
        "SELECT json_extract(detail, '$.billing_pseudonym') FROM audit "
        "WHERE user_id = ? AND action = 'user.erase' ORDER BY seq",
        (user_id,),
    )
    return list(dict.fromkeys(str(r[0]) for r in rows if r[0] is not None))


async def user_statements(
    store: AccountStore, user_id: str, *, actor: str, period: str | None = None
) -> list[Statement]:
    """A user's statements, audited (``user.statements`` by ``actor``). ``user_id`` may be a
    user of the store, an erased one (its lines are found under its billing pseudonyms
    while the audit log names them), a billing pseudonym, or a config file's user."""
    async with store.lock:
        conn = store.conn
        rows = list(
            await conn.execute_fetchall("SELECT status FROM users WHERE id = ?", (user_id,))
        )
        if rows and rows[0][0] == "erased":
            ids = [user_id, *await pseudonyms_of(conn, user_id)]
        elif rows or await has_billing(conn, user_id):
            ids = [user_id]
        else:
            raise NotFound(f"no user or billing pseudonym {user_id!r}", code="user_not_found")
        found = await read_statements(conn, user_id, user_ids=ids, period=period)
    await store.note(
        actor=actor,
        action="user.statements",
        target=user_id,
        user_id=user_id,
        detail={"period": period, "statements": len(found)},
    )
    return found


async def key_statements(
    store: AccountStore, key_id: str, *, actor: str, period: str | None = None
) -> list[Statement]:
    """The statements of one key's own usage (``/v1/me/statements``), audited."""
    async with store.lock:
        found = await read_statements(
            store.conn, key_id, user_ids=None, key_id=key_id, period=period
        )
    await store.note(
        actor=actor,
        action="key.statements",
        target=key_id,
        detail={"period": period, "statements": len(found)},
    )
    return found
