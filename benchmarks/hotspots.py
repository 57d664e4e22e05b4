"""Where a nitroproxy target spends its time under load: ``python -m benchmarks.hotspots``.

Starts the upstream and one nitroproxy variant (pinned as in the suite), drives non-streamed
chat at 50 connections (or streams with ``--stream``) and samples the proxy with py-spy
(installed into the running venv if missing); prints the functions with the most samples,
by own time and by inclusive time, and writes the raw collapsed stacks next to the report.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from benchmarks import loadgen, phases
from benchmarks.targets import (
    LOAD_CPU,
    VARIANTS,
    Processes,
    pinned,
    start_nitroproxy,
    start_upstream,
    wait_ready,
)  # fmt: skip
from benchmarks.worker import Worker


def _py_spy() -> str | None:
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=False)
    return str(exe) if exe.exists() else shutil.which("py-spy")


def summarize(collapsed: Path, top: int = 25) -> str:
    """Top frames by own samples and by inclusive samples from py-spy's ``raw`` output."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [f for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    out = [f"{samples} samples", "", "own time:"]
    out += [f"  {100 * n / samples:5.1f}%  {f}" for f, n in own.most_common(top)]
    out += ["", "inclusive time:"]
    out += [f"  {100 * n / samples:5.1f}%  {f}" for f, n in total.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="nitroproxy")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--stream", action="store_true", help="streams instead of chat")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hotspots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    spy = _py_spy()
    if spy is None:
        sys.exit("py-spy is not available")
    models = phases.Models()
    with Processes(args.out) as procs:
        upstream = start_upstream(procs)
        target, proc = start_nitroproxy(procs, args.variant, upstream, models.all(), args.out)
        wait_ready(target, proc, "/healthz", 60)
        argv = pinned(LOAD_CPU, [sys.executable, "-m", "benchmarks.worker"])
        worker = Worker(procs.start("loadworker", argv, pipe=True))
        raw = args.out / f"{args.variant}{'-stream' if args.stream else ''}.collapsed.txt"
        spy_cmd = [spy, "record", "--pid", str(target.pid), "--duration", str(args.seconds),
                   "--rate", "250", "--format", "raw", "--nonblocking", "-o", str(raw)]  # fmt: skip
        recorder = threading.Thread(
            target=subprocess.run, args=(spy_cmd,), kwargs={"capture_output": True}
        )
        recorder.start()
        if args.stream:
            result = phases.stream(target, models.stream_fast, worker=worker, upstream_pid=None,
                                   concurrency=20, duration=args.seconds + 1, out_dir=args.out,
                                   label="hotspots-load")  # fmt: skip
        else:
            result = phases.chat("wrk" if loadgen.ensure_wrk([]) else "python",
                                 phases.chat_spec(models), target, worker=worker,
                                 upstream_pid=None, connections=50, duration=args.seconds + 1,
                                 out_dir=args.out, label="hotspots-load")  # fmt: skip
        recorder.join(timeout=args.seconds + 30)
    report = summarize(raw)
    (raw.with_suffix(".top.txt")).write_text(report, encoding="utf-8")
    rate = result.get("rps") or result.get("streams_per_s")
    print(f"load: {rate}/s, errors {result.get('errors')}\n{report}")


if __name__ == "__main__":
    main()
