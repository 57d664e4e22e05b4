"""Nothing answered is lost, tried as an operator would: ``nitroproxy serve`` as a real
process beside the CLI, a ``sqlite3`` reader, a SIGKILL, a full disk and a database another
process keeps locked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nitroproxy.security.crypto import ENV_VAR, generate_key
from tests.conftest import ADMIN_KEY, CLIENT_KEY, Upstream, base_config
from tests.realproc import ProxyProcess, deleted_descriptors, run_cli

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
FLUSH_S = 0.2


def config(upstream: Upstream, tmp_path: Path, **storage: Any) -> dict[str, Any]:
    cfg = base_config(upstream.url, tmp_path)
    cfg["storage"] = {
        "path": str(tmp_path / "data" / "np.db"),
        "flush_interval": FLUSH_S,
        "journal_dir": str(tmp_path / "journal"),
        **storage,
    }
    cfg["logging"] = {"format": "json", "access_log": False}
    return cfg


def stored_request_ids(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {r[0] for r in conn.execute("SELECT request_id FROM usage")}


async def sqlite3_reader(db: Path, sql: str) -> str:
    """A plain ``sqlite3`` process reading the live file (Python's, if the shell is absent)."""
    if shutil.which("sqlite3"):
        argv = ["sqlite3", str(db), sql]
    else:
        script = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        script += "print(c.execute(sys.argv[2]).fetchall()); c.close()"
        argv = [sys.executable, "-c", script, str(db), sql]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode()


class Client:
    def __init__(self, proxy: ProxyProcess, session: aiohttp.ClientSession) -> None:
        self.proxy = proxy
        self.session = session
        self.answered: list[str] = []  # request ids of every 200

    async def ask(self, key: str = CLIENT_KEY) -> int:
        headers = {"Authorization": f"Bearer {key}"}
        async with self.session.post(
            self.proxy.url + "/v1/chat/completions", json=CHAT, headers=headers
        ) as r:
            await r.read()
            if r.status == 200:
                self.answered.append(r.headers["x-request-id"])
            return r.status

    async def ready(self) -> tuple[int, Any]:
        async with self.session.get(self.proxy.url + "/readyz") as r:
            return r.status, await r.json()

    async def until_ready(self, want: int, within: float = 10.0) -> Any:
        async with asyncio.timeout(within):
            while True:
                status, body = await self.ready()
                if status == want:
                    return body
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def serving(
    cfg: dict[str, Any], tmp_path: Path, env: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    async with ProxyProcess(cfg, tmp_path, env=env) as proxy, aiohttp.ClientSession() as s:
        yield Client(proxy, s)


async def cli_json(*args: str, env: dict[str, str]) -> Any:
    code, out, err = await run_cli(*args, "--json", env=env)
    assert code == 0, err
    return json.loads(out)


async def test_cli_and_sqlite3_beside_a_serving_proxy_then_sigkill_lose_nothing(
    upstream: Upstream, tmp_path: Path
) -> None:
    env = {ENV_VAR: generate_key()}
    cfg = config(upstream, tmp_path)
    db = Path(cfg["storage"]["path"])
    async with serving(cfg, tmp_path, env) as client:
        conf = str(client.proxy.config_path)
        for _ in range(10):
            assert await client.ask() == 200
        await asyncio.sleep(FLUSH_S * 3)
        code, out, err = await run_cli("usage", "-c", conf, "--format", "json", env=env)
        assert code == 0, err
        assert sum(row["requests"] for row in json.loads(out)["rows"]) == 10
        assert "10" in await sqlite3_reader(db, "SELECT COUNT(*) FROM usage")

        user = await cli_json("users", "create", "-c", conf, "--name", "Bo", env=env)
        issued = await cli_json(
            "keys", "create", "-c", conf, "--name", "k", "--user", user["id"], env=env
        )
        made = time.monotonic()
        while await client.ask(issued["secret"]) != 200:
            assert time.monotonic() - made < 1.0, "a key made by the CLI must work within 1 s"
            await asyncio.sleep(0.02)
        for n in range(15):
            assert await client.ask(issued["secret"] if n % 2 else CLIENT_KEY) == 200

        # Backups by SQLite's own means, beside the server: consistent, and harmless to it.
        backup = tmp_path / "backup.db"
        if shutil.which("sqlite3"):
            await sqlite3_reader(db, f".backup {backup}")
        else:
            await sqlite3_reader(db, f"VACUUM INTO '{backup}'")
        await sqlite3_reader(db, f"VACUUM INTO '{tmp_path / 'vacuumed.db'}'")
        assert "ok" in await sqlite3_reader(backup, "PRAGMA integrity_check")

        await asyncio.sleep(FLUSH_S * 3)  # every answer is now more than a flush interval old
        assert deleted_descriptors(client.proxy.pid, db.parent) == []
        assert {p.name for p in db.parent.iterdir()} >= {"np.db", "np.db-wal", "np.db-shm"}
        client.proxy.signal(signal.SIGKILL)
        assert await client.proxy.wait() == -signal.SIGKILL
    assert len(client.answered) == 26
    assert set(client.answered) <= stored_request_ids(db)


async def test_an_erase_made_with_the_cli_survives_a_restart(
    upstream: Upstream, tmp_path: Path
) -> None:
    env = {ENV_VAR: generate_key()}
    cfg = config(upstream, tmp_path)
    db = Path(cfg["storage"]["path"])
    async with serving(cfg, tmp_path, env) as client:
        conf = str(client.proxy.config_path)
        user = await cli_json("users", "create", "-c", conf, "--email", "bo@example.org", env=env)
        issued = await cli_json(
            "keys", "create", "-c", conf, "--name", "k", "--user", user["id"], env=env
        )
        async with asyncio.timeout(2):
            while await client.ask(issued["secret"]) != 200:  # noqa: ASYNC110 - polls a server
                await asyncio.sleep(0.05)
        await asyncio.sleep(FLUSH_S * 3)
        erased = await cli_json("users", "erase", "-c", conf, user["id"], "--yes", env=env)
        assert erased["keys_deleted"] == 1
        async with asyncio.timeout(2):
            while await client.ask(issued["secret"]) != 401:  # noqa: ASYNC110 - polls a server
                await asyncio.sleep(0.05)
    async with serving(cfg, tmp_path, env) as client:
        assert await client.ask(issued["secret"]) == 401
        shown = await cli_json("users", "show", "-c", conf, user["id"], env=env)
        assert (shown["status"], shown["email"]) == ("erased", None)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT COUNT(*) FROM usage WHERE user_id = ?", (user["id"],))
        assert rows.fetchone()[0] == 0


async def test_a_database_locked_past_busy_timeout_loses_nothing_and_flips_readiness(
    upstream: Upstream, tmp_path: Path
) -> None:
    cfg = config(upstream, tmp_path, busy_timeout=0.1, journal_after=0.3)
    db = Path(cfg["storage"]["path"])
    async with serving(cfg, tmp_path) as client:
        assert (await client.ready())[0] == 200
        hold = (
            "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(3); "
            "c.execute('ROLLBACK')"
        )
        locker = await asyncio.create_subprocess_exec(
            sys.executable, "-c", hold, str(db), stdout=asyncio.subprocess.PIPE
        )
        assert locker.stdout is not None
        assert await locker.stdout.readline() == b"locked\n"
        for _ in range(30):
            assert await client.ask() == 200  # memory, then the journal, keep the records
            await asyncio.sleep(0.02)
        checks = (await client.until_ready(503))["checks"]
        assert checks["database"] == "not writable"
        assert await locker.wait() == 0
        await client.until_ready(200)
        async with asyncio.timeout(10):
            while not set(client.answered) <= stored_request_ids(db):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        async with client.session.get(
            client.proxy.url + "/admin/status", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        ) as r:
            status = await r.json()
        assert status["usage_dropped"] == 0
        assert status["usage_storage"]["journal_pending"] == 0
    assert len(client.answered) == 30


@contextlib.contextmanager
def small_disk(path: Path, size_kib: int) -> Iterator[bool]:
    """A ``size_kib`` tmpfs at ``path``; yields False (and an empty directory) where
    ``mount`` is not permitted, or with NITROPROXY_TEST_NO_MOUNT=1 (to run the fallback)."""
    path.mkdir(parents=True)
    mounted = False
    allowed = os.environ.get("NITROPROXY_TEST_NO_MOUNT") != "1"
    if allowed and os.geteuid() == 0 and shutil.which("mount"):
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(path)],
            capture_output=True,
        )
        mounted = result.returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of ``directory``'s file system but about 16 KiB."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 4096)
            except OSError:
                break
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - 16 * 1024))
    return filler


async def test_a_full_disk_loses_nothing_and_flips_readiness(
    upstream: Upstream, tmp_path: Path
) -> None:
    disk = tmp_path / "disk"
    with small_disk(disk, 600) as mounted:
        cfg = config(upstream, tmp_path, flush_interval=0.02, journal_after=0.2)
        cfg["storage"]["path"] = str(disk / "np.db")
        db = disk / "np.db"
        proxy = ProxyProcess(cfg, tmp_path)
        if not mounted:
            # No mount here: the file-size limit makes the kernel refuse writes past 600 KiB
            # (EFBIG), as a full disk refuses them; the journal's files stay under it.
            import resource

            def limit() -> None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (600 * 1024, 600 * 1024))

            proxy.preexec = limit
        async with proxy, aiohttp.ClientSession() as session:
            client = Client(proxy, session)
            filler = fill(disk) if mounted else None
            if not mounted:
                # The database grows to the limit with the records themselves.
                async with asyncio.timeout(30):
                    while (await client.ready())[0] == 200:
                        assert await client.ask() == 200
            for _ in range(300):
                assert await client.ask() == 200
            body = await client.until_ready(503)
            assert body["checks"]["database"] == "not writable"
            assert body["checks"]["journal"] == "ok"  # another disk: it takes them
            if filler is not None:
                filler.unlink()  # space again: the writer recovers and replays the journal
                await client.until_ready(200)
                async with asyncio.timeout(10):
                    while not set(client.answered) <= stored_request_ids(db):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
        if not mounted:
            # Stopped with the database still refusing: what was left went to the journal,
            # and a restart without the limit replays it.
            async with serving(cfg, tmp_path):
                pass
        assert set(client.answered) <= stored_request_ids(db)
        assert list((tmp_path / "journal").iterdir()) == []
    assert len(client.answered) >= 300


async def test_when_neither_database_nor_journal_takes_records_new_requests_get_503(
    upstream: Upstream, tmp_path: Path
) -> None:
    unusable = tmp_path / "a-file"
    unusable.write_text("")  # a journal directory below a file can never be created
    cfg = config(
        upstream,
        tmp_path,
        busy_timeout=0.05,
        journal_after=0.1,
        max_queue=10,
        journal_dir=str(unusable / "journal"),
    )
    db = Path(cfg["storage"]["path"])
    async with serving(cfg, tmp_path) as client:
        hold = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.readline(); "
            "c.execute('ROLLBACK')"
        )
        locker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            hold,
            str(db),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert locker.stdin is not None and locker.stdout is not None
        assert await locker.stdout.readline() == b"locked\n"
        statuses = [await client.ask() for _ in range(20)]
        assert statuses[:10] == [200] * 10  # memory holds max_queue records
        assert set(statuses[10:]) == {503}  # then nothing could keep a record: refused
        async with client.session.post(
            client.proxy.url + "/v1/messages",
            json={**CHAT, "model": "claude-test", "max_tokens": 5},
            headers={"x-api-key": CLIENT_KEY},
        ) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "5"
            assert (await r.json())["error"]["type"] == "overloaded_error"  # Anthropic's shape
        async with asyncio.timeout(10):
            while True:
                status, body = await client.ready()
                checks = body["checks"]
                if checks["database"] != "ok":
                    break
                await asyncio.sleep(0.05)
        assert status == 503
        assert (checks["database"], checks["journal"]) == ("not writable", "not writable")
        locker.stdin.write(b"\n")
        await locker.stdin.drain()
        assert await locker.wait() == 0
        async with asyncio.timeout(10):
            while await client.ask() != 200:  # noqa: ASYNC110 - polls a server
                await asyncio.sleep(0.05)
        async with asyncio.timeout(10):
            while not set(client.answered) <= stored_request_ids(db):  # noqa: ASYNC110
                await asyncio.sleep(0.05)


async def test_with_journal_before_answer_a_sigkill_loses_nothing_answered(
    upstream: Upstream, tmp_path: Path
) -> None:
    # A minute between batches: without the journal every record would still be in memory.
    cfg = config(upstream, tmp_path, flush_interval=60, journal_before_answer=True)
    db = Path(cfg["storage"]["path"])
    async with serving(cfg, tmp_path) as client:
        for _ in range(20):
            assert await client.ask() == 200
        client.proxy.signal(signal.SIGKILL)
        await client.proxy.wait()
    assert stored_request_ids(db).isdisjoint(client.answered)  # none had reached the database
    async with serving(cfg, tmp_path):  # start-up replays the journal
        pass
    assert set(client.answered) <= stored_request_ids(db)
    assert list((tmp_path / "journal").iterdir()) == []
