"""The coding agents people point at a gateway, run for real against the proxy and the mock.

Claude Code and Codex CLI are installed from the npm registry into ``build/npm-clients``
(once per session, and kept there: a second session reuses them), at the versions pinned
below. Without ``npm``, or when the install fails, their tests skip and say why.

Each run gets its own ``HOME`` (and ``CODEX_HOME``), sends no telemetry, and has its
outbound HTTP(S) pointed at a closed loopback port: only the proxy on 127.0.0.1 can answer.
Every run is bounded by ``RUN_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from nitroproxy import config
from nitroproxy.web.app import create_app
from nitroproxy.web.server import start
from tests.conftest import Proxy

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "npm-clients"
PACKAGES = {"@anthropic-ai/claude-code": "2.1.197", "@openai/codex": "0.171.0"}
INSTALL_TIMEOUT = 600
RUN_TIMEOUT = 90.0
# Outbound traffic that does not go to the proxy dies here (nothing listens on port 9).
DEAD_PROXY = "http://127.0.0.1:9"


@dataclass(frozen=True)
class Clients:
    claude: Path
    codex: Path


def _installed(root: Path) -> bool:
    for name, version in PACKAGES.items():
        manifest = root / "node_modules" / name / "package.json"
        try:
            if json.loads(manifest.read_text())["version"] != version:
                return False
        except (OSError, ValueError, KeyError):
            return False
    return all((root / "node_modules" / ".bin" / b).exists() for b in ("claude", "codex"))


@pytest.fixture(scope="session")
def npm_clients() -> Clients:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: Claude Code and Codex CLI come from the npm registry")
    if not _installed(CACHE):
        CACHE.mkdir(parents=True, exist_ok=True)
        specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
        try:
            subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(CACHE), *specs],
                check=True,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            tail = (getattr(exc, "stderr", "") or "").strip().splitlines()[-3:]
            pytest.skip(f"npm install of {' '.join(specs)} failed: {' / '.join(tail) or exc}")
    if not _installed(CACHE):
        pytest.skip(f"npm install left no usable {', '.join(PACKAGES)} in {CACHE}")
    bin_dir = CACHE / "node_modules" / ".bin"
    return Clients(claude=bin_dir / "claude", codex=bin_dir / "codex")


@dataclass
class Seen:
    """What the client asked the proxy for, in order: (method, path), query left out."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p in self.calls if method is None or m == method]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


async def run_client(
    argv: list[str], *, cwd: Path, env: dict[str, str], limit_s: float = RUN_TIMEOUT
) -> Run:
    """Run a CLI to completion (stdin closed) in its own environment; kill it after ``limit_s``."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(
            f"{argv[0]} did not finish in {limit_s} s: {err.decode(errors='replace')[-2000:]}"
        )
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def base_env(home: Path, *, fence: bool = True) -> dict[str, str]:
    """A clean environment: PATH and the locale only, a fresh HOME, no telemetry, and (with
    ``fence``) every non-loopback request sent to a dead port. Claude Code skips its
    ``HEAD /`` check of the base URL when a proxy is configured, so the one test that shows
    that call runs unfenced, with the CLI's non-essential traffic turned off."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TERM")}
    if fence:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env[name] = DEAD_PROXY
        env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.update(
        HOME=str(home),
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_ERROR_REPORTING="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        NO_COLOR="1",
    )
    return env


def record_client(seen: Seen) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def recorder(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.calls.append((request.method, request.path))
        seen.headers.append({k.lower(): v for k, v in request.headers.items()})
        response: web.StreamResponse = await handler(request)
        return response

    return recorder


WatchedProxy = Callable[[dict[str, Any]], Awaitable[tuple[Proxy, Seen]]]


@pytest.fixture
async def watched_proxy() -> AsyncIterator[WatchedProxy]:
    """A real proxy whose inbound requests are recorded before anything else sees them."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def factory(cfg: dict[str, Any]) -> tuple[Proxy, Seen]:
        settings = config.parse(copy.deepcopy(cfg))
        app = create_app(settings)
        seen = Seen()
        app.middlewares.insert(0, record_client(seen))
        runner, port = await start(app, "127.0.0.1", 0, shutdown_grace=2.0)
        runners.append(runner)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Proxy(f"http://127.0.0.1:{port}", app, settings, session), seen

    yield factory
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()
