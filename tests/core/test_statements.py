import pytest

from nitroproxy.core.statements import (
    Totals,
    build,
    month_bounds,
    parse_period,
    period_days,
    usd,
)
from nitroproxy.reports.statements import statements_csv, statements_json


@pytest.mark.parametrize(
    ("nanos", "text"),
    [(0, "0.000000000"), (1, "0.000000001"), (1_500_000_000, "1.500000000"), (-7, "-0.000000007")],
)
def test_money_is_written_exactly(nanos, text):
    assert usd(nanos) == text


@pytest.mark.parametrize(
    ("period", "days", "bounds"),
    [
        ("2024-02", ("2024-02-01", "2024-03-01"), (1706745600.0, 1709251200.0)),
        ("2024-12", ("2024-12-01", "2025-01-01"), (1733011200.0, 1735689600.0)),
    ],
)
def test_a_period_is_a_utc_calendar_month(period, days, bounds):
    assert period_days(period) == days
    assert month_bounds(period) == bounds


@pytest.mark.parametrize("bad", ["2024-13", "2024-1", "24-01", "2024-00", "2024-01-01", ""])
def test_bad_periods_are_refused(bad):
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_period(bad)


def test_rows_of_one_period_and_model_add_up_and_totals_are_exact():
    rows = [
        ("2024-03", "gpt", 2, 10, 20, 1, 0, 3, 999_999_999),
        ("2024-03", "gpt", 1, 5, 5, 0, 1, 0, 1),  # the same line from billing lines
        ("2024-03", "claude", 1, 1, 1, 0, 0, 0, 7),
        ("2024-02", "gpt", 4, 0, 0, 0, 0, 0, 0),
    ]
    feb, mar = build("u1", rows)
    assert feb.period == "2024-02" and feb.total.requests == 4
    assert [line.model for line in mar.lines] == ["claude", "gpt"]
    assert mar.lines[1].totals == Totals(3, 15, 25, 1, 1, 3, 1_000_000_000)
    assert mar.total.cost_nanos == 1_000_000_007
    doc = statements_json("u1", [feb, mar])
    assert doc["data"][1]["total"]["cost_usd"] == "1.000000007"
    assert doc["data"][1]["end"] == "2024-04-01"
    csv = statements_csv([mar]).splitlines()
    assert csv[0].startswith("subject,period,line,model,requests")
    assert csv[-1] == "u1,2024-03,total,,4,16,26,1,1,3,1000000007,1.000000007"


def test_counts_must_be_integers():
    with pytest.raises(TypeError):
        build("u", [("2024-01", "m", 1.5, 0, 0, 0, 0, 0, 0)])
