"""`nitroproxy usage` and `nitroproxy sweep` on a real database file."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from pathlib import Path

import pytest

from nitroproxy import cli
from nitroproxy.store.db import open_db
from nitroproxy.store.usage import insert_many
from tests.records import make_record

DAY = 86400.0


async def _seed(db: Path) -> None:
    now = time.time()
    old = now - 200 * DAY  # past the 90-day window: the sweeper rolls these up
    records = [
        make_record(i, ts=old + i, model="gpt-4o" if i % 2 else "claude", cost_nanos=1_000)
        for i in range(6)
    ] + [make_record(10 + i, ts=now - 60 + i, model="gpt-4o", cost_nanos=1_000) for i in range(3)]
    conn = await open_db(db)
    try:
        await insert_many(conn, records)
    finally:
        await conn.close()


@pytest.fixture
def cfg(tmp_path: Path) -> str:
    """A config whose database holds 6 records from 200 days ago and 3 from now. The CLI
    runs its own event loop, so these tests are synchronous."""
    db = tmp_path / "usage.db"
    asyncio.run(_seed(db))
    path = tmp_path / "c.yaml"
    path.write_text(f"storage: {{path: {db}}}\n")
    return str(path)


def usage_json(cfg: str, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, dict]:
    assert cli.main(["usage", "-c", cfg, "--group-by", "model", "--format", "json", *extra]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    return {r["group"]: r for r in rows}


def test_usage_groups_and_formats(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = usage_json(cfg, capsys)
    assert rows["gpt-4o"]["requests"] == 6 and rows["claude"]["requests"] == 3
    assert rows["gpt-4o"]["cost_usd"] == pytest.approx(6e-6)
    assert cli.main(["usage", "-c", cfg, "--group-by", "model", "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["group"] for r in table} == {"gpt-4o", "claude"}
    assert cli.main(["usage", "-c", cfg, "--group-by", "day"]) == 0
    assert "requests" in capsys.readouterr().out.splitlines()[0]
    assert cli.main(["usage", "-c", cfg, "--from", "yesterday"]) == 2
    assert "not an ISO date" in capsys.readouterr().err


def test_sweep_rolls_up_without_changing_the_totals(
    cfg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = usage_json(cfg, capsys)
    assert cli.main(["sweep", "-c", cfg]) == 0
    assert "rolled up 6 records" in capsys.readouterr().out
    assert usage_json(cfg, capsys) == before
    assert cli.main(["sweep", "-c", cfg]) == 0  # twice: nothing more to roll up
    assert "rolled up 0 records" in capsys.readouterr().out
    assert usage_json(cfg, capsys) == before
