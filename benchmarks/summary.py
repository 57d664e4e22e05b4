"""summary.md: the figures a reader needs, errors first, then goals, phases, soak, micro."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.report import PHASE_METRICS, PHASE_TITLES, Stat

_Agg = Mapping[str, Mapping[str, Mapping[str, Stat]]]
_ORDER = (
    "direct", "relay", "nitroproxy", "nitroproxy-bare", "nitroproxy-nometrics",
    "nitroproxy-notokens", "nitroproxy-nolimits", "nitroproxy-traced",
    "nitroproxy-traced10", "litellm",
)  # fmt: skip
_DIGITS = {"rps": 0, "streams_per_s": 1, "tokens_per_s": 0, "ok": 0, "duration_s": 1}
_ADDED = {"chat_c1": ("p50_ms", "p99_ms"), "stream_c100": ("ttft_p50_ms", "ttft_p99_ms")}


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _targets(targets: Mapping[str, Any]) -> list[str]:
    return sorted(targets, key=lambda t: _ORDER.index(t) if t in _ORDER else len(_ORDER))


def _header(doc: Mapping[str, Any]) -> list[str]:
    meta = doc["meta"]
    m = meta["machine"]
    lines = [
        f"# NitroProxy benchmark, {meta['started']}",
        "",
        f"- command: `{meta['command']}`",
        f"- profile: {meta['profile']}, repeats: {meta['repeats']}, elapsed: "
        f"{meta.get('elapsed_s', 0):.0f} s, non-streamed load: {meta['generator']}",
        f"- machine: {m['nproc']} cores, {m['cpu']}, {m['kernel']}; pinning: {meta['pinning']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}",
        "",
    ]
    errors = doc["errors"]
    if errors:
        bad = [
            f"{r['phase']}/{r['target']}#{r['rep']}: {r['errors']} {r.get('error_kinds')}"
            for r in doc["runs"]
            if r.get("errors")
        ]
        if doc["soak"].get("errors"):
            bad.append(f"soak: {doc['soak']['errors']} {doc['soak'].get('error_kinds')}")
        lines += [f"**ERRORS: {errors} failed requests or streams.** Runs with errors:", ""]
        lines += [f"- {b}" for b in bad[:40]] + [""]
    else:
        lines += ["**Errors: none** (every response checked: status, body, tokens, [DONE]).", ""]
    lines += [f"- note: {n}" for n in meta.get("notes", [])]
    return [*lines, ""]


def _checks(doc: Mapping[str, Any]) -> list[str]:
    lines = ["## Goals", "", "| check | measured | goal | met |", "|---|---|---|---|"]
    for c in doc["checks"]:
        met = {True: "yes", False: "**NO**", None: "n/a"}[c["met"]]
        lines.append(f"| {c['check']} | {_fmt(c['value'], 3)} | {c['goal']} | {met} |")
    lines += ["", "Feature costs (share of non-streamed throughput at 50 connections):", ""]
    for name, value in doc["feature_costs"].items():
        lines.append(f"- {name}: {'n/a' if value is None else f'{100 * value:.1f}%'}")
    return [*lines, ""]


def _phase(phase: str, targets: Mapping[str, Mapping[str, Stat]]) -> list[str]:
    metrics = [m for m in PHASE_METRICS[phase] if any(m in s for s in targets.values())]
    lines = [f"## {PHASE_TITLES[phase]} (`{phase}`)", "", "median [min, max] over the repeats", ""]
    lines.append("| target | " + " | ".join(metrics) + " | errors |")
    lines.append("|---" * (len(metrics) + 2) + "|")
    for target in _targets(targets):
        stats = targets[target]
        cells = [stats[m].text(_DIGITS.get(m, 2)) if m in stats else "" for m in metrics]
        errors = stats.get("errors")
        lines.append(
            f"| {target} | " + " | ".join(cells) + f" | {_fmt(errors and int(errors.high))} |"
        )
    for base_name in ("direct", "relay"):
        base_stats = targets.get(base_name, {})
        for metric in _ADDED.get(phase, ()):
            if metric not in base_stats:
                continue
            base = base_stats[metric].median
            added = [
                f"{t} {targets[t][metric].median - base:+.2f} ms"
                for t in _targets(targets)
                if t not in ("direct", base_name) and metric in targets[t]
            ]
            lines.append("")
            lines.append(f"Added {metric} over {base_name} (medians): " + ", ".join(added))
    return [*lines, ""]


def _soak(soak: Mapping[str, Any]) -> list[str]:
    if not soak:
        return []
    lines = ["## Soak (`soak`, nitroproxy, mixed non-streamed and streamed)", ""]
    lines.append("| point | requests | RSS MB | fds | threads |")
    lines.append("|---|---|---|---|---|")
    for point in soak.get("points", []):
        lines.append(
            f"| {point['at']} | {point['requests']:,} | {point['rss_mb']:.1f} | {point['fds']} "
            f"| {point['threads']} |"
        )
    lines.append("")
    growth = soak.get("rss_growth")
    lines.append(
        f"RSS growth from the first to the last point: {_fmt(growth and 100 * growth, 1)}%; "
        f"fd growth: {_fmt(soak.get('fd_growth'))}; active streams after: "
        f"{_fmt(soak.get('active_streams_after'))}; rate: {_fmt(soak.get('rps'), 0)} req/s; "
        f"errors: {soak.get('errors', 0)} {soak.get('error_kinds') or ''}"
    )
    return [*lines, ""]


def _micro(micro: Mapping[str, Any]) -> list[str]:
    if not micro:
        return []
    lines = ["## Micro-benchmarks (`benchmarks.micro`, pinned to the proxy core)", ""]
    for name, value in micro.items():
        if isinstance(value, dict) and "best_ns" in value:
            lines.append(f"- {name}: {value['best_ns'] / 1000:.2f} µs best, "
                         f"{value['median_ns'] / 1000:.2f} µs median")  # fmt: skip
        elif isinstance(value, dict):
            lines.append(f"- {name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()))
        else:
            lines.append(f"- {name}: {value}")
    return [*lines, ""]


def _upstream(agg: _Agg) -> list[str]:
    c50 = agg.get("chat_c50", {})
    if "direct" not in c50:
        return []
    direct = c50["direct"]["rps"].median
    lines = ["## Is the upstream the bottleneck?", ""]
    lines.append(
        f"Direct (load generator straight to the upstream, both on core 1): {direct:,.0f} req/s."
    )
    for t in _targets(c50):
        stats = c50[t]
        if t == "direct" or "rps" not in stats:
            continue
        up = stats.get("cpu_upstream_pct")
        lines.append(
            f"- {t}: {stats['rps'].median:,.0f} req/s = {100 * stats['rps'].median / direct:.0f}% "
            f"of direct; upstream CPU {_fmt(up and up.median, 0)}% of a core"
        )
    return [*lines, ""]


def render(doc: Mapping[str, Any], agg: _Agg) -> str:
    lines = _header(doc) + _checks(doc)
    for phase in PHASE_METRICS:
        if phase in agg:
            lines += _phase(phase, agg[phase])
    lines += _soak(doc["soak"]) + _micro(doc["micro"]) + _upstream(agg)
    return "\n".join(lines)
