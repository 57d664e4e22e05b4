"""Users and keys in the store: sealed PII, hashed secrets, audit, data-key checks, rotation."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from nitroproxy.core.errors import InvalidRequest, NotFound
from nitroproxy.security.crypto import ENV_VAR, generate_key
from nitroproxy.store import keys, users
from nitroproxy.store.accounts import AccountStore
from nitroproxy.store.datakey import DataKeyError
from nitroproxy.store.keys import KeySpec

CANARY_EMAIL = "canary-7f3a9c@example.org"
CANARY_NAME = "Zebulon Canaryfield"


def raw_bytes(db: Path) -> bytes:
    """The database file and its WAL, as a reader of the disk would see them."""
    out = db.read_bytes()
    wal = Path(f"{db}-wal")
    if wal.exists():
        out += wal.read_bytes()
    return out


@pytest.fixture
def key() -> str:
    return generate_key()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "np.db"


async def open_store(db: Path, *keys: str, **kw) -> AccountStore:
    env = {ENV_VAR: ",".join(keys)} if keys else {}
    return await AccountStore.open(db, env=env, tiers=["pro"], models=["gpt-test"], **kw)


@pytest.fixture
async def store(db: Path, key: str):
    s = await open_store(db, key)
    yield s
    await s.close()


async def test_name_and_email_are_sealed_and_email_lookup_still_works(store, db):
    user = await users.create_user(store, actor="admin", name=CANARY_NAME, email=CANARY_EMAIL)
    assert (user.name, user.email, user.status, user.tier) == (
        CANARY_NAME,
        CANARY_EMAIL,
        "active",
        "default",
    )
    raw = raw_bytes(db)
    assert CANARY_EMAIL.encode() not in raw
    assert CANARY_NAME.encode() not in raw
    assert b"canary-7f3a9c" not in raw
    found = await users.find_user_by_email(store, "  CANARY-7F3A9C@example.org ")
    assert found is not None and found.id == user.id
    assert await users.find_user_by_email(store, "someone-else@example.org") is None


async def test_ids_and_secrets_have_their_documented_shape(store, db):
    user = await users.create_user(store, actor="admin")
    issued = await keys.create_key(store, KeySpec(name="ci", user_id=user.id), actor="admin")
    assert re.fullmatch(r"usr_[0-9a-f]{24}", user.id)
    assert re.fullmatch(r"key_[0-9a-f]{24}", issued.key.id)
    assert re.fullmatch(r"np-[A-Za-z0-9_-]{43}", issued.secret)  # 32 random bytes
    assert issued.key.prefix == issued.secret[:10]
    assert "secret" not in repr(issued)
    raw = raw_bytes(db)
    assert issued.secret.encode() not in raw
    assert hashlib.sha256(issued.secret.encode()).hexdigest().encode() in raw
    entries = await keys.key_entries(store)
    assert [e.digest for e in entries] == [hashlib.sha256(issued.secret.encode()).hexdigest()]
    assert entries[0].user_tier == "default" and entries[0].user_status == "active"


async def test_without_a_data_key_users_work_but_pii_is_refused(db):
    store = await open_store(db)
    try:
        assert store.keyring is None
        bare = await users.create_user(store, actor="cli", tier="pro")
        assert bare.name is None and bare.tier == "pro"
        with pytest.raises(InvalidRequest) as err:
            await users.create_user(store, actor="cli", email="a@example.org")
        assert err.value.code == "data_key_missing" and err.value.param == "email"
        assert ENV_VAR in err.value.message
        with pytest.raises(InvalidRequest):
            await users.update_user(store, bare.id, actor="cli", name="Ann")
    finally:
        await store.close()


async def test_invalid_input_is_refused_with_the_parameter_named(store):
    user = await users.create_user(store, actor="admin", email="taken@example.org")
    cases = [
        (users.create_user(store, actor="admin", tier="platinum"), "tier"),
        (users.create_user(store, actor="admin", email="not an email"), "email"),
        (users.create_user(store, actor="admin", email="TAKEN@example.org"), "email"),
        (keys.create_key(store, KeySpec(name="k", models=("gpt-9",)), actor="admin"), "models"),
        (keys.create_key(store, KeySpec(name="k", user_id="usr_nobody"), actor="admin"), "user_id"),
        (users.update_user(store, user.id, actor="admin", status="erased"), "status"),
    ]
    for call, param in cases:
        with pytest.raises(InvalidRequest) as err:
            await call
        assert err.value.param == param
    with pytest.raises(NotFound):
        await users.get_user(store, "usr_nobody")
    with pytest.raises(NotFound):
        await keys.revoke_key(store, "key_nobody", actor="admin")


async def test_rectify_suspend_and_audit_without_personal_data(store, db):
    user = await users.create_user(store, actor="admin", name="Old Name", email="old@example.org")
    user = await users.update_user(
        store, user.id, actor="admin", name=CANARY_NAME, email=CANARY_EMAIL
    )
    assert (user.name, user.email) == (CANARY_NAME, CANARY_EMAIL)
    user = await users.update_user(store, user.id, actor="cli", email=None, tier="pro")
    assert (user.name, user.email, user.tier) == (CANARY_NAME, None, "pro")
    assert await users.find_user_by_email(store, CANARY_EMAIL) is None
    user = await users.update_user(store, user.id, actor="cli", status="suspended")
    assert user.status == "suspended"
    entries = await store.audit_entries(target=user.id)
    assert [(e.actor, e.action) for e in entries] == [
        ("cli", "user.suspend"),
        ("cli", "user.update"),
        ("admin", "user.update"),
        ("admin", "user.create"),
    ]
    assert entries[1].detail == {"fields": ["email", "tier"], "tier": "pro"}
    text = repr(entries)
    for secret in ("Old Name", "old@example.org", CANARY_NAME, CANARY_EMAIL):
        assert secret not in text


async def test_every_accounts_write_bumps_the_version(store):
    versions = [await store.version()]
    user = await users.create_user(store, actor="admin")
    versions.append(await store.version())
    issued = await keys.create_key(store, KeySpec(name="k", user_id=user.id), actor="admin")
    versions.append(await store.version())
    await keys.rotate_key(store, issued.key.id, actor="admin")
    versions.append(await store.version())
    await keys.revoke_key(store, issued.key.id, actor="admin")
    versions.append(await store.version())
    await users.update_user(store, user.id, actor="admin", status="suspended")
    versions.append(await store.version())
    assert versions == sorted(set(versions)) and len(versions) == 6


async def test_rotating_a_key_replaces_its_secret_and_keeps_its_id(store):
    issued = await keys.create_key(
        store, KeySpec(name="k", rpm=5, models=("gpt-test",)), actor="admin"
    )
    rotated = await keys.rotate_key(store, issued.key.id, actor="admin")
    assert rotated.key.id == issued.key.id and rotated.secret != issued.secret
    assert rotated.key.spec == issued.key.spec
    [entry] = await keys.key_entries(store)
    assert entry.digest == hashlib.sha256(rotated.secret.encode()).hexdigest()
    revoked = await keys.revoke_key(store, issued.key.id, actor="admin")
    assert revoked.revoked
    with pytest.raises(InvalidRequest):
        await keys.rotate_key(store, issued.key.id, actor="admin")
    assert [k.id for k in await keys.list_keys(store, include_revoked=False)] == []


async def test_listing_pages_in_creation_order(store):
    ids = [(await users.create_user(store, actor="admin")).id for _ in range(5)]
    first = await users.list_users(store, limit=2)
    rest = await users.list_users(store, after=first[-1].id, limit=10)
    assert [u.id for u in first + rest] == ids


# -- the data key ---------------------------------------------------------------------------


async def test_a_wrong_or_missing_key_refuses_to_open_with_one_line(db, key):
    store = await open_store(db, key)
    await users.create_user(store, actor="admin", email=CANARY_EMAIL)
    await store.close()
    for wrong in [(generate_key(),), ()]:
        with pytest.raises(DataKeyError) as err:
            await open_store(db, *wrong)
        message = str(err.value)
        assert ENV_VAR in message and "\n" not in message
    with pytest.raises(DataKeyError, match="32 bytes"):
        await open_store(db, "not-a-key")


async def test_the_check_value_catches_a_wrong_key_after_every_user_is_gone(db, key):
    store = await open_store(db, key)
    user = await users.create_user(store, actor="admin", email=CANARY_EMAIL)
    await users.update_user(store, user.id, actor="admin", email=None)
    await store.close()
    with pytest.raises(DataKeyError):
        await open_store(db, generate_key())


async def test_rotation_keeps_every_row_readable_and_findable(db, key):
    store = await open_store(db, key)
    made = [
        await users.create_user(store, actor="admin", name=f"User {i}", email=f"u{i}@example.org")
        for i in range(7)
    ]
    await store.close()

    new = generate_key()
    store = await open_store(db, new, key)  # new key first: it seals; both open
    try:
        # Mid-rotation (one small batch done) every row opens and every email is found.
        from nitroproxy.store.datakey import rotate_batch

        assert store.keyring is not None
        assert await rotate_batch(store.conn, store.keyring, limit=3) == 3
        for i, u in enumerate(made):
            assert (await users.get_user(store, u.id)).name == f"User {i}"
            found = await users.find_user_by_email(store, f"U{i}@example.org")
            assert found is not None and found.id == u.id
        assert await store.rotate_data_key(actor="cli", batch_size=2) == 4
        [entry] = await store.audit_entries(action="data_key.rotate")
        assert entry.detail == {"key_id": store.keyring.primary_id, "rows": 4}
    finally:
        await store.close()

    store = await open_store(db, new)  # the old key is gone: everything still opens
    try:
        for i, u in enumerate(made):
            got = await users.get_user(store, u.id)
            assert (got.name, got.email) == (f"User {i}", f"u{i}@example.org")
            assert (await users.find_user_by_email(store, f"u{i}@example.org")) == got
    finally:
        await store.close()
    with pytest.raises(DataKeyError):
        await open_store(db, key)


async def test_database_file_is_private(db, key):
    store = await open_store(db, key)
    await store.close()
    assert db.stat().st_mode & 0o777 == 0o600
    assert db.parent.stat().st_mode & 0o777 == 0o700
