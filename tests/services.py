"""The machine's services the scale-out tests use, and how to tell they are there: Redis on
127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (trust auth, database ``test``). Tests that
need one skip with a reason naming it; ``.ci/run`` fails first when either is missing."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

SHARED_REDIS = "redis://127.0.0.1:6379/0"
REDIS_MISSING = "Redis is not running on 127.0.0.1:6379"
POSTGRES = "postgresql://127.0.0.1:5432/test"
POSTGRES_MISSING = "PostgreSQL is not running on 127.0.0.1:5432"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_answers(host: str = "127.0.0.1", port: int = 5432) -> bool:
    """The server accepts a TCP connection and answers an SSL request (a PostgreSQL
    server says 'S' or 'N'; anything else is not one)."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
            return s.recv(1) in (b"S", b"N")
    except OSError:
        return False


def redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class PrivateRedis:
    """A ``redis-server`` of the test's own, that the test may stop and start again (the
    machine's shared Redis is never stopped)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not redis_answers("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("private redis-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
