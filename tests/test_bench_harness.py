"""The benchmark harness, tested: a tiny ``benchmarks.run`` starts every target, every phase
reports numbers, and an upstream answering 500 shows up as errors, never as fast responses.

The runs use the Python load generator (no apt, no wrk) and tiny counts; the two harness runs
go one after the other (in parallel they only fight over the same two pinned cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import loadgen, report, streams
from benchmarks.run import PHASE_TARGETS
from benchmarks.targets import Target

ROOT = Path(__file__).resolve().parent.parent
NITRO_TARGETS = {
    "nitroproxy",
    "nitroproxy-bare",
    "nitroproxy-nometrics",
    "nitroproxy-notokens",
    "nitroproxy-nolimits",
    "nitroproxy-traced",
    "nitroproxy-traced10",
}
HEADLINE = {
    "chat_c50": "rps",
    "chat_c1": "p50_ms",
    "stream_c100": "ttft_p50_ms",
    "stream_tput": "streams_per_s",
    "stream_c1000": "ttft_p99_ms",
}


def _harness(out: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "benchmarks.run", "--profile", "tiny", "--loadgen", "python"]
    return subprocess.Popen(
        [*argv, "--out", str(out), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


FAULT_RUN = (
    "--fault",
    "fail500",
    "--phases",
    "chat_c1,stream_c100",
    "--targets",
    "direct,nitroproxy",
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, Any], str]]:
    base = tmp_path_factory.mktemp("bench")
    out: dict[str, tuple[dict[str, Any], str]] = {}
    for name, extra in (("clean", ()), ("fault", FAULT_RUN)):
        proc = _harness(base / name, *extra)
        try:
            output, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert proc.returncode == 0, output
        doc = json.loads((base / name / "results.json").read_text())
        out[name] = (doc, (base / name / "summary.md").read_text())
    return out


def test_every_target_starts_and_every_phase_reports_numbers(runs):
    doc, _ = runs["clean"]
    assert {"direct", "relay", *NITRO_TARGETS} <= set(doc["meta"]["targets"])
    for phase, metric in HEADLINE.items():
        for target in PHASE_TARGETS[phase]:
            if target == "litellm":
                continue
            stats = doc["phases"][phase][target]
            assert stats[metric]["median"] > 0, (phase, target, stats)
            assert stats["errors"]["high"] == 0, (phase, target, stats)
    soak = doc["soak"]
    assert soak["requests"] >= 300 and soak["ok"] == soak["requests"]
    assert [p["rss_mb"] > 0 for p in soak["points"]] == [True, True, True]
    micro = doc["micro"]
    assert micro["usage_writer"]["records_per_s"] > 0
    assert micro["sse_parse_per_chunk"]["best_ns"] > 0


def test_a_clean_run_says_it_had_no_errors(runs):
    doc, summary = runs["clean"]
    assert doc["errors"] == 0
    assert "**Errors: none**" in summary
    assert "| throughput nitroproxy / relay |" in summary


def test_an_upstream_answering_500_is_counted_as_errors(runs):
    doc, summary = runs["fault"]
    assert {(r["phase"], r["target"]) for r in doc["runs"]} == {
        (p, t) for p in ("chat_c1", "stream_c100") for t in ("direct", "nitroproxy")
    }
    for run in doc["runs"]:
        assert run["errors"] > 0, run
        assert run.get("rps", 0) == 0 and run.get("streams_per_s", 0) == 0, run
    assert doc["errors"] > 0
    assert "**ERRORS:" in summary


def test_every_process_the_harness_started_is_stopped(runs):
    for doc, _ in runs.values():
        assert doc["meta"]["pids"]
        for name, pid in doc["meta"]["pids"].items():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
            assert name


def test_wrk_script_checks_status_and_body():
    spec = loadgen.Spec((loadgen.Request("/v1/x", '{"a":1}'),), expect=("hello",))
    lua = loadgen.lua_script(spec, Target("t", "http://h", {"Authorization": "Bearer k"}), 10)
    assert "status ~= 200" in lua and '"hello"' in lua and "wrk.thread:stop()" in lua
    assert '["Authorization"] = "Bearer k"' in lua


def test_a_load_result_with_bad_responses_counts_them():
    line = (
        'LOADJSON {"requests": 10, "duration_s": 2.0, "ok": 6, "bad_status": 3, "bad_body": 1, '
        '"connect": 0, "read": 0, "write": 0, "timeout": 0, "p50_ms": 1.0, "p90_ms": 2.0, '
        '"p99_ms": 3.0, "max_ms": 4.0}'
    )
    result = loadgen.parse("wrk", "noise\n" + line)
    assert (result.rps, result.errors) == (3.0, 4)
    assert result.error_kinds == {"bad_status": 3, "bad_body": 1}
    assert loadgen.parse("wrk", "crashed").errors == 1


def test_a_stream_without_done_or_with_an_error_event_is_not_ok():
    state: dict[str, Any] = {"tokens": 0, "done": False, "error": None, "first": None}
    streams._count(b'data: {"choices":[{"delta":{"content":" hi"}}]}', state)
    streams._count(b'data: {"choices":[{"delta":{"content":""}}]}', state)
    assert (state["tokens"], state["done"]) == (1, False)
    streams._count(b'data: {"error":{"message":"boom"}}', state)
    streams._count(b"data: [DONE]", state)
    assert (state["error"], state["done"]) == ("error_event", True)


def test_goal_checks_compare_medians_of_paired_targets():
    runs = [
        {"phase": "chat_c50", "target": t, "rep": 0, "rps": rps, "errors": 0}
        for t, rps in (("relay", 1000.0), ("nitroproxy", 800.0), ("nitroproxy-bare", 900.0),
                       ("nitroproxy-nometrics", 820.0))
    ]  # fmt: skip
    agg = report.aggregate(runs)
    checks = {c["check"]: c for c in report.checks(agg, {}, {})}
    assert checks["throughput nitroproxy / relay"]["met"] is True
    assert checks["throughput nitroproxy-bare / relay"]["met"] is True
    assert checks["metrics + logs cost (throughput)"]["value"] == pytest.approx(1 - 800 / 820)
    assert checks["usage writer (records/s)"]["met"] is None


def test_trace_cost_measures_every_mode_per_call():
    from benchmarks.trace_cost import MODES, run

    result = run(calls=5, repeats=1)
    assert set(result) == {f"{kind}/{mode}" for kind in ("json", "stream") for mode in MODES}
    assert all(stats["best_us"] > 0 for stats in result.values())
