"""``nitroproxy serve --workers N``: N server processes on one port, and their supervisor.

Each worker is a whole NitroProxy (its own event loop, gateway, writer) listening with
``SO_REUSEPORT``, so the kernel spreads new connections over them and one box's cores all
serve. What must hold across them lives in the shared state: ``state.backend: redis`` is
required, because with ``memory`` every worker would keep its own limits and budgets (a
100 requests/min key would get 100 per worker).

With ``metrics.port`` set, worker ``i`` serves its own ``/metrics`` on ``metrics.port + i``.

The supervisor starts the workers, waits until every one listens (a worker that cannot
start ends the whole start with its one-line reason), restarts a worker that dies (at once,
then backing off while it keeps dying young), and on SIGTERM or SIGINT passes SIGTERM to
all of them and waits while they drain (each lets its requests and streams finish within
``server.shutdown_grace``, then flushes its records), killing only what outlives that.
SIGHUP is passed on: each worker reloads the config file.

Workers are *spawned* (a fresh interpreter each), not forked, so no lock or thread state of
the supervisor is copied into them. The bundled mock provider, when the config runs one,
runs once, in a process of its own, not in every worker.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import SimpleQueue
from types import FrameType

from nitroproxy.config import Settings, StartupError
from nitroproxy.telemetry import logs

__all__ = ["Supervisor", "check_workers", "run_workers"]

MAX_BACKOFF_S = 30.0
YOUNG_S = 10.0  # a worker that dies younger than this is restarted with a growing delay
START_TIMEOUT_S = 60.0

Event = tuple[int, str, str]


def check_workers(settings: Settings, workers: int) -> None:
    """One line on why ``workers`` cannot run with these settings, as a StartupError."""
    if workers < 1:
        raise StartupError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and settings.state.backend != "redis":
        raise StartupError(
            f"--workers {workers} needs state.backend: redis: with memory each worker keeps "
            f"its own limits and budgets, so a 100 requests/min key would get {workers * 100}"
        )


def run_workers(settings: Settings, workers: int, *, config_path: str | None = None) -> int:
    check_workers(settings, workers)
    return Supervisor(settings, workers, config_path=config_path).run()


def _worker(
    settings: Settings, slot: int, events: SimpleQueue[Event], config_path: str | None
) -> None:
    """A worker's whole life: serve until SIGTERM; tell the supervisor when listening."""
    from nitroproxy.web.server import serve

    try:
        serve(
            settings,
            config_path,
            reuse_port=True,
            on_ready=lambda: events.put((slot, "ready", "")),
        )
    except StartupError as exc:
        events.put((slot, "error", str(exc)))
        sys.exit(2)
    except OSError as exc:
        events.put((slot, "error", f"cannot listen: {exc.strerror or exc}"))
        sys.exit(2)


def _mock(settings: Settings) -> None:
    from nitroproxy.mock import MockSettings, run_mock

    mock = settings.server.mock_provider
    assert mock is not None
    run_mock(mock.host, mock.port, MockSettings(tokens=mock.tokens, delay_ms=mock.delay_ms))


class Supervisor:
    def __init__(self, settings: Settings, workers: int, *, config_path: str | None = None) -> None:
        self.settings = settings
        self.count = workers
        self.config_path = config_path
        self._ctx = multiprocessing.get_context("spawn")
        self._events: SimpleQueue[Event] = self._ctx.SimpleQueue()
        self._procs: dict[int, SpawnProcess] = {}
        self._born: dict[int, float] = {}
        self._backoff: dict[int, float] = {}
        self._mock: SpawnProcess | None = None
        self._stopping = False
        self._log = logs.get_logger("nitroproxy.supervisor")
        self._holder: socket.socket | None = None

    def run(self) -> int:
        s = self.settings
        logs.configure_logging(level=s.logging.level, fmt=s.logging.format)
        worker_settings = self._worker_settings()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
        try:
            if s.server.mock_provider is not None:
                self._mock = self._ctx.Process(target=_mock, args=(s,), name="nitroproxy-mock")
                self._mock.start()
            for slot in range(self.count):
                self._spawn(slot, worker_settings)
            failure = self._await_ready()
            if failure is not None:
                print(f"nitroproxy: {failure}", file=sys.stderr)
                return 2
            self._log.info(
                "workers started",
                workers=self.count,
                host=s.server.host,
                port=worker_settings.server.port,
                pids=[p.pid for p in self._procs.values()],
            )
            self._watch(worker_settings)
            return 0
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self._holder is not None:
                self._holder.close()
            logs.get_logger("nitroproxy").info("stopped")
            logs.flush()

    def _worker_settings(self) -> Settings:
        """Port 0 becomes one free port for all; the mock provider runs once, elsewhere."""
        server = self.settings.server
        port = server.port
        if port == 0:
            # Bound (not listening) with SO_REUSEPORT until we exit, so the port stays ours
            # and every worker can bind it too.
            holder = socket.socket(socket.AF_INET6 if ":" in server.host else socket.AF_INET)
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            holder.bind((server.host, 0))
            port = int(holder.getsockname()[1])
            self._holder = holder
        server = dataclasses.replace(server, port=port, mock_provider=None)
        return dataclasses.replace(self.settings, server=server)

    def _spawn(self, slot: int, settings: Settings) -> None:
        metrics = settings.metrics
        if metrics.port is not None:
            # Each worker's own /metrics on its own port (metrics.port + slot), so a
            # scraper sees every worker, not whichever one the kernel picked.
            metrics = dataclasses.replace(metrics, port=metrics.port + slot)
            settings = dataclasses.replace(settings, metrics=metrics)
        proc = self._ctx.Process(
            target=_worker,
            args=(settings, slot, self._events, self.config_path),
            name=f"nitroproxy-worker-{slot}",
        )
        proc.start()
        self._procs[slot] = proc
        self._born[slot] = time.monotonic()

    def _await_ready(self) -> str | None:
        ready: set[int] = set()
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(ready) < self.count:
            if self._stopping:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return f"workers did not start within {START_TIMEOUT_S:.0f}s"
            reader = self._events._reader  # type: ignore[attr-defined]
            sentinels = [p.sentinel for p in self._procs.values()]
            wait([reader, *sentinels], timeout=min(left, 0.5))
            while not self._events.empty():
                slot, kind, detail = self._events.get()
                if kind == "error":
                    return detail
                ready.add(slot)
            for slot, proc in self._procs.items():
                if slot not in ready and proc.exitcode is not None and self._events.empty():
                    return f"worker {slot} exited with status {proc.exitcode} while starting"
        return None

    def _watch(self, settings: Settings) -> None:
        while not self._stopping:
            wait([p.sentinel for p in self._procs.values()], timeout=0.5)
            while not self._events.empty():
                self._events.get()  # "ready" of a restarted worker
            for slot, proc in list(self._procs.items()):
                if proc.exitcode is None or self._stopping:
                    continue
                age = time.monotonic() - self._born[slot]
                delay = self._backoff.get(slot, 0.0)
                delay = min(MAX_BACKOFF_S, max(0.5, delay * 2)) if age < YOUNG_S else 0.0
                self._backoff[slot] = delay
                self._log.warning(
                    "worker exited; restarting",
                    worker=slot,
                    pid=proc.pid,
                    status=proc.exitcode,
                    delay_s=delay,
                )
                if self._sleep(delay):
                    return
                self._spawn(slot, settings)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless a stop arrives first; True when stopping."""
        end = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < end:
            time.sleep(min(0.1, end - time.monotonic()))
        return self._stopping

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if not self._stopping:
            self._log.info("stopping workers", signal=signal.Signals(signum).name)
        self._stopping = True

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        """SIGHUP: every worker reloads the config file (never a stop)."""
        del signum, frame
        for proc in self._procs.values():
            if proc.exitcode is None and proc.pid is not None:
                os.kill(proc.pid, signal.SIGHUP)

    def _stop_all(self) -> None:
        procs = [p for p in (*self._procs.values(), self._mock) if p is not None]
        for proc in procs:
            if proc.exitcode is None and proc.pid is not None:
                proc.terminate()  # SIGTERM: each drains on its own
        # Their drain takes up to the grace period, then the writer's flush.
        deadline = time.monotonic() + self.settings.server.shutdown_grace + 15.0
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                self._log.warning("worker did not stop in time; killing", pid=proc.pid)
                proc.kill()
                proc.join(5)


_SIGNALS = (signal.SIGTERM, signal.SIGINT)
