"""What the packaging tests share: cutting the network, fresh environments, and one build of
each artifact per test session (make keeps dist/nitroproxy until a source changes)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SESSION = Path(__file__).with_name("newcomer_session.py")


def offline(argv: list[str]) -> list[str]:
    """``argv`` in a new network namespace: loopback only, so any use of the network fails."""
    return ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "offline", *argv]


@pytest.fixture(scope="session")
def no_network() -> None:
    if not (shutil.which("unshare") and shutil.which("ip")):
        pytest.skip("needs unshare (util-linux) and ip (iproute2) to run with no network")
    probe = subprocess.run(offline(["true"]), capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.strip()}")


def fresh_env(home: Path) -> dict[str, str]:
    """A new user's environment: a HOME of its own, no provider or NitroProxy variables."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        "LANG": "C.UTF-8",
    }


def intact(db: Path) -> bool:
    """The database exists and SQLite finds nothing wrong in it (the CLI and the server
    wrote to it side by side)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return bool(conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)])


def run_session(nitroproxy: str, workdir: Path, home: Path, *init_args: str) -> dict[str, Any]:
    """``newcomer_session.py`` with no network, in ``workdir``, with a fresh HOME."""
    done = subprocess.run(
        offline([sys.executable, str(SESSION), nitroproxy, str(workdir), *init_args]),
        cwd=workdir,
        env=fresh_env(home),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.fixture(scope="session")
def dist_binary() -> Path:
    """``make dist`` once per session; make rebuilds only when a source file changed."""
    if shutil.which("make") is None:
        pytest.skip("needs make to run `make dist`")
    done = subprocess.run(
        ["make", "dist"], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return ROOT / "dist" / "nitroproxy"


@pytest.fixture(scope="session")
def wheel_build() -> tuple[Path, str]:
    out = ROOT / "build" / "wheel-test"
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = out.glob("nitroproxy-*.whl")
    return wheel, done.stderr


@pytest.fixture(scope="session")
def installed(wheel_build: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bin/nitroproxy`` of a new venv holding the wheel and its runtime dependencies only."""
    venv = tmp_path_factory.mktemp("clean-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel_build[0])],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin" / "nitroproxy"
