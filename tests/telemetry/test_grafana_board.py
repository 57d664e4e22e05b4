"""The Grafana dashboard in ``deploy/grafana`` asks only for metrics and labels that
``/metrics`` exposes, and shows every NitroProxy metric family somewhere.

The exposition comes from a real ``Metrics`` fed one of every event, parsed with
``prometheus_client``'s own parser; the board's queries are read from its JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from nitroproxy.telemetry.metrics import Metrics
from tests.records import make_record

BOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "nitroproxy.json"
# Added by Prometheus when it scrapes, or the histogram bucket bound: never in our output.
SCRAPE_LABELS = {"job", "instance", "le"}
_METRIC = re.compile(r"\b((?:nitroproxy|process)_[a-z0-9_]+)\b")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_LABEL = re.compile(r"([a-z_][a-z0-9_]*)\s*(?:=~|!~|!=|=)")


def exposition() -> dict[str, set[str]]:
    """Sample name -> label names, after one of every event the metrics count."""
    m = Metrics()
    m.observe_request(make_record(ttft_ms=120.0, output_tps=40.0, cache_hit=True))
    m.stream_started()
    m.upstream_error("p", "UpstreamStatusError")
    m.retry("gpt-test", "p")
    m.fallback("gpt-test", "p", "q")
    m.rate_limited("rpm")
    m.usage_written(1)
    m.usage_dropped(1)
    m.retention_deleted("requests", 1)
    m.cache_saved("gpt-test", 5)
    m.set_deployment_health("primary", cooling_down=True)
    m.usage_write_failed(1)
    m.usage_journaled(1)
    m.usage_replayed(1)
    m.refused("storage")
    body, _ = m.render()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def board() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(BOARD.read_text(encoding="utf-8"))
    return data


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in panels(doc):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            yield f"variable {var['name']!r}", var["definition"]


def test_every_query_names_a_metric_and_labels_that_exist() -> None:
    exposed = exposition()
    problems = []
    for where, expr in queries(board()):
        names = _METRIC.findall(expr)
        if not names:
            problems.append(f"{where}: no metric in {expr!r}")
        labels: set[str] = set()
        for name in names:
            if name not in exposed:
                problems.append(f"{where}: {name} is not exposed")
            else:
                labels |= exposed[name]
        used = {
            label.strip()
            for group in _BY.findall(expr)
            for label in group.split(",")
            if label.strip()
        }
        used |= {label for group in _MATCHERS.findall(expr) for label in _LABEL.findall(group)}
        used |= set(re.findall(r"label_values\([^,]+,\s*([a-z_]+)\)", expr))
        for label in sorted(used - labels - SCRAPE_LABELS):
            problems.append(f"{where}: label {label!r} is on none of {names}")
    assert not problems, "\n".join(problems)


def test_every_nitroproxy_family_is_on_the_board() -> None:
    shown = {name for _, expr in queries(board()) for name in _METRIC.findall(expr)}
    families = {
        re.sub(r"_(bucket|sum|count|created)$", "", n)
        for n in exposition()
        if n.startswith("nitroproxy_")
    }
    missing = sorted(f for f in families if not any(s.startswith(f) for s in shown))
    assert not missing, f"metric families without a panel: {missing}"


def test_the_board_is_importable() -> None:
    doc = board()
    assert doc["uid"] == "nitroproxy"
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(doc):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            # Every panel follows the data-source variable, so the board imports anywhere.
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    variables = {v["name"] for v in doc["templating"]["list"]}
    for _, expr in queries(doc):
        for name in re.findall(r"\$([a-z_]+)", expr):
            assert name in variables or name.startswith("__"), name
