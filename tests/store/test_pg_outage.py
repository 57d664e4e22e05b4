"""PostgreSQL cut off mid-load under a real proxy (``storage.backend: postgres``), through a
loopback TCP forwarder the test cuts and restores (the machine's PostgreSQL is never
stopped): records go to the journal while it is away and are written when it returns,
every answered request exactly once."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import asyncpg

from nitroproxy.web.appkeys import WRITER
from tests.conftest import ProxyFactory
from tests.services import POSTGRES, free_port

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


class Forwarder:
    """127.0.0.1:<port> -> PostgreSQL; ``cut`` drops every connection and stops listening,
    ``restore`` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.port = free_port()
        self._target = target
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pump(src, dst))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._pumps):
            task.cancel()

    async def close(self) -> None:
        await self.cut()
        if self._pumps:
            await asyncio.gather(*self._pumps, return_exceptions=True)


async def test_postgres_cut_mid_load_then_back_every_answer_recorded_once(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], pg_schema: str, tmp_path: Path
) -> None:
    forwarder = Forwarder(("127.0.0.1", 5432))
    await forwarder.start()
    try:
        proxy_config["storage"].update(
            {
                "backend": "postgres",
                "url": f"postgresql://127.0.0.1:{forwarder.port}/test?search_path={pg_schema}",
                "journal_dir": str(tmp_path / "journal"),
                "journal_after": 0.2,
            }
        )
        proxy = await make_proxy(proxy_config)
        answered = 0
        stop = asyncio.Event()

        async def load() -> None:
            nonlocal answered
            while not stop.is_set():
                async with await proxy.post("/v1/chat/completions", BODY) as r:
                    await r.read()
                    assert r.status == 200
                answered += 1
                await asyncio.sleep(0.005)

        workers = [asyncio.create_task(load()) for _ in range(4)]
        await asyncio.sleep(1.0)
        await forwarder.cut()  # PostgreSQL is gone, as far as the proxy can tell
        await asyncio.sleep(1.5)
        during = answered
        await forwarder.start()
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*workers)
        writer = proxy.app[WRITER]
        assert writer.journaled > 0  # the outage was long enough to journal

        conn = await asyncpg.connect(POSTGRES, server_settings={"search_path": pg_schema})
        try:
            async with asyncio.timeout(20):
                while True:
                    stored = await conn.fetchval("SELECT count(*) FROM usage")
                    if stored >= answered:
                        break
                    await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)  # and no more than that
            stored, distinct = await conn.fetchrow(
                "SELECT count(*), count(DISTINCT request_id) FROM usage"
            )
        finally:
            await conn.close()
        assert answered > during > 0
        assert stored == distinct == answered  # every answered request, exactly once
    finally:
        await forwarder.close()
