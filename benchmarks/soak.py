"""The soak: 100,000 mixed requests through nitroproxy, with RSS, descriptors and threads read
after the first 10,000 and at the end (a leak shows as growth between the two)."""

from __future__ import annotations

import time
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import loadgen, phases
from benchmarks.proc import snapshot
from benchmarks.targets import Target
from benchmarks.worker import Worker

STREAM_EVERY = 5
"""One request in five is a (short) stream."""


def _point(target: Target, at: str, requests: int, settle: float) -> dict[str, Any]:
    time.sleep(settle)  # let the last responses and the usage writer settle
    snap = snapshot(target.pid) if target.pid is not None else None
    if snap is None:
        return {"at": at, "requests": requests, "rss_mb": 0.0, "fds": 0, "threads": 0}
    return {"at": at, "requests": requests, **asdict(snap)}


def _gauges(target: Target) -> dict[str, float]:
    """A few of the proxy's own gauges and counters, if it exposes /metrics."""
    wanted = (
        "nitroproxy_active_streams",
        "nitroproxy_usage_queue_depth",
        "nitroproxy_usage_records_dropped_total",
        "nitroproxy_usage_records_written_total",
    )
    try:
        with urllib.request.urlopen(target.base_url + "/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            out[name] = float(value)
    return out


def run(
    generator: str,
    target: Target,
    models: phases.Models,
    first: int,
    total: int,
    out_dir: Path,
    settle: float = 1.0,
    worker: Worker | None = None,
) -> dict[str, Any]:
    spec = phases.soak_spec(models, STREAM_EVERY)
    points = [_point(target, "start", 0, settle)]
    legs = []
    done = 0
    for label, count in (("first", first), ("rest", total - first)):
        bound = max(30.0, count / 200)  # a floor of 200 req/s, or the run is broken anyway
        result = loadgen.run(generator, spec, target, connections=50, duration=bound,
                          requests=count, out_dir=out_dir, label=f"soak-{label}",
                             worker=worker)  # fmt: skip
        legs.append(asdict(result))
        done += result.requests
        points.append(_point(target, f"after {label}", done, settle))
    base, end = points[1], points[-1]
    seconds = sum(leg["duration_s"] for leg in legs)
    kinds: dict[str, int] = {}
    for leg in legs:
        for k, v in leg["error_kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
    gauges = _gauges(target)
    return {
        "target": target.name,
        "generator": generator,
        "requests": done,
        "ok": sum(leg["ok"] for leg in legs),
        "errors": sum(leg["errors"] for leg in legs),
        "error_kinds": kinds,
        "rps": round(sum(leg["ok"] for leg in legs) / seconds, 1) if seconds else 0.0,
        "points": points,
        "rss_growth": round((end["rss_mb"] - base["rss_mb"]) / base["rss_mb"], 4)
        if base["rss_mb"]
        else None,
        "fd_growth": end["fds"] - base["fds"],
        "thread_growth": end["threads"] - base["threads"],
        "active_streams_after": gauges.get("nitroproxy_active_streams"),
        "proxy_gauges": gauges,
        "legs": legs,
    }
