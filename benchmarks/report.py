"""results.json and summary.md from the raw runs: medians with min/max, ratios, goal checks."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The numbers each phase reports, in table order.
_CORES = ("cpu_target_pct", "cpu_upstream_pct", "cpu_loadgen_pct", "cpu0_busy_pct",
          "cpu1_busy_pct")  # fmt: skip
PHASE_METRICS: dict[str, tuple[str, ...]] = {
    "chat_c50": ("rps", "p50_ms", "p99_ms", *_CORES),
    "chat_c1": ("rps", "p50_ms", "p99_ms", *_CORES),
    "stream_c100": ("streams_per_s", "ttft_p50_ms", "ttft_p99_ms", *_CORES),
    "stream_tput": ("streams_per_s", "tokens_per_s", *_CORES),
    "stream_c1000": ("ok", "ttft_p50_ms", "ttft_p99_ms", "duration_s", "rss_peak_mb",
                     "listen_overflows", "cpu0_busy_pct", "cpu1_busy_pct"),
}  # fmt: skip
PHASE_TITLES = {
    "chat_c50": "Non-streamed chat, 50 connections",
    "chat_c1": "Non-streamed chat, 1 connection",
    "stream_c100": "Streaming, 100 concurrent streams of 50 tokens 5 ms apart",
    "stream_tput": "Streaming throughput, 50-token streams with no delay (CPU-bound)",
    "stream_c1000": "Streaming, 1,000 concurrent streams (one wave)",
}


@dataclass(frozen=True)
class Stat:
    median: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 1) -> str:
        if self.n == 1 or self.low == self.high:
            return f"{self.median:,.{digits}f}"
        return f"{self.median:,.{digits}f} [{self.low:,.{digits}f}, {self.high:,.{digits}f}]"


def stat(values: Iterable[float]) -> Stat | None:
    vals = [float(v) for v in values]
    if not vals:
        return None
    return Stat(statistics.median(vals), min(vals), max(vals), len(vals))


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Stat]]]:
    out: dict[str, dict[str, dict[str, Stat]]] = {}
    for run in runs:
        out.setdefault(run["phase"], {}).setdefault(run["target"], {})
    for phase, targets in out.items():
        for target in targets:
            mine = [r for r in runs if r["phase"] == phase and r["target"] == target]
            for metric in (*PHASE_METRICS.get(phase, ()), "errors"):
                s = stat(r[metric] for r in mine if isinstance(r.get(metric), int | float))
                if s is not None:
                    targets[target][metric] = s
    return out


def _get(
    agg: Mapping[str, Mapping[str, Mapping[str, Stat]]], p: str, t: str, m: str
) -> float | None:
    s = agg.get(p, {}).get(t, {}).get(m)
    return None if s is None else s.median


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _cost(with_it: float | None, without: float | None) -> float | None:
    """The throughput share a feature costs: 1 - with/without."""
    r = _ratio(with_it, without)
    return None if r is None else 1 - r


def checks(agg: Any, micro: Mapping[str, Any], soak: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met."""
    rps = {t: _get(agg, "chat_c50", t, "rps") for t in agg.get("chat_c50", {})}
    rows: list[tuple[str, float | None, str, bool | None]] = []

    def at_least(name: str, value: float | None, goal: float, unit: str = "") -> None:
        rows.append((name, value, f"≥ {goal:g}{unit}", None if value is None else value >= goal))

    def at_most(name: str, value: float | None, goal: float, unit: str = "") -> None:
        rows.append((name, value, f"≤ {goal:g}{unit}", None if value is None else value <= goal))

    at_least("throughput nitroproxy / relay", _ratio(rps.get("nitroproxy"), rps.get("relay")), 0.70)
    at_least(
        "throughput nitroproxy-bare / relay", _ratio(rps.get("nitroproxy-bare"), rps.get("relay")),
        0.85,
    )  # fmt: skip
    if "litellm" in rps:
        at_least(
            "throughput nitroproxy / litellm", _ratio(rps.get("nitroproxy"), rps.get("litellm")), 3
        )
    c1 = "chat_c1"
    for q, goal in (("p50_ms", 1.0), ("p99_ms", 3.0)):
        added = _diff(_get(agg, c1, "nitroproxy", q), _get(agg, c1, "direct", q))
        at_most(f"added latency {q[:3]} at 1 connection (ms)", added, goal)
    added = _diff(
        _get(agg, "stream_c100", "nitroproxy", "ttft_p50_ms"),
        _get(agg, "stream_c100", "direct", "ttft_p50_ms"),
    )
    at_most("added TTFT p50 at 100 streams (ms)", added, 1.0)
    at_most("errors at 1,000 streams", _get(agg, "stream_c1000", "nitroproxy", "errors"), 0)
    at_most(
        "proxy RSS at 1,000 streams (MB)",
        _get(agg, "stream_c1000", "nitroproxy", "rss_peak_mb"),
        250,
    )
    points = soak.get("points") or [{}, {}]
    legs = f"{points[1].get('requests', 0):,} → {points[-1].get('requests', 0):,} requests"
    at_most(f"soak RSS growth {legs}", soak.get("rss_growth"), 0.10)
    writer = micro.get("usage_writer", {}).get("records_per_s")
    at_least("usage writer (records/s)", writer, 20_000)
    tput = "stream_tput"
    at_most(
        "token counting cost (stream throughput)",
        _cost(_get(agg, tput, "nitroproxy", "streams_per_s"),
              _get(agg, tput, "nitroproxy-notokens", "streams_per_s")),
        0.10,
    )  # fmt: skip
    at_most(
        "metrics + logs cost (throughput)",
        _cost(rps.get("nitroproxy"), rps.get("nitroproxy-nometrics")),
        0.05,
    )
    return [{"check": n, "value": v, "goal": g, "met": ok} for n, v, g, ok in rows]


def feature_costs(agg: Any) -> dict[str, float | None]:
    """Throughput share of each feature, from pairs of targets that differ only in it."""
    rps = {t: _get(agg, "chat_c50", t, "rps") for t in agg.get("chat_c50", {})}
    return {
        "usage records (nitroproxy-nometrics vs nitroproxy-bare)": _cost(
            rps.get("nitroproxy-nometrics"), rps.get("nitroproxy-bare")
        ),
        "metrics + access logs (nitroproxy vs nitroproxy-nometrics)": _cost(
            rps.get("nitroproxy"), rps.get("nitroproxy-nometrics")
        ),
        "limits and budgets (nitroproxy vs nitroproxy-nolimits)": _cost(
            rps.get("nitroproxy"), rps.get("nitroproxy-nolimits")
        ),
        "OpenTelemetry traces (nitroproxy-traced vs nitroproxy)": _cost(
            rps.get("nitroproxy-traced"), rps.get("nitroproxy")
        ),
        "traces, 10% sampled (nitroproxy-traced10 vs nitroproxy)": _cost(
            rps.get("nitroproxy-traced10"), rps.get("nitroproxy")
        ),
        "all features (nitroproxy vs nitroproxy-bare)": _cost(
            rps.get("nitroproxy"), rps.get("nitroproxy-bare")
        ),
        "the gateway itself (nitroproxy-bare vs relay)": _cost(
            rps.get("nitroproxy-bare"), rps.get("relay")
        ),
    }


def _stat_json(agg: Any) -> dict[str, Any]:
    return {
        p: {t: {m: vars(s) for m, s in ms.items()} for t, ms in ts.items()} for p, ts in agg.items()
    }


def build(
    meta: dict[str, Any], runs: list[dict[str, Any]], soak: dict[str, Any], micro: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, dict[str, Stat]]]]:
    """The results.json document, and the aggregates the summary is rendered from."""
    agg = aggregate(runs)
    errors = sum(int(r.get("errors", 0)) for r in runs) + int(soak.get("errors", 0))
    doc = {
        "meta": meta,
        "errors": errors,
        "checks": checks(agg, micro, soak),
        "feature_costs": feature_costs(agg),
        "phases": _stat_json(agg),
        "soak": soak,
        "micro": micro,
        "runs": runs,
    }
    return doc, agg


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
