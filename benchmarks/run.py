"""The benchmark suite: ``python -m benchmarks.run --profile full|quick|tiny [--peers]``.

Starts the upstream, the relay, the nitroproxy variants (and LiteLLM with ``--peers``), each
pinned (proxies on core 0, upstream and load generators on core 1), runs every phase with the
targets interleaved and repeated, then the soak and the micro-benchmarks, and writes
``benchmarks/results/<timestamp>/`` (raw outputs, results.json, summary.md). Every process it
starts is stopped on the way out, also on error, SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import loadgen, machine, phases, report, soak, summary
from benchmarks.peers import ensure_litellm, start_litellm
from benchmarks.targets import (
    LOAD_CPU,
    VARIANTS,
    Processes,
    Target,
    pinned,
    start_nitroproxy,
    start_relay,
    start_upstream,
    wait_ready,
)
from benchmarks.worker import Worker


@dataclass(frozen=True)
class Profile:
    repeats: int
    warmup_s: float
    chat_c50_s: float
    chat_c1_s: float
    stream_c100_s: float
    stream_tput_s: float
    wave: int
    """Concurrent streams in ``stream_c1000``."""
    soak_first: int
    soak_total: int
    micro_scale: float
    budget_s: float
    """Hard bound on the whole run; phases left when it runs out are skipped and listed."""
    settle_s: float = 1.0
    """Pause after each run, so the usage writer and closing connections settle."""


PROFILES = {
    "full": Profile(3, 2, 10, 5, 8, 6, 1000, 10_000, 100_000, 1.0, 14 * 60),
    "quick": Profile(1, 1, 3, 2, 3, 2, 1000, 2_000, 10_000, 0.2, 4 * 60),
    "tiny": Profile(1, 0, 0.2, 0.2, 0.2, 0.2, 40, 100, 300, 0.01, 90, settle_s=0.1),
}
PHASE_TARGETS: dict[str, tuple[str, ...]] = {
    "chat_c50": ("direct", "relay", "nitroproxy", "nitroproxy-bare", "nitroproxy-nometrics",
                 "nitroproxy-nolimits", "nitroproxy-traced", "nitroproxy-traced10", "litellm"),
    "chat_c1": ("direct", "relay", "nitroproxy", "nitroproxy-bare", "litellm"),
    "stream_c100": ("direct", "relay", "nitroproxy", "nitroproxy-bare", "litellm"),
    "stream_tput": ("direct", "relay", "nitroproxy", "nitroproxy-notokens"),
    "stream_c1000": ("direct", "relay", "nitroproxy"),
    "soak": ("nitroproxy",),
}  # fmt: skip
ALL_PHASES = (*PHASE_TARGETS, "micro")


class Bench:
    """One run of the suite: its targets, its budget and what it has measured so far."""

    def __init__(self, args: argparse.Namespace, run_dir: Path) -> None:
        self.args = args
        self.profile = PROFILES[args.profile]
        self.run_dir = run_dir
        self.raw = run_dir / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        self.models = phases.Models(args.fault or "")
        self.notes: list[str] = []
        self.runs: list[dict[str, Any]] = []
        self.targets: dict[str, Target] = {}
        self.upstream_pid: int | None = None
        self.deadline = time.monotonic() + self.profile.budget_s
        self.generator = "python"
        self.versions_extra: dict[str, str] = {}
        self.pids: dict[str, int] = {}
        self.procs: Processes
        self._worker: Worker | None = None

    def wanted(self) -> list[str]:
        names = {t for p in self.args.phases for t in PHASE_TARGETS.get(p, ())}
        if not self.args.peers:
            names.discard("litellm")
        if self.args.targets:
            names &= set(self.args.targets)
        return sorted(names)

    def start(self, procs: Processes) -> None:
        self.procs = procs
        self.new_worker()
        upstream = start_upstream(procs)
        self.upstream_pid = procs.pid("upstream")
        self.targets["direct"] = upstream
        wanted = self.wanted()
        started = []
        if "relay" in wanted:
            self.targets["relay"] = start_relay(procs, upstream)
        for name in wanted:
            if name in VARIANTS:
                target, proc = start_nitroproxy(procs, name, upstream, self.models.all(), self.raw)
                started.append((target, proc))
        for target, proc in started:
            wait_ready(target, proc, "/healthz", 60)
            self.targets[target.name] = target
        if "litellm" in wanted:
            self._start_litellm(procs, upstream)

    def _start_litellm(self, procs: Processes, upstream: Target) -> None:
        log: list[str] = []
        version = ensure_litellm(log)
        (self.raw / "litellm-install.txt").write_text("\n".join(log), encoding="utf-8")
        if version is None:
            self.notes.append("litellm could not be installed; see raw/litellm-install.txt")
            return
        self.versions_extra["litellm"] = version
        try:
            self.targets["litellm"] = start_litellm(procs, upstream, self.models.all(), self.raw)
        except RuntimeError as exc:
            self.notes.append(f"litellm did not start: {exc}")

    def new_worker(self) -> Worker:
        """The load worker, restarted if the last one died or was killed for a timeout."""
        if self._worker is None or self._worker.proc.poll() is not None:
            argv = pinned(LOAD_CPU, [sys.executable, "-m", "benchmarks.worker"])
            self._worker = Worker(self.procs.start("loadworker", argv, pipe=True))
        return self._worker

    def over_budget(self, what: str) -> bool:
        if time.monotonic() < self.deadline:
            return False
        self.notes.append(f"time budget exhausted: skipped {what}")
        return True

    def measure(self, phase: str, target: Target, rep: int) -> dict[str, Any]:
        p, label = self.profile, f"{phase}-{target.name}-{rep}"
        common: dict[str, Any] = {"upstream_pid": self.upstream_pid, "out_dir": self.raw,
                                  "label": label, "worker": self.new_worker()}  # fmt: skip
        spec = phases.chat_spec(self.models)
        if phase in ("chat_c50", "chat_c1"):
            conns, secs = (50, p.chat_c50_s) if phase == "chat_c50" else (1, p.chat_c1_s)
            return phases.chat(self.generator, spec, target, connections=conns, duration=secs,
                               **common)  # fmt: skip
        if phase == "stream_c100":
            ramp = phases.STREAM_TOKENS * phases.STREAM_DELAY_MS / 1000
            return phases.stream(target, self.models.stream, concurrency=100, ramp=ramp,
                                 duration=p.stream_c100_s, **common)  # fmt: skip
        if phase == "stream_tput":
            return phases.stream(target, self.models.stream_fast, concurrency=20,
                                 duration=p.stream_tput_s, **common)  # fmt: skip
        return phases.stream(target, self.models.stream, concurrency=p.wave, count=p.wave,
                             **common)  # fmt: skip

    def phase(self, phase: str) -> None:
        names = [t for t in PHASE_TARGETS[phase] if t in self.targets]
        for rep in range(self.profile.repeats):
            shift = rep % max(1, len(names))
            for name in names[shift:] + names[:shift]:  # interleaved, rotated each repeat
                if self.over_budget(f"{phase}/{name}#{rep}"):
                    return
                result = self.measure(phase, self.targets[name], rep)
                self.runs.append({"phase": phase, "target": name, "rep": rep, **result})
                _progress(f"{phase:<13} {name:<21} #{rep} " + _brief(result))
                time.sleep(self.profile.settle_s)

    def warm_up(self) -> None:
        secs = self.profile.warmup_s
        if secs <= 0:
            return
        for name, target in self.targets.items():
            phases.chat(self.generator, phases.chat_spec(self.models), target, connections=10,
                        duration=secs, upstream_pid=None, out_dir=self.raw,
                        label=f"warmup-{name}", worker=self.new_worker())  # fmt: skip


def _brief(result: dict[str, Any]) -> str:
    keys = ("rps", "p50_ms", "p99_ms", "streams_per_s", "ttft_p50_ms", "ttft_p99_ms",
            "rss_peak_mb", "errors")  # fmt: skip
    return " ".join(f"{k}={result[k]}" for k in keys if k in result)


def _progress(line: str) -> None:
    print(line, flush=True)


def _choose_generator(bench: Bench) -> None:
    if bench.args.loadgen == "python":
        bench.notes.append("non-streamed load from the Python generator (--loadgen python)")
        return
    log: list[str] = []
    if loadgen.ensure_wrk(log):
        bench.generator = "wrk"
    else:
        bench.notes.append(
            "wrk missing and could not be installed: non-streamed load from the Python "
            "generator, whose own ceiling may cap the figures (" + "; ".join(log) + ")"
        )
    if log:
        (bench.raw / "wrk-install.txt").write_text("\n".join(log), encoding="utf-8")


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def execute(bench: Bench) -> tuple[dict[str, Any], dict[str, Any]]:
    soak_result: dict[str, Any] = {}
    micro_result: dict[str, Any] = {}
    with Processes(bench.raw) as procs:
        try:
            bench.start(procs)
        finally:
            bench.pids = procs.pids()
        bench.warm_up()
        for phase in bench.args.phases:
            if phase in PHASE_TARGETS and phase != "soak":
                bench.phase(phase)
        wants_soak = "soak" in bench.args.phases and "nitroproxy" in bench.targets
        if wants_soak and not bench.over_budget("soak"):
            p = bench.profile
            soak_result = soak.run(bench.generator, bench.targets["nitroproxy"], bench.models,
                                   p.soak_first, p.soak_total, bench.raw, p.settle_s,
                                   bench.new_worker())  # fmt: skip
            _progress(f"soak {_brief(soak_result)} rss_growth={soak_result.get('rss_growth')}")
    if "micro" in bench.args.phases and not bench.over_budget("micro"):
        micro_result = machine.run_micro(bench.profile.micro_scale, bench.raw)
    machine.shrink_logs(bench.raw)
    return soak_result, micro_result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--peers", action="store_true", help="also LiteLLM (installs it)")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--phases", type=_csv(ALL_PHASES), default=list(ALL_PHASES))
    parser.add_argument("--targets", type=_csv((*VARIANTS, "direct", "relay", "litellm")))
    parser.add_argument("--fault", help="a mock directive added to every model, e.g. fail500")
    parser.add_argument("--out", type=Path, help="results directory (default: a new timestamp "
                        "directory under benchmarks/results)")  # fmt: skip
    return parser.parse_args(argv)


def _csv(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def convert(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [t for t in items if t not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {allowed}")
        return items

    return convert


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    run_dir = args.out or Path("benchmarks/results") / started.strftime("%Y%m%dT%H%M%SZ")
    bench = Bench(args, run_dir)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    began = time.monotonic()
    _choose_generator(bench)
    status = 0
    try:
        soak_result, micro_result = execute(bench)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: every process is stopped by now
        bench.notes.append(f"interrupted ({exc or 'Ctrl-C'}): only the runs above completed")
        soak_result, micro_result, status = {}, {}, 130
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "elapsed_s": round(time.monotonic() - began, 1),
        "command": "python -m benchmarks.run "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "profile": args.profile,
        "repeats": bench.profile.repeats,
        "profile_settings": asdict(bench.profile),
        "generator": bench.generator,
        "fault": args.fault,
        "notes": bench.notes,
        "targets": sorted(bench.targets),
        "pids": bench.pids,
        **machine.describe(bench.generator, bench.versions_extra),
    }
    doc, agg = report.build(meta, bench.runs, soak_result, micro_result)
    report.write_json(run_dir / "results.json", doc)
    (run_dir / "summary.md").write_text(summary.render(doc, agg), encoding="utf-8")
    print(f"results: {run_dir}/summary.md ({doc['errors']} errors)", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
