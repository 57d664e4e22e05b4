"""One-file candidates, measured: ``python -m benchmarks.onefile [--runs N]``.

Builds what is missing (``make dist`` for PyInstaller, a shiv zipapp from the same dist venv
under ``build/``), then for each candidate and for the venv's own console script measures
the file size, ``--version`` wall time, and the time from exec to a 200 on ``/healthz``
serving a fresh ``nitroproxy init`` configuration (medians of N runs, each in a fresh HOME so
that shiv's first-run unpack is measured apart from its warm starts). Prints a Markdown
table; benchmarks/RESULTS.md keeps one.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST_VENV = ROOT / "build" / "dist-venv"
SHIV = ROOT / "build" / "nitroproxy.pyz"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build() -> None:
    subprocess.run(["make", "dist"], cwd=ROOT, check=True)
    if not SHIV.exists():
        pip = DIST_VENV / "bin" / "pip"
        subprocess.run([str(pip), "install", "-q", "shiv"], check=True)
        subprocess.run(
            # -e, not -c: shiv imports "a.b:c" as the module a.b.c first, and
            # nitroproxy.cli.main is a module as well as the function.
            [str(DIST_VENV / "bin" / "shiv"), "-q", "-e", "nitroproxy.cli.main:main",
             "-o", str(SHIV), "--compressed", str(ROOT)],
            check=True,
        )  # fmt: skip


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants so far (a PyInstaller one-file
    build is two processes: the bootloader that unpacks, and the Python it starts)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_cpu_seconds(int(child)) for child in children)


def startup(command: list[str], home: Path) -> tuple[float, float]:
    """Seconds from exec to the first 200 on /healthz, with the config ``init`` wrote, and
    the CPU seconds spent by then (steadier than wall time on a shared machine)."""
    env = {**os.environ, "HOME": str(home)}
    for name in ("NITROPROXY_CONFIG", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        env.pop(name, None)
    port, mock = _port(), _port()
    if not (home / ".config" / "nitroproxy" / "config.yaml").exists():
        subprocess.run(
            [*command, "init", "--port", str(port), "--mock-port", str(mock)],
            env=env, capture_output=True, check=True, cwd=home,
        )  # fmt: skip
    config = (home / ".config" / "nitroproxy" / "config.yaml").read_text()
    url = f"http://127.0.0.1:{config.split('port: ')[1].split()[0]}/healthz"
    started = time.monotonic()
    proc = subprocess.Popen(
        [*command, "serve"], env=env, cwd=home, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while not _healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"{command} serve exited {proc.returncode}")
            time.sleep(0.005)
        return time.monotonic() - started, _cpu_seconds(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def version_time(command: list[str], home: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, less sensitive to a loaded machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(
        [*command, "--version"], env={**os.environ, "HOME": str(home)}, check=True,
        capture_output=True,
    )  # fmt: skip
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="runs per figure (default 7)")
    runs = parser.parse_args().runs
    build()
    venv = ROOT / ".venv" / "bin" / "nitroproxy"
    candidates = {
        "venv console script (needs the venv)": ([str(venv)], None),
        "PyInstaller one-file, stripped": (
            [str(ROOT / "dist" / "nitroproxy")],
            ROOT / "dist" / "nitroproxy",
        ),
        "shiv zipapp (needs a matching Python 3.11)": ([sys.executable, str(SHIV)], SHIV),
    }
    print(f"load average before: {os.getloadavg()[0]:.2f}; {runs} runs each, medians\n")
    print("| candidate | size | `--version`, first | `--version` (CPU) | exec to healthy (CPU) |")
    print("| --- | --- | --- | --- | --- |")
    for name, (command, file) in candidates.items():
        size = "-" if file is None else f"{file.stat().st_size / 1e6:.1f} MB"
        firsts: list[float] = []
        versions: list[tuple[float, float]] = []
        starts: list[tuple[float, float]] = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                home = Path(tmp)
                firsts.append(version_time(command, home)[0])  # shiv unpacks to ~/.shiv here
                versions.append(version_time(command, home))
                starts.append(startup(command, home))
        print(
            f"| {name} | {size} | {statistics.median(firsts):.2f} s "
            f"| {statistics.median(v[0] for v in versions):.2f} s "
            f"({statistics.median(v[1] for v in versions):.2f} s) "
            f"| {statistics.median(s[0] for s in starts):.2f} s "
            f"({statistics.median(s[1] for s in starts):.2f} s) |"
        )
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
