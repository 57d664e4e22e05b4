"""What the run ran on (machine, versions), the micro-benchmark subprocess, and log trimming."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import micro
from benchmarks.targets import PROXY_CPU, pinned


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def describe(generator: str, extra: dict[str, str]) -> dict[str, Any]:
    versions = {
        "python": platform.python_version(),
        **{d: _version(d) for d in ("nitroproxy", "aiohttp", "uvloop", "orjson", "tiktoken")},
    }
    if generator == "wrk":
        versions["wrk"] = _output(["wrk", "-v"]).split("[")[0].removeprefix("wrk ").strip()
    versions.update(extra)
    commit = _output(["git", "rev-parse", "--short", "HEAD"])
    dirty = bool(_output(["git", "status", "--porcelain"]))
    if not commit or commit.startswith("fatal"):
        # Not a checkout (e.g. a `git archive` snapshot): the caller may say what it is.
        commit, dirty = os.environ.get("BENCH_SOURCE", "unknown source"), False
    return {
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": _cpu_model(),
            "kernel": f"{platform.system()} {platform.release()}",
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        },
        "versions": versions,
        "git": f"{commit}{' (uncommitted changes)' if dirty else ''}",
        "pinning": "proxy on core 0, upstream and load on core 1 (taskset)"
        if shutil.which("taskset")
        else "none (taskset missing)",
    }


def run_micro(scale: float, raw: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.micro", "--scale", str(scale)]
    try:
        done = subprocess.run(pinned(PROXY_CPU, argv), capture_output=True, text=True,
                              timeout=300, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": "micro-benchmarks timed out"}
    (raw / "micro.txt").write_text(f"{done.stdout}\n{done.stderr}", encoding="utf-8")
    return micro.parse(done.stdout)


def shrink_logs(raw: Path, limit: int = 20 * 2**20, keep: int = 200) -> None:
    """Access logs of a full run reach hundreds of MB: keep the head and tail of big ones."""
    for log in raw.glob("*.log"):
        if log.stat().st_size <= limit:
            continue
        head: list[str] = []
        tail: list[str] = []
        count = 0
        with log.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                count += 1
                if len(head) < keep:
                    head.append(line)
                else:
                    tail.append(line)
                    if len(tail) > keep:
                        tail.pop(0)
        note = f"... {count - len(head) - len(tail):,} of {count:,} lines cut by the harness ...\n"
        log.write_text("".join(head) + note + "".join(tail), encoding="utf-8")
