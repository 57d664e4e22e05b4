"""SIGHUP: read the config file again and apply what can change without a restart.

An SSH session that closes sends SIGHUP, so it must never stop the server. What it reloads:
``providers`` and ``models`` (deployments and their prices) into the gateway, ``tiers`` and
config ``keys`` into the authenticator (and the accounts store's validation). Streams in
flight keep the provider and deployment they started with. A file that does not parse is
refused with one log line and the running config kept. Changes to other sections (the
listener, storage, logging, ...) need a restart; the log line says which.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

from aiohttp import web

from nitroproxy import config
from nitroproxy.config import Settings
from nitroproxy.config.resolved import resolve
from nitroproxy.telemetry import logs
from nitroproxy.web.appkeys import ACCOUNTS, AUTH, GATEWAY

RELOADABLE = ("providers", "models", "tiers", "keys")


def merged(running: Settings, loaded: Settings) -> tuple[Settings, list[str]]:
    """The running settings with the reloadable sections of ``loaded``, and the names of the
    other sections that differ (kept as they are until a restart)."""
    live = dataclasses.replace(running, **{name: getattr(loaded, name) for name in RELOADABLE})
    ignored = [
        f.name
        for f in dataclasses.fields(Settings)
        if f.name not in RELOADABLE and getattr(loaded, f.name) != getattr(running, f.name)
    ]
    return live, ignored


class Reloader:
    """One reload at a time; a SIGHUP arriving during one runs another after it."""

    def __init__(self, app: web.Application, path: str | Path) -> None:
        self._app = app
        self._path = Path(path)
        self._cwd = Path.cwd()  # the file is read again as it was at start-up
        self._log = logs.get_logger("nitroproxy")
        self._task: asyncio.Task[bool] | None = None
        self._again = False
        self.reloads = 0  # applied, for tests and /admin/status

    def request(self) -> None:
        """The signal handler: start a reload, or queue one behind the running reload."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="nitroproxy-reload")

    async def wait(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def _run(self) -> bool:
        applied = await self.reload()
        while self._again:
            self._again = False
            applied = await self.reload()
        return applied

    def _load(self) -> Settings:
        """As ``serve`` read it: its env file too, and the data directory placed."""
        return resolve(
            str(self._path), env=os.environ, cwd=self._cwd, providers=True, require_models=True
        ).settings

    async def reload(self) -> bool:
        """Load and apply the file; False (and one log line) if it was refused."""
        try:
            loaded = await asyncio.to_thread(self._load)
        except config.ConfigError as exc:
            self._log.error("config reload refused; the running config is kept", error=str(exc))
            return False
        app = self._app
        gateway = app[GATEWAY]
        live, ignored = merged(gateway.settings, loaded)
        try:
            await gateway.reload(live)
        except config.StartupError as exc:  # e.g. a CA bundle that cannot be read
            self._log.error("config reload refused; the running config is kept", error=str(exc))
            return False
        await app[AUTH].reconfigure(live)
        store = app.get(ACCOUNTS)
        if store is not None:
            store.tiers = frozenset(live.tiers) | {"default"}
            store.models = frozenset(live.models)
        self.reloads += 1
        self._log.info(
            "config reloaded",
            models=sorted(live.models),
            providers=sorted(live.providers),
            needs_restart=ignored,
        )
        return True
