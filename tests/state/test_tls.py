"""Other ways to reach Redis, against private servers: ``rediss://`` with a password (a
wrong one is a one-line start-up error that does not print it) and ``unix://``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from prometheus_client import CollectorRegistry

from nitroproxy import config
from nitroproxy.config import FailPolicy, StartupError, StateSettings
from nitroproxy.core.limits import KeyLimits
from nitroproxy.proxy.clock import Clock
from nitroproxy.proxy.limiter import Reservation, Scope
from nitroproxy.state.limiter import RedisLimiter
from nitroproxy.state.link import RedisLink
from nitroproxy.state.shared import SharedState
from tests.services import free_port

PASSWORD = "s3cret-redis-pass"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (needed for a private TLS Redis)")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file),
            "--tls-ca-cert-file", str(ca_file), "--tls-auth-clients", "no",
            "--requirepass", PASSWORD, "--save", "", "--appendonly", "no",
            "--dir", str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip("this redis-server does not serve TLS")
            time.sleep(0.05)
        yield port, ca_file
    finally:
        proc.kill()
        proc.wait(10)


async def test_the_limiter_works_over_rediss_with_a_password(tls_redis) -> None:
    port, ca_file = tls_redis
    settings = StateSettings(
        backend="redis",
        url=f"rediss://:{PASSWORD}@127.0.0.1:{port}/0",
        ca_bundle=str(ca_file),
        prefix="nptest-tls",
        timeout=2.0,
    )
    link = RedisLink(settings)
    limiter = RedisLimiter(link, Clock(), FailPolicy())
    try:
        reservation = Reservation((Scope("key:k", KeyLimits(rpm=2)),), wall=1_760_000_000.0)
        allowed = [(await limiter.reserve(reservation)).allowed for _ in range(3)]
        assert allowed == [True, True, False]
        assert link.up
    finally:
        await limiter.close()
        await link.close()


async def test_a_wrong_password_fails_the_start_in_one_line_without_it(tls_redis) -> None:
    port, ca_file = tls_redis
    settings = config.parse(
        {
            "state": {
                "backend": "redis",
                "url": f"rediss://:not-{PASSWORD}@127.0.0.1:{port}/0",
                "ca_bundle": str(ca_file),
            }
        }
    )
    state = SharedState(settings)
    with pytest.raises(StartupError) as err:
        await state.start(CollectorRegistry())
    message = str(err.value)
    assert message.startswith(f"state.backend redis: cannot reach rediss://127.0.0.1:{port}/0")
    assert PASSWORD not in message and "\n" not in message


@pytest.fixture
def unix_redis(tmp_path: Path) -> Iterator[Path]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (needed for a private Redis on a socket)")
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        yield sock
    finally:
        proc.kill()
        proc.wait(10)


async def test_the_limiter_works_over_a_unix_socket(unix_redis: Path) -> None:
    settings = StateSettings(
        backend="redis", url=f"unix://{unix_redis}?db=0", prefix="nptest-unix", timeout=2.0
    )
    link = RedisLink(settings)
    limiter = RedisLimiter(link, Clock(), FailPolicy())
    try:
        reservation = Reservation((Scope("key:k", KeyLimits(rpm=1)),), wall=1_760_000_000.0)
        allowed = [(await limiter.reserve(reservation)).allowed for _ in range(2)]
        assert allowed == [True, False]
    finally:
        await limiter.close()
        await link.close()
