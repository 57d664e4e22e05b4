"""``nitroproxy serve`` and the CLI as real processes, for the tests that need the operating
system in the loop: signals, a SIGKILL, descriptors in ``/proc``, resident memory."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kb(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` figure in kB (``VmRSS``, ``VmHWM``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def deleted_descriptors(pid: int, under: Path) -> list[str]:
    """Descriptors of ``pid`` pointing at files under ``under`` that were unlinked."""
    found = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            continue
        if target.startswith(str(under)) and target.endswith("(deleted)"):
            found.append(target)
    return found


class ProxyProcess:
    """``async with ProxyProcess(config, tmp_path) as p``: serving on ``p.url`` until the
    block ends (then SIGTERM, or SIGKILL if it does not stop)."""

    def __init__(self, config: dict[str, Any], workdir: Path, *, env: dict[str, str] | None = None):
        self.port = free_port()
        config = {**config, "server": {**config.get("server", {}), "port": self.port}}
        self.config_path = workdir / f"nitroproxy-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "NITROPROXY_LOG_LEVEL": "info", **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.log = workdir / f"nitroproxy-{self.port}.log"
        self.preexec: Any = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _log_file(self) -> Any:
        return open(self.log, "ab")

    async def start(self, within: float = 20.0) -> None:
        with self._log_file() as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "nitroproxy",
                "serve",
                "--config",
                str(self.config_path),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                cwd=ROOT,
                preexec_fn=self.preexec,
            )
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise AssertionError(f"nitroproxy exited: {self.output()}")
                try:
                    async with session.get(self.url + "/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"nitroproxy did not come up: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, within: float = 20.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), within)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def __aenter__(self) -> ProxyProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            await self.kill()


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``nitroproxy <args>`` as its own process: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nitroproxy",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
