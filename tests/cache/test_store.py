import contextlib
import dataclasses
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from nitroproxy.cache.store import (
    CachedEntry,
    CacheUnavailable,
    ResponseCache,
    default_path,
)
from nitroproxy.config import CacheSettings
from nitroproxy.core.cache_policy import CacheScope, canonical_request, scope_for
from nitroproxy.core.retention import RetentionPolicy
from nitroproxy.core.types import Endpoint, Usage
from nitroproxy.security.crypto import ENV_VAR, Keyring, generate_key
from nitroproxy.store.sweeper import RetentionSweeper

CANARY = "CANARY-7f3a9c-do-not-store"
KEY_A = os.urandom(32)
KEY_B = os.urandom(32)
ALICE_K1 = CacheScope("key:k1", "k1", "alice")
ALICE_K2 = CacheScope("key:k2", "k2", "alice")
BOB = CacheScope("key:k3", "k3", "bob")


def request(text: str = "hello") -> bytes:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": text}]}
    return canonical_request(Endpoint.CHAT, "gpt-test", body)


def entry(text: str = "hi there") -> CachedEntry:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "mock-gpt",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
    return CachedEntry(
        endpoint=Endpoint.CHAT,
        body=body,
        usage=Usage(prompt_tokens=10, completion_tokens=20, cached_tokens=2),
        cost_nanos=123_456,
        model="gpt-test",
        provider="mock-openai",
        deployment="primary",
        upstream_model="mock-gpt",
    )


@pytest.fixture
async def make_cache(tmp_path):
    caches: list[ResponseCache] = []

    async def factory(
        key: bytes | list[bytes] = KEY_A, path: Path | None = None, **settings: Any
    ) -> ResponseCache:
        keys = key if isinstance(key, list) else [key]
        cache = ResponseCache(
            path or tmp_path / "data" / "cache.db",
            CacheSettings(enabled=True, **{"ttl": 100.0, **settings}),
            Keyring(keys),
            touch_interval=0.0,
        )
        await cache.start()
        caches.append(cache)
        return cache

    yield factory
    for cache in caches:
        await cache.close()  # idempotent: tests may have closed it already


@pytest.fixture
async def cache(make_cache):
    return await make_cache()


async def put(cache: ResponseCache, scope: CacheScope, text: str, now: float, **kw: Any) -> None:
    assert cache.store(scope, request(text), entry(text), now=now, **kw)
    await cache.flush()


def sizes(path: Path) -> list[int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [r[0] for r in conn.execute("SELECT size FROM cache_entries")]


async def test_a_stored_response_is_found_again_with_its_cost(cache):
    assert await cache.lookup(ALICE_K1, request(), now=1000.0) is None
    await put(cache, ALICE_K1, "hello", now=1000.0)
    found = await cache.lookup(ALICE_K1, request("hello"), now=1001.0)
    assert found is not None
    assert found == dataclasses.replace(entry("hello"), stored_at=1000.0)
    assert found.response_format == "openai"
    assert (cache.stats.hits, cache.stats.misses, cache.stats.stores) == (1, 1, 1)


async def test_another_tenant_with_the_same_request_misses(cache):
    await put(cache, ALICE_K1, "hello", now=1000.0)
    assert await cache.lookup(BOB, request("hello"), now=1001.0) is None
    assert await cache.lookup(ALICE_K2, request("hello"), now=1001.0) is None  # key scope


async def test_user_scope_is_shared_by_the_users_keys_only(cache):
    k1, k2, bob = (
        scope_for(k, u, "user") for k, u in [("k1", "alice"), ("k2", "alice"), ("k3", "bob")]
    )
    assert k1 is not None and k2 is not None and bob is not None
    await put(cache, k1, "hello", now=1000.0)
    assert await cache.lookup(k2, request("hello"), now=1001.0) is not None
    assert await cache.lookup(bob, request("hello"), now=1001.0) is None


async def test_entries_expire_after_the_ttl_and_the_sweeper_deletes_them(cache, tmp_path):
    await put(cache, ALICE_K1, "a", now=1000.0)
    await put(cache, ALICE_K1, "b", now=1010.0)
    assert await cache.lookup(ALICE_K1, request("a"), now=1099.9) is not None
    assert await cache.lookup(ALICE_K1, request("a"), now=1100.0) is None
    sweeper = RetentionSweeper(tmp_path / "usage.db", RetentionPolicy(), batch_size=1)
    sweeper.add_step("cache", cache.sweep_step)
    try:
        result = await sweeper.run_once(now=1105.0)
    finally:
        await sweeper.close()
    assert result.extra["cache"] == 1
    assert len(sizes(cache.path)) == 1
    assert await cache.expire(now=1110.0, limit=10) == 1
    assert cache.stats.expired == 2


async def test_expire_deletes_in_bounded_batches(cache):
    for i in range(5):
        cache.store(ALICE_K1, request(str(i)), entry(), now=0.0)
    await cache.flush()
    assert [await cache.expire(now=500.0, limit=2) for _ in range(4)] == [2, 2, 1, 0]


async def test_least_recently_used_entries_are_evicted_past_max_entries(make_cache):
    cache = await make_cache(max_entries=3)
    for i, text in enumerate("abc"):
        await put(cache, ALICE_K1, text, now=1000.0 + i)
    assert await cache.lookup(ALICE_K1, request("a"), now=1010.0) is not None  # a is fresh now
    await cache.flush()
    await put(cache, ALICE_K1, "d", now=1011.0)
    present = [await cache.lookup(ALICE_K1, request(t), now=1012.0) is not None for t in "abcd"]
    assert present == [True, False, True, True]
    assert cache.stats.evictions == 1
    await cache.close()


async def test_least_recently_used_entries_are_evicted_past_max_bytes(make_cache):
    cache = await make_cache(max_bytes=4096, max_entries=1000)
    for i in range(10):
        await put(cache, ALICE_K1, f"{i}" * 300, now=1000.0 + i)
    stored = sizes(cache.path)
    assert sum(stored) <= 4096 < sum(stored) + stored[0]
    kept = [await cache.lookup(ALICE_K1, request(f"{i}" * 300), now=1020.0) for i in range(10)]
    hits = [found is not None for found in kept]
    assert hits == sorted(hits)  # the oldest went first
    assert hits[-1] and not hits[0]
    assert cache.stats.evictions == 10 - len(stored)
    await cache.close()


async def test_an_entry_larger_than_a_quarter_of_max_bytes_is_not_stored(make_cache):
    cache = await make_cache(max_bytes=4096)
    await put(cache, ALICE_K1, "x" * 2000, now=1000.0)
    assert sizes(cache.path) == []
    assert cache.stats.rejected == 1
    await cache.close()


async def test_incomplete_responses_are_rejected(cache):
    bad = entry()
    bad.body["choices"][0]["finish_reason"] = None
    assert not cache.store(ALICE_K1, request(), bad)
    assert cache.stats.rejected == 1


async def test_a_full_queue_drops_stores_without_blocking(make_cache, tmp_path):
    cache = ResponseCache(
        tmp_path / "q" / "cache.db",
        CacheSettings(enabled=True),
        Keyring([KEY_A]),
        max_queue=1,
    )
    assert not cache.store(ALICE_K1, request(), entry())  # not started
    await cache.start()
    assert cache.store(ALICE_K1, request("1"), entry())
    assert not cache.store(ALICE_K1, request("2"), entry())
    assert cache.stats.dropped == 2
    await cache.close()
    assert not cache.store(ALICE_K1, request("3"), entry())
    assert await cache.lookup(ALICE_K1, request("1")) is None  # closed: a miss, not an error


async def test_purging_a_user_or_a_key_removes_their_entries(cache):
    await put(cache, ALICE_K1, "one", now=1000.0)
    await put(cache, ALICE_K2, "two", now=1000.0)
    await put(cache, BOB, "three", now=1000.0)
    assert await cache.purge_user("alice") == 2
    assert await cache.lookup(ALICE_K1, request("one"), now=1001.0) is None
    assert await cache.lookup(ALICE_K2, request("two"), now=1001.0) is None
    assert await cache.lookup(BOB, request("three"), now=1001.0) is not None
    assert await cache.purge_key("k3") == 1
    assert sizes(cache.path) == []
    assert cache.stats.purged == 3


async def test_a_key_purge_covers_entries_stored_under_user_scope(cache):
    scope = scope_for("k1", "alice", "user")
    assert scope is not None
    await put(cache, scope, "hello", now=1000.0)
    assert await cache.purge_key("k1") == 1


async def test_an_erase_is_not_undone_by_a_store_still_queued(cache):
    assert cache.store(ALICE_K1, request("late"), entry(), now=1000.0)
    assert await cache.purge_user("alice") == 0
    await cache.flush()
    assert await cache.lookup(ALICE_K1, request("late"), now=1001.0) is None
    await put(cache, ALICE_K1, "after", now=1002.0)  # later stores are kept
    assert await cache.lookup(ALICE_K1, request("after"), now=1003.0) is not None


async def test_the_canary_is_nowhere_in_the_files(make_cache, tmp_path):
    cache = await make_cache()
    scope = CacheScope(f"key:{CANARY}", CANARY, CANARY)
    await put(cache, scope, CANARY, now=1000.0)
    await put(cache, scope, CANARY + "-2", now=1000.0)
    assert await cache.lookup(scope, request(CANARY), now=1001.0) is not None
    files = sorted((tmp_path / "data").iterdir())
    assert {f.name for f in files} >= {"cache.db", "cache.db-wal"}
    for f in files:
        data = f.read_bytes()
        assert CANARY.encode() not in data, f.name
        assert b"hello" not in data and b"gpt-test" not in data, f.name
    await cache.close()
    for f in (tmp_path / "data").iterdir():
        assert CANARY.encode() not in f.read_bytes(), f.name


async def test_entries_sealed_for_one_row_do_not_open_in_another(cache):
    await put(cache, ALICE_K1, "one", now=1000.0)
    await put(cache, BOB, "two", now=1000.0)
    with sqlite3.connect(cache.path) as conn:
        (a, blob_a), (b, blob_b) = conn.execute("SELECT lookup, blob FROM cache_entries")
        conn.execute("UPDATE cache_entries SET blob = ? WHERE lookup = ?", (blob_b, a))
        conn.execute("UPDATE cache_entries SET blob = ? WHERE lookup = ?", (blob_a, b))
    assert await cache.lookup(ALICE_K1, request("one"), now=1001.0) is None
    assert cache.stats.errors == 1


async def test_a_cache_file_under_another_data_key_is_refused_cleanly(make_cache, tmp_path):
    first = await make_cache(KEY_A)
    await put(first, ALICE_K1, "hello", now=1000.0)
    await first.close()
    with pytest.raises(CacheUnavailable, match="delete the file"):
        await make_cache(KEY_B)
    rotated = await make_cache([KEY_B, KEY_A])  # new key first, old one still listed
    assert await rotated.lookup(ALICE_K1, request("hello"), now=1001.0) is not None
    await rotated.close()
    only_new = await make_cache(KEY_B)  # the check value was resealed under the new key
    assert await only_new.lookup(ALICE_K1, request("hello"), now=1001.0) is None
    await only_new.close()


def test_without_a_data_key_the_cache_cannot_be_built(tmp_path):
    with pytest.raises(CacheUnavailable, match=ENV_VAR):
        ResponseCache(tmp_path / "cache.db", CacheSettings(enabled=True), env={})
    cache = ResponseCache(
        tmp_path / "cache.db",
        CacheSettings(enabled=True),
        env={ENV_VAR: generate_key()},
    )
    assert cache.path == tmp_path / "cache.db"


@pytest.fixture
def open_umask():
    # A permissive umask proves the modes come from the code, not from the environment.
    old = os.umask(0)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_files_are_private(make_cache, tmp_path, open_umask):
    path = tmp_path / "fresh" / "cache.db"
    cache = await make_cache(path=path)
    await put(cache, ALICE_K1, "hello", now=1000.0)
    assert _mode(path.parent) == 0o700
    for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
        assert _mode(path.parent / name) == 0o600, name
    await cache.close()


def test_the_default_path_is_next_to_the_usage_database():
    assert default_path("data/nitroproxy.db") == Path("data/cache.db")


async def test_purged_ciphertext_is_overwritten_not_left_in_free_pages(cache):
    await put(cache, ALICE_K1, "one", now=1000.0)
    await put(cache, BOB, "two", now=1000.0)
    with contextlib.closing(sqlite3.connect(cache.path)) as conn:
        blobs = [bytes(r[0]) for r in conn.execute("SELECT blob FROM cache_entries")]
    assert await cache.purge_user("alice") == 1
    data = b"".join(f.read_bytes() for f in cache.path.parent.iterdir())
    assert sum(blob[-64:] in data for blob in blobs) == 1  # only bob's entry is left


async def test_rotation_reseals_entries_and_their_hmacs_under_the_new_key(make_cache, tmp_path):
    from nitroproxy.cache.rotation import rotate_cache

    path = tmp_path / "data" / "cache.db"
    first = await make_cache(KEY_A)
    await put(first, ALICE_K1, "one", now=1000.0)
    await put(first, BOB, "two", now=1000.0)
    await first.close()
    # An entry in the v1 format (it does not seal its own request digest) cannot be rotated.
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        lookup = "legacy-v1"
        blob = Keyring([KEY_A]).seal(b'{"v": 1}', context=b"cache_entries.blob:" + lookup.encode())
        conn.execute(
            "INSERT INTO cache_entries SELECT ?, key_index, user_index, endpoint, size, created,"
            " expires, last_used, ? FROM cache_entries LIMIT 1",
            (lookup, blob),
        )
    done = await rotate_cache(path, Keyring([KEY_B, KEY_A]), batch_size=1)
    assert done is not None and (done.reencrypted, done.purged) == (2, 1)
    assert await rotate_cache(tmp_path / "absent.db", Keyring([KEY_B])) is None

    only_new = await make_cache(KEY_B)  # starts: the check value is under the new key
    assert (await only_new.lookup(ALICE_K1, request("one"), now=1001.0)) is not None
    assert (await only_new.lookup(BOB, request("two"), now=1001.0)) is not None
    assert await only_new.lookup(ALICE_K2, request("one"), now=1001.0) is None  # other tenant
    assert await only_new.purge_user("alice") == 1  # owner HMACs were recomputed too
    assert await only_new.purge_key("k3") == 1
