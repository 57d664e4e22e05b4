"""Several real ``nitroproxy serve`` processes sharing one Redis prefix and one database,
each on its own loopback port, and the bundled mock provider in a process of its own."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.services import free_port

ADMIN_KEY = "np-admin-key-fleet-abcdefghijklmnopqrstuvwxyz0123456789"


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=0.5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


class Mock:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(workdir / "mock.log", "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "nitroproxy", "mock-provider", "--port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/v1/models", timeout=0.5).close()
                return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the mock provider did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)
        self._log.close()


def fleet_config(mock_url: str, db: Path, redis_url: str, prefix: str) -> dict[str, Any]:
    return {
        "providers": {
            "mock": {"kind": "openai", "base_url": mock_url + "/v1", "api_key": "sk-mock-up"}
        },
        "models": {
            "fast": {
                "deployments": [{"provider": "mock", "model": "mock-gpt", "price": {"input": 1}}]
            },
            "pricey": {
                "deployments": [
                    {
                        "provider": "mock",
                        "model": "mock+tokens=16+delay=5",
                        "price": {"input": 100, "output": 500},
                    }
                ]
            },
        },
        "storage": {"path": str(db), "flush_interval": 0.01},
        "logging": {"format": "json", "access_log": False},
        "auth": {"required": True, "admin_key": ADMIN_KEY},
        "state": {"backend": "redis", "url": redis_url, "prefix": prefix, "timeout": 2.0},
        "keys": [],
    }


class Fleet:
    def __init__(self, workdir: Path, cfg: dict[str, Any], n: int) -> None:
        self.workdir = workdir
        self.ports = [free_port() for _ in range(n)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []
        for i, port in enumerate(self.ports):
            mine = copy.deepcopy(cfg)
            mine["server"] = {**mine.get("server", {}), "port": port, "shutdown_grace": 2}
            path = workdir / f"proxy-{i}.yaml"
            path.write_text(yaml.safe_dump(mine))
            log = open(workdir / f"proxy-{i}.log", "wb")  # noqa: SIM115 - closed in stop()
            self._logs.append(log)
            self._procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "nitroproxy", "serve", "--config", str(path)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "NITROPROXY_LOG_LEVEL": "warning"},
                )
            )

    def config_of(self, i: int) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load((self.workdir / f"proxy-{i}.yaml").read_text())
        return loaded

    def rewrite(self, i: int, cfg: dict[str, Any]) -> None:
        (self.workdir / f"proxy-{i}.yaml").write_text(yaml.safe_dump(cfg))

    def signal(self, i: int, sig: int) -> None:
        self._procs[i].send_signal(sig)

    def wait(self) -> None:
        deadline = time.monotonic() + 60
        pending = set(self.urls)
        while pending:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a proxy exited at start: {self.logs()}")
            pending = {u for u in pending if not _up(u)}
            if time.monotonic() > deadline:
                raise RuntimeError(f"proxies did not start: {self.logs()}")
            time.sleep(0.05)

    def logs(self) -> str:
        return "\n".join(
            (self.workdir / f"proxy-{i}.log").read_text(errors="replace")[-2000:]
            for i in range(len(self._procs))
        )

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for log in self._logs:
            log.close()
