"""One measurement of one phase against one target, as a flat dict for results.json.

Every measurement also records the CPU use of the process under test, of the upstream and of
the load generator over the same window: the upstream's share is the evidence that it is not
the bottleneck.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import loadgen, streams
from benchmarks.proc import CoreMeter, CpuMeter, PeakRss, listen_overflows
from benchmarks.targets import Target
from benchmarks.worker import Worker
from nitroproxy.mock.content import completion_text

CHAT_PATH = "/v1/chat/completions"
CHAT_TOKENS = 16
STREAM_TOKENS = 50
STREAM_DELAY_MS = 5
SOAK_STREAM_TOKENS = 20
_PROMPT = [{"role": "user", "content": "Say hello to the benchmark, please."}]


@dataclass(frozen=True)
class Models:
    """The scripted upstream model names; ``fault`` (e.g. ``fail500``) is appended to each."""

    fault: str = ""

    def _name(self, tokens: int, delay_ms: int = 0) -> str:
        name = f"mock+tokens={tokens}" + (f"+delay={delay_ms}" if delay_ms else "")
        return name + (f"+{self.fault}" if self.fault else "")

    @property
    def chat(self) -> str:
        return self._name(CHAT_TOKENS)

    @property
    def stream(self) -> str:
        return self._name(STREAM_TOKENS, STREAM_DELAY_MS)

    @property
    def stream_fast(self) -> str:
        return self._name(STREAM_TOKENS)

    @property
    def soak_stream(self) -> str:
        return self._name(SOAK_STREAM_TOKENS)

    def all(self) -> list[str]:
        return [self.chat, self.stream, self.stream_fast, self.soak_stream]


def body(model: str, *, stream: bool = False) -> str:
    payload: dict[str, Any] = {"model": model, "messages": _PROMPT}
    if stream:
        payload["stream"] = True
    return json.dumps(payload, separators=(",", ":"))


def chat_spec(models: Models) -> loadgen.Spec:
    expect = json.dumps(completion_text(CHAT_TOKENS))[1:-1]
    return loadgen.Spec((loadgen.Request(CHAT_PATH, body(models.chat)),), expect=(expect,))


def soak_spec(models: Models, stream_every: int) -> loadgen.Spec:
    """Non-streamed chat mixed with short streams; a stream is good if it ends in [DONE]."""
    expect = json.dumps(completion_text(CHAT_TOKENS))[1:-1]
    requests = (
        loadgen.Request(CHAT_PATH, body(models.chat)),
        loadgen.Request(CHAT_PATH, body(models.soak_stream, stream=True), stream=True),
    )
    pattern = (0,) * (stream_every - 1) + (1,)
    return loadgen.Spec(requests, pattern, expect=(expect, "data: [DONE]"))


class Meter:
    """CPU of the target, the upstream and the load generator over one window. A generator
    that is a short-lived child (wrk) is measured by the children's rusage."""

    def __init__(self, target: Target, upstream_pid: int | None, loadgen_pid: int | None) -> None:
        pids = {"upstream": upstream_pid} if upstream_pid is not None else {}
        if target.pid is not None:
            pids["target"] = target.pid
        if loadgen_pid is not None:
            pids["loadgen"] = loadgen_pid
        self._cpu = CpuMeter(pids)
        self._cores = CoreMeter()
        self._overflows = listen_overflows()
        self._child = loadgen_pid is None
        self._began = time.monotonic()
        self._children = _children_cpu()

    def result(self) -> dict[str, float]:
        out = {f"cpu_{k}_pct": v for k, v in self._cpu.percent().items()}
        out.update(self._cores.percent())
        out["listen_overflows"] = listen_overflows() - self._overflows
        if self._child:
            elapsed = max(time.monotonic() - self._began, 1e-6)
            out["cpu_loadgen_pct"] = round(100 * (_children_cpu() - self._children) / elapsed, 1)
        return out


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def chat(
    generator: str,
    spec: loadgen.Spec,
    target: Target,
    *,
    worker: Worker,
    upstream_pid: int | None,
    connections: int,
    duration: float,
    out_dir: Path,
    label: str,
) -> dict[str, Any]:
    meter = Meter(target, upstream_pid, worker.pid if generator == "python" else None)
    with PeakRss(target.pid) as rss:
        result = loadgen.run(
            generator, spec, target, connections=connections, duration=duration,
            out_dir=out_dir, label=label, worker=worker,
        )  # fmt: skip
    return {**asdict(result), **meter.result(), "rss_peak_mb": round(rss.peak_mb, 1)}


def stream(
    target: Target,
    model: str,
    *,
    worker: Worker,
    upstream_pid: int | None,
    concurrency: int,
    duration: float = 0.0,
    count: int = 0,
    tokens: int = STREAM_TOKENS,
    ramp: float = 0.0,
    out_dir: Path,
    label: str,
) -> dict[str, Any]:
    """``count`` streams in all, or as many as start within ``duration`` seconds; the first
    starts are spread over ``ramp`` seconds."""
    job = {
        "kind": "stream",
        "url": target.base_url + CHAT_PATH,
        "body": body(model, stream=True),
        "headers": {"Content-Type": "application/json", **target.headers},
        "tokens": tokens,
        "concurrency": concurrency,
        "streams": count,
        "duration": duration if duration > 0 else 3600,
        "timeout": 120,
        "ramp": ramp,
    }
    bound = (duration if duration > 0 else 60) + 150
    meter = Meter(target, upstream_pid, worker.pid)
    with PeakRss(target.pid) as rss:
        answer = worker.call(job, bound)
    stdout, error = answer["stdout"], answer.get("error", "")
    (out_dir / f"{label}.txt").write_text(
        f"worker job: {json.dumps(job)}\n{stdout}\n{error}", encoding="utf-8"
    )
    result = streams.parse(stdout)
    return {**result, **meter.result(), "rss_peak_mb": round(rss.peak_mb, 1)}
