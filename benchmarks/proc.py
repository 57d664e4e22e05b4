"""Reading a process from ``/proc``: resident memory, open descriptors, threads, CPU time.

Linux only, and only processes the harness started (same user), so nothing here needs
privileges. Every reader returns None rather than raising once the process has gone.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from types import TracebackType

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Snapshot:
    rss_mb: float
    hwm_mb: float
    """Peak resident memory over the whole life of the process (``VmHWM``)."""
    fds: int
    threads: int
    cpu_s: float


def _status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            name, _, value = line.partition(":")
            out[name] = value.strip()
    return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` so far."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after its ')' are fixed.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mb(pid: int) -> float | None:
    try:
        return int(_status(pid)["VmRSS"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        return None


def snapshot(pid: int) -> Snapshot | None:
    try:
        status = _status(pid)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    cpu = cpu_seconds(pid)
    return Snapshot(
        rss_mb=int(status["VmRSS"].split()[0]) / 1024,
        hwm_mb=int(status["VmHWM"].split()[0]) / 1024,
        fds=fds,
        threads=int(status["Threads"]),
        cpu_s=cpu if cpu is not None else 0.0,
    )


class CpuMeter:
    """CPU use of some processes over a window, in percent of one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._start = time.monotonic()
        self._cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def percent(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self._start, 1e-6)
        out: dict[str, float] = {}
        for name, pid in self._pids.items():
            before, after = self._cpu[name], cpu_seconds(pid)
            if before is not None and after is not None:
                out[name] = round(100 * (after - before) / elapsed, 1)
        return out


class PeakRss:
    """Samples a process's RSS in a thread while the block runs; ``peak_mb`` is the largest."""

    def __init__(self, pid: int | None, interval: float = 0.05) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_mb = 0.0

    def _run(self) -> None:
        while self._pid is not None and not self._stop.is_set():
            value = rss_mb(self._pid)
            if value is None:
                return
            self.peak_mb = max(self.peak_mb, value)
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        if self._pid is not None:
            last = rss_mb(self._pid)
            if last is not None:
                self.peak_mb = max(self.peak_mb, last)


def _core_times() -> dict[str, tuple[int, int]]:
    """Per core: (busy, total) jiffies from /proc/stat; idle and iowait are not busy."""
    out: dict[str, tuple[int, int]] = {}
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                values = [int(v) for v in fields[:8]]
                total = sum(values)
                out[name] = (total - values[3] - values[4], total)
    return out


class CoreMeter:
    """Busy share of each core over a window, kernel time (loopback TCP) included, which a
    process's own CPU time leaves out."""

    def __init__(self) -> None:
        self._start = _core_times()

    def percent(self) -> dict[str, float]:
        end = _core_times()
        out: dict[str, float] = {}
        for name, (busy, total) in end.items():
            b0, t0 = self._start.get(name, (0, 0))
            if total > t0:
                out[f"{name}_busy_pct"] = round(100 * (busy - b0) / (total - t0), 1)
        return out


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen backlog was full."""
    try:
        with open("/proc/net/netstat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", 0))
    return 0
