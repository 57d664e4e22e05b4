"""The processes under test: start them pinned to a core, wait until they answer, stop them.

Every process is started in its own session, and ``Processes.stop_all`` signals exactly
those process groups (SIGINT, then SIGTERM, then SIGKILL), so nothing outlives the harness
and nothing the harness did not start is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml

PROXY_CPU = "0"
LOAD_CPU = "1"
API_KEY = "np-bench-0123456789abcdef"
"""The static client key every nitroproxy target accepts (``keys:`` in its config)."""


@dataclass(frozen=True)
class Target:
    """Something the load generators can be pointed at."""

    name: str
    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    pid: int | None = None
    """The process under test, for RSS and CPU; None for ``direct`` (nothing in between)."""


@dataclass(frozen=True)
class Variant:
    """A nitroproxy configuration; the fields are the features a benchmark prices."""

    storage: bool = True
    metrics: bool = True
    access_log: bool = True
    count_tokens: bool = True
    limits: bool = True
    """The key's tier has requests/min, tokens/min, concurrency and daily/monthly budgets
    (far from reached), so every call reserves and settles, as with the shipped tiers."""
    trace_ratio: float = 0.0
    """Above 0: OpenTelemetry traces on, this share of calls sampled, exported over
    OTLP/HTTP to the benchmark upstream's ``/v1/traces`` sink."""


# "nitroproxy" is the shipped configuration (config/nitroproxy.yaml) with every feature it
# turns on; each other variant turns features off to price them.
VARIANTS: dict[str, Variant] = {
    "nitroproxy": Variant(),
    "nitroproxy-bare": Variant(storage=False, metrics=False, access_log=False, limits=False),
    "nitroproxy-nometrics": Variant(metrics=False, access_log=False),
    "nitroproxy-notokens": Variant(count_tokens=False),
    "nitroproxy-nolimits": Variant(limits=False),
    "nitroproxy-traced": Variant(trace_ratio=1.0),
    "nitroproxy-traced10": Variant(trace_ratio=0.1),
}
SHIPPED_CONFIG = Path(__file__).resolve().parents[1] / "config" / "nitroproxy.yaml"
_LIMITS = {
    "rpm": 10_000_000,
    "tpm": 10_000_000_000,
    "max_concurrent": 100_000,
    "budget_day_usd": 1_000_000.0,
    "budget_month_usd": 10_000_000.0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(cpu: str, argv: Sequence[str]) -> list[str]:
    """``argv`` under ``taskset -c cpu`` when taskset exists (the summary says when not)."""
    if shutil.which("taskset") is None:
        return list(argv)
    return ["taskset", "-c", cpu, *argv]


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200; raise RuntimeError on timeout or if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s")


class Processes:
    """Owns every process the harness starts; a context manager that stops them all."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        pipe: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv``; its output goes to ``<name>.log``, or with ``pipe`` its stdin and
        stdout are pipes to the harness (and only stderr goes to the log)."""
        log = (self.log_dir / f"{name}.log").open("wb")
        try:
            proc = subprocess.Popen(
                list(argv),
                stdout=subprocess.PIPE if pipe else log,
                stderr=log if pipe else subprocess.STDOUT,
                stdin=subprocess.PIPE if pipe else subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        finally:
            log.close()
        self._procs.append((name, proc))
        return proc

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self._procs}

    def pid(self, name: str) -> int | None:
        return next((p.pid for n, p in self._procs if n == name), None)

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
        self._procs = [(n, p) for n, p in self._procs if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self._procs)):
            self.stop(proc)

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


def start_upstream(procs: Processes, tokens: int = 16) -> Target:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.upstream", "--port", str(port)]
    proc = procs.start("upstream", pinned(LOAD_CPU, [*argv, "--tokens", str(tokens)]))
    base = f"http://127.0.0.1:{port}"
    _wait_post(base, proc)
    return Target("direct", base, {"Authorization": f"Bearer {API_KEY}"}, None)


def _wait_post(base: str, proc: subprocess.Popen[bytes]) -> None:
    wait_http(base + "/v1/models", 30, proc)


def start_relay(procs: Processes, upstream: Target) -> Target:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.relay", "--upstream", upstream.base_url]
    proc = procs.start("relay", pinned(PROXY_CPU, [*argv, "--port", str(port)]))
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/v1/models", 30, proc)
    return Target("relay", base, {"Authorization": f"Bearer {API_KEY}"}, proc.pid)


def nitroproxy_config(
    variant: Variant, port: int, upstream: Target, models: Sequence[str], db: Path
) -> dict[str, object]:
    """The shipped configuration (config/nitroproxy.yaml, every section it has) pointed at
    the benchmark upstream, with the variant's features; the client key lives in the
    database (``start_nitroproxy`` creates it), as a deployment's keys do."""
    shipped = yaml.safe_load(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    return {
        **shipped,
        "server": {"host": "127.0.0.1", "port": port, "shutdown_grace": "5s"},
        "upstream": {"max_connections": 4000, "keepalive_timeout": "30s"},
        "providers": {
            "bench-upstream": {
                "kind": "openai",
                "base_url": upstream.base_url + "/v1",
                "api_key": "upstream-key-unused",
                "timeouts": {"connect": "10s", "first_byte": "60s", "idle": "60s", "total": "5m"},
            }
        },
        # The public name is the upstream's scripted name, so every target gets the same body.
        "models": {
            m: {"deployments": [{"provider": "bench-upstream", "model": m, "price": _PRICE}]}
            for m in models
        },
        "storage": {**shipped["storage"], "enabled": variant.storage, "path": str(db)},
        "logging": {"level": "info", "format": "json", "access_log": variant.access_log},
        "metrics": {**shipped["metrics"], "enabled": variant.metrics},
        "tokens": {**shipped["tokens"], "count": variant.count_tokens},
        "auth": {"required": True},
        # The shipped tiers' shape with limits the load never reaches: the work is done, no
        # call is refused.
        "tiers": {"default": _LIMITS if variant.limits else {}},
        **(
            {
                "tracing": {
                    "enabled": True,
                    "endpoint": upstream.base_url + "/v1/traces",
                    "sample_ratio": variant.trace_ratio,
                }
            }
            if variant.trace_ratio > 0
            else {}
        ),
        "keys": [],
    }


_PRICE = {"input": 2.5, "output": 10}


def start_nitroproxy(
    procs: Processes, name: str, upstream: Target, models: Sequence[str], run_dir: Path
) -> tuple[Target, subprocess.Popen[bytes]]:
    port = free_port()
    config = nitroproxy_config(VARIANTS[name], port, upstream, models, run_dir / f"{name}.db")
    path = run_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    # ``python -m nitroproxy`` is the ``nitroproxy`` command (same cli.main), but it runs the
    # tree the harness runs from, also when that is a snapshot of another commit.
    secret = _database_key(path) if config["storage"]["enabled"] else None  # type: ignore[index]
    if secret is None:  # no database: the key is declared in the file instead
        config["keys"] = [{"name": "bench", "key": API_KEY}]
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    argv = [sys.executable, "-m", "nitroproxy", "serve", "--config", str(path)]
    proc = procs.start(name, pinned(PROXY_CPU, argv))
    key = secret or API_KEY
    return Target(
        name, f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}, proc.pid
    ), proc


def _database_key(config: Path) -> str:
    """A client key made the way an operator makes one, before the server starts."""
    argv = [sys.executable, "-m", "nitroproxy", "keys", "create", "--config", str(config)]
    done = subprocess.run(
        [*argv, "--name", "bench", "--secret-only"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def wait_ready(target: Target, proc: subprocess.Popen[bytes], path: str, timeout: float) -> None:
    wait_http(target.base_url + path, timeout, proc)
