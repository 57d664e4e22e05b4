"""Every retention window, crossed with a controllable clock: one second before its boundary
the data is there, one second after it is gone (or rolled up), as ``/privacy`` promises."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nitroproxy.core.retention import RetentionPolicy
from nitroproxy.security.crypto import ENV_VAR, generate_key
from nitroproxy.store import keys, preferences, users
from nitroproxy.store.accounts import AccountStore
from nitroproxy.store.billing import read_statements, user_statements
from nitroproxy.store.keys import KeySpec
from nitroproxy.store.sweeper import RetentionSweeper
from nitroproxy.store.usage import insert_many
from tests.records import MAR10, make_record

DAY = 86_400.0
POLICY = RetentionPolicy()  # the promised defaults: 90 d, 730 d, 7 y, 30 d, 730 d


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    store: AccountStore
    sweeper: RetentionSweeper
    clock: Clock
    erased: list[str]

    async def count(self, sql: str, *params: object) -> int:
        rows = await self.store.read(sql, params)
        return int(rows[0][0])

    async def sweep_at(self, now: float) -> None:
        self.clock.now = now
        await self.sweeper.run_once()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = Clock(MAR10)
    db = tmp_path / "np.db"
    store = await AccountStore.open(db, env={ENV_VAR: generate_key()}, clock=clock)
    erased: list[str] = []

    async def on_erased(user_id: str) -> None:
        erased.append(user_id)

    sweeper = RetentionSweeper(db, POLICY, clock=clock, on_erased=on_erased)
    yield World(store, sweeper, clock, erased)
    await sweeper.close()
    await store.close()


async def test_raw_records_are_rolled_up_after_90_days(world: World) -> None:
    await insert_many(world.store.conn, [make_record(1, ts=MAR10 + 10 * 3600)])
    # The record's day ends at MAR10 + 1 day; 90 days later it is wholly outside the window.
    await world.sweep_at(MAR10 + 91 * DAY - 1)
    assert await world.count("SELECT COUNT(*) FROM usage") == 1
    await world.sweep_at(MAR10 + 91 * DAY)
    assert await world.count("SELECT COUNT(*) FROM usage") == 0
    assert await world.count("SELECT SUM(requests) FROM usage_daily") == 1
    assert await world.count("SELECT SUM(requests) FROM billing_lines") == 1


async def test_analytics_aggregates_go_after_two_years_and_billing_lines_after_seven(
    world: World,
) -> None:
    await insert_many(world.store.conn, [make_record(1, ts=MAR10 + 60, cost_nanos=42)])
    await world.sweep_at(MAR10 + 100 * DAY)  # rolled up into both
    daily = "SELECT COUNT(*) FROM usage_daily"
    lines = "SELECT COUNT(*) FROM billing_lines"
    await world.sweep_at(MAR10 + 731 * DAY - 1)
    assert (await world.count(daily), await world.count(lines)) == (1, 1)
    await world.sweep_at(MAR10 + 731 * DAY)  # the day is older than 730 days: analytics go
    assert (await world.count(daily), await world.count(lines)) == (0, 1)
    statements = await read_statements(world.store.conn, "user-a", user_ids=["user-a"])
    assert [(s.period, s.total.cost_nanos) for s in statements] == [("2024-03", 42)]
    await world.sweep_at(MAR10 + 2556 * DAY - 1)
    assert await world.count(lines) == 1
    await world.sweep_at(MAR10 + 2556 * DAY)  # seven years (2555 days) after the day ended
    assert await world.count(lines) == 0


async def test_a_closed_account_is_erased_after_the_grace_keeping_its_statements(
    world: World,
) -> None:
    store = world.store
    ann = await users.create_user(store, actor="admin:ann", name="Ann", email="ann@example.org")
    key = await keys.create_key(store, KeySpec(name="k", user_id=ann.id), actor="admin:ann")
    records = [
        make_record(n, ts=MAR10 + n * 3600, user_id=ann.id, key_id=key.key.id, cost_nanos=1000 + n)
        for n in range(5)
    ]
    await insert_many(store.conn, records)
    before = await read_statements(store.conn, ann.id, user_ids=[ann.id])
    world.clock.now = MAR10 + DAY
    closed = await users.close_user(store, ann.id, actor="admin:ann")
    assert (closed.status, closed.closed_at) == ("suspended", int(MAR10 + DAY))

    await world.sweep_at(MAR10 + 31 * DAY)  # exactly the grace: not yet
    assert (await users.get_user(store, ann.id)).status == "suspended"
    await world.sweep_at(MAR10 + 31 * DAY + 1)
    gone = await users.get_user(store, ann.id)
    assert (gone.status, gone.name, gone.email) == ("erased", None, None)
    assert world.erased == [ann.id]
    assert await keys.list_keys(store, user_id=ann.id) == []
    [entry] = await store.audit_entries(action="user.erase")
    assert entry.actor == "retention" and entry.target == ann.id
    # Raw records became billing lines under the pseudonym; the statements did not change.
    assert await world.count("SELECT COUNT(*) FROM usage WHERE user_id = ?", ann.id) == 0
    after = await user_statements(store, ann.id, actor="admin:ann")
    assert [(s.period, s.lines, s.total) for s in after] == [
        (s.period, s.lines, s.total) for s in before
    ]
    assert before[0].total.cost_nanos == sum(r.cost_nanos for r in records)


async def test_reopening_a_closed_account_stops_its_erasure(world: World) -> None:
    store = world.store
    bob = await users.create_user(store, actor="cli:op")
    await users.close_user(store, bob.id, actor="cli:op")
    reopened = await users.update_user(store, bob.id, actor="cli:op", status="active")
    assert reopened.closed_at is None
    await world.sweep_at(MAR10 + 365 * DAY)
    assert (await users.get_user(store, bob.id)).status == "active"


async def test_dead_keys_are_deleted_after_the_grace(world: World) -> None:
    store = world.store
    revoked = (await keys.create_key(store, KeySpec(name="old"), actor="admin:x")).key
    expiring = KeySpec(name="temp", expires_at=int(MAR10 + 10 * DAY))
    expired = (await keys.create_key(store, expiring, actor="admin:x")).key
    live = (await keys.create_key(store, KeySpec(name="live"), actor="admin:x")).key
    await keys.revoke_key(store, revoked.id, actor="admin:x")  # at MAR10

    await world.sweep_at(MAR10 + 30 * DAY)
    assert {k.id for k in await keys.list_keys(store)} == {revoked.id, expired.id, live.id}
    await world.sweep_at(MAR10 + 30 * DAY + 1)  # revoked 30 days ago: gone
    assert {k.id for k in await keys.list_keys(store)} == {expired.id, live.id}
    await world.sweep_at(MAR10 + 40 * DAY + 1)  # expired 30 days ago: gone
    assert {k.id for k in await keys.list_keys(store)} == {live.id}
    deleted = await store.audit_entries(action="key.delete")
    assert [(e.actor, e.target) for e in reversed(deleted)] == [
        ("retention", revoked.id),
        ("retention", expired.id),
    ]


async def test_audit_entries_are_deleted_after_their_window(world: World) -> None:
    store = world.store
    first = await users.create_user(store, actor="admin:a")
    world.clock.now = MAR10 + 100 * DAY
    await users.update_user(store, first.id, actor="admin:a", tier="default")
    await world.sweep_at(MAR10 + 730 * DAY)  # the first entry is exactly 730 days old
    assert len(await store.audit_entries()) == 2
    await world.sweep_at(MAR10 + 730 * DAY + 1)
    assert [e.action for e in await store.audit_entries()] == ["user.update"]
    await world.sweep_at(MAR10 + 830 * DAY + 1)
    assert await store.audit_entries() == []


async def test_an_objector_is_rolled_up_into_billing_only(world: World) -> None:
    store = world.store
    await preferences.set_preferences(store, "user-b", actor="key:k", analytics=False)
    await insert_many(
        store.conn,
        [make_record(1, ts=MAR10 + 60), make_record(2, ts=MAR10 + 120, user_id="user-b")],
    )
    await world.sweep_at(MAR10 + 91 * DAY)
    assert await world.count("SELECT COUNT(*) FROM usage_daily WHERE user_id = 'user-b'") == 0
    assert await world.count("SELECT COUNT(*) FROM usage_daily WHERE user_id = 'user-a'") == 1
    assert await world.count("SELECT SUM(requests) FROM billing_lines") == 2


async def test_objecting_deletes_existing_analytics_aggregates_but_not_billing(
    world: World,
) -> None:
    store = world.store
    await insert_many(store.conn, [make_record(1, ts=MAR10 + 60, user_id="user-c")])
    await world.sweep_at(MAR10 + 91 * DAY)
    assert await world.count("SELECT COUNT(*) FROM usage_daily WHERE user_id = 'user-c'") == 1
    choice = await preferences.set_preferences(store, "user-c", actor="key:k", analytics=False)
    assert choice.analytics is False and choice.cache is True
    assert await world.count("SELECT COUNT(*) FROM usage_daily WHERE user_id = 'user-c'") == 0
    assert await world.count("SELECT COUNT(*) FROM billing_lines WHERE user_id = 'user-c'") == 1
    [entry] = await store.audit_entries(action="preferences.update")
    assert entry.detail["analytics_aggregates_deleted"] == 1
