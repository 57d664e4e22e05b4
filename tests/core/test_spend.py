from nitroproxy.core.spend import SpendBook

DAY = 86400.0
MAR_31 = 1711843200.0  # 2024-03-31T00:00:00Z


def test_day_and_month_totals_roll_over_at_utc_boundaries() -> None:
    book = SpendBook()
    book.add("k", MAR_31 - DAY, 1_000_000_000)  # March 30
    book.add("k", MAR_31 + 10, 500_000_000)  # March 31
    assert book.totals("k", MAR_31 + 100) == (0.5, 1.5)
    assert book.totals("k", MAR_31 + DAY + 1) == (
        0.0,
        0.0,
    )  # April 1: new day, new month
    assert book.totals("other", MAR_31) == (0.0, 0.0)


def test_seed_replaces_and_old_days_are_forgotten() -> None:
    book = SpendBook()
    book.seed("k", "2024-03-31", 2_000_000_000)
    book.seed("k", "2024-03-31", 3_000_000_000)
    assert book.totals("k", MAR_31) == (3.0, 3.0)
    for i in range(60):
        book.add("k", MAR_31 + i * DAY, 1)
    assert len(book._spent["k"].days) == 40
