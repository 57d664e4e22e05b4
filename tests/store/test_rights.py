"""Export and erase across tables: exactly one user's data out; after erase, nothing personal
left on disk, and billing totals unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nitroproxy.core.errors import NotFound
from nitroproxy.security.crypto import ENV_VAR, generate_key
from nitroproxy.store import keys, users
from nitroproxy.store.accounts import AccountStore
from nitroproxy.store.billing import read_statements
from nitroproxy.store.keys import KeySpec
from nitroproxy.store.rights import (
    EXPORT_FORMAT,
    erase_user,
    erased_usage_step,
    export_user,
)
from nitroproxy.store.usage import insert_many, query_usage, roll_up
from tests.store.test_usage import DAY, MAR10, make_record

ANN = {"name": "Annabel Canary-Lee", "email": "annabel.canary@example.org"}
BOB = {"name": "Bob Otherperson", "email": "bob.other@example.net"}


def raw_bytes(db: Path) -> bytes:
    out = db.read_bytes()
    wal = Path(f"{db}-wal")
    return out + (wal.read_bytes() if wal.exists() else b"")


def strings(value: Any) -> set[str]:
    """Every string anywhere in a JSON value, keys included."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set(value) | {s for v in value.values() for s in strings(v)}
    if isinstance(value, list):
        return {s for v in value for s in strings(v)}
    return set()


@pytest.fixture
async def world(tmp_path: Path):
    """Two users, each with two keys, raw records on two days, and one rolled-up day."""
    db = tmp_path / "np.db"
    store = await AccountStore.open(db, env={ENV_VAR: generate_key()}, clock=lambda: MAR10)
    people: dict[str, Any] = {}
    records = []
    for tag, pii in (("ann", ANN), ("bob", BOB)):
        user = await users.create_user(store, actor="admin", **pii)
        owned = [
            (
                await keys.create_key(
                    store, KeySpec(name=f"{tag}-{i}", user_id=user.id), actor="admin"
                )
            ).key
            for i in range(2)
        ]
        await users.update_user(store, user.id, actor="admin", tier="default")
        people[tag] = {"user": user, "keys": owned}
        for n in range(6):
            key = owned[n % 2]
            records.append(
                make_record(
                    len(records),
                    ts=MAR10 + (n // 3) * DAY + n,  # days 0 and 1
                    key_id=key.id,
                    user_id=user.id,
                    client_ip="203.0.113.0",
                    user_agent=f"{tag}-agent/1.0",
                    cost_nanos=1000 + n,
                )
            )
    await insert_many(store.conn, records)
    await roll_up(store.conn, before=MAR10 + DAY, limit=100)  # day 0 becomes aggregates
    yield store, db, people
    await store.close()


async def test_export_holds_exactly_the_users_data(world):
    store, _db, people = world
    ann, bob = people["ann"], people["bob"]
    doc = await export_user(store, ann["user"].id, actor="admin:test")
    assert doc["format"] == EXPORT_FORMAT == "nitroproxy.export.v2"
    assert doc["preferences"] == {"analytics": True, "cache": True}
    # Day 0 was rolled up: one billing line per key (same model), three requests in all.
    assert {line["key_id"] for line in doc["billing_lines"]} == {k.id for k in ann["keys"]}
    assert sum(line["requests"] for line in doc["billing_lines"]) == 3
    assert doc["user"]["name"] == ANN["name"] and doc["user"]["email"] == ANN["email"]
    assert [k["id"] for k in doc["keys"]] == [k.id for k in ann["keys"]]
    assert len(doc["usage_records"]) == 3  # day 1; day 0 was rolled up
    assert {r["user_id"] for r in doc["usage_records"]} == {ann["user"].id}
    assert {a["user_id"] for a in doc["daily_aggregates"]} == {ann["user"].id}
    assert sum(a["requests"] for a in doc["daily_aggregates"]) == 3
    assert [e["action"] for e in doc["audit"]] == [
        "user.create",
        "key.create",
        "key.create",
        "user.update",
    ]
    found = strings(doc)
    for other in (bob["user"].id, *(k.id for k in bob["keys"]), *BOB.values(), "bob-agent/1.0"):
        assert other not in found
    assert "digest" not in json.dumps(doc)  # key metadata never includes hashes or secrets
    [noted] = await store.audit_entries(action="user.export")  # the export itself is audited
    assert (noted.actor, noted.target) == ("admin:test", ann["user"].id)


async def test_erase_leaves_nothing_personal_on_disk_and_keeps_billing_totals(world):
    store, db, people = world
    ann, bob = people["ann"], people["bob"]
    ann_id = ann["user"].id
    before = await query_usage(store.conn, start=None, end=None, group_by="day")
    sealed = [
        bytes(v)
        for row in await store.conn.execute_fetchall(
            "SELECT name, email FROM users WHERE id = ?", (ann_id,)
        )
        for v in row
    ]

    statements_before = await read_statements(store.conn, ann_id, user_ids=[ann_id])
    result = await erase_user(store, ann_id, actor="admin")

    assert (result.keys_deleted, result.usage_records_deleted) == (2, 3)
    assert result.daily_aggregates_pseudonymized == 2  # one per key on day 0
    assert result.wal_truncated
    raw = raw_bytes(db)
    for needle in (*ANN.values(), "annabel", "ann-agent/1.0"):
        assert needle.encode() not in raw
        assert needle.lower().encode() not in raw.lower()
    for blob in sealed:  # the ciphertexts are gone too, not just unreadable
        assert blob not in raw
    assert BOB["email"] not in raw.decode("latin-1")  # (sealed, so absent anyway)

    after = await query_usage(store.conn, start=None, end=None, group_by="day")
    assert after == before  # billing totals survive under the pseudonym
    by_user = {
        r.group: r for r in await query_usage(store.conn, start=None, end=None, group_by="user")
    }
    assert ann_id not in by_user and bob["user"].id in by_user
    [alias] = [g for g in by_user if g.startswith("erased-")]
    assert by_user[alias].requests == 6  # raw records were rolled up before deletion
    # Ann's two keys collapse into the pseudonym: one row per day, model and provider.
    rows = await store.conn.execute_fetchall(
        "SELECT day, requests FROM usage_daily WHERE user_id = ? ORDER BY day", (alias,)
    )
    assert [tuple(r) for r in rows] == [("2024-03-10", 3), ("2024-03-11", 3)]
    by_key = await query_usage(store.conn, start=None, end=None, group_by="key")
    assert not {k.id for k in ann["keys"]} & {r.group for r in by_key}

    user = await users.get_user(store, ann_id)
    assert (user.name, user.email, user.status) == (None, None, "erased")
    assert await keys.list_keys(store, user_id=ann_id) == []
    assert await users.find_user_by_email(store, ANN["email"]) is None
    [entry] = await store.audit_entries(action="user.erase")
    assert (entry.target, entry.actor) == (ann_id, "admin")
    # Billing lines stay under the pseudonym the erase returned and recorded: statements are
    # the same under it, and none remain under Ann's id or keys.
    bill = result.billing_pseudonym
    assert bill.startswith("erased-") and bill != alias
    assert entry.detail["billing_pseudonym"] == bill
    assert result.billing_lines_pseudonymized == 2
    after_statements = await read_statements(store.conn, bill, user_ids=[bill])
    assert [(s.period, s.lines, s.total) for s in after_statements] == [
        (s.period, s.lines, s.total) for s in statements_before
    ]
    assert statements_before[0].total.requests == 6
    assert await read_statements(store.conn, ann_id, user_ids=[ann_id]) == []
    owned = await store.conn.execute_fetchall(
        "SELECT COUNT(*) FROM billing_lines WHERE user_id = ? OR key_id IN (?, ?)",
        (ann_id, *(k.id for k in ann["keys"])),
    )
    assert next(iter(owned))[0] == 0
    bob_now = await users.get_user(store, bob["user"].id)
    assert (
        bob_now.email == BOB["email"] and len(await keys.list_keys(store, user_id=bob_now.id)) == 2
    )

    doc = await export_user(store, ann_id, actor="admin")
    assert doc["keys"] == doc["usage_records"] == doc["daily_aggregates"] == []
    assert doc["billing_lines"] == []
    assert doc["user"]["status"] == "erased"


async def test_erase_is_idempotent_and_the_sweeper_step_removes_stragglers(world):
    store, _db, people = world
    ann = people["ann"]
    first = await erase_user(store, ann["user"].id, actor="cli")
    bill = first.billing_pseudonym
    before = await read_statements(store.conn, bill, user_ids=[bill])
    late = make_record(99, key_id=ann["keys"][0].id, user_id=ann["user"].id, cost_nanos=777)
    await insert_many(store.conn, [late])
    assert await erased_usage_step(store.conn, MAR10, 100) == 1
    assert await erased_usage_step(store.conn, MAR10, 100) == 0
    # The straggler's cost is not lost: it joined the billing lines under the pseudonym.
    after = await read_statements(store.conn, bill, user_ids=[bill])
    assert after[0].total.cost_nanos == before[0].total.cost_nanos + 777
    assert after[0].total.requests == before[0].total.requests + 1
    again = await erase_user(store, ann["user"].id, actor="cli")
    assert (again.keys_deleted, again.usage_records_deleted) == (0, 0)
    with pytest.raises(NotFound):
        await erase_user(store, "usr_nobody", actor="cli")
