"""The data map names what the shared state (Redis) holds, and how long, when it is on."""

from __future__ import annotations

from nitroproxy import config
from nitroproxy.reports import privacy as privacy_report


def test_the_data_map_says_what_redis_holds_and_for_how_long() -> None:
    settings = config.parse({"state": {"backend": "redis", "prefix": "acme", "lease": "20s"}})
    entry = privacy_report.build(settings, [])["shared_state"]
    assert entry["where"] == "Redis, prefix acme"
    assert "pseudonym" in entry["holds"] and "no prompt, completion or key" in entry["holds"]
    assert "one lease (20 seconds)" in entry["kept_for"]
    public = privacy_report.build(settings, [], public=True)["shared_state"]
    assert public["where"] == "Redis"  # no prefix in the public form


def test_without_redis_the_data_map_says_nothing_is_shared() -> None:
    entry = privacy_report.build(config.parse({}), [])["shared_state"]
    assert entry.startswith("none:")


def test_the_data_map_says_where_records_go_with_postgres_and_not_the_url() -> None:
    url = "postgresql://np:s3cret-pg@db.internal/np"
    settings = config.parse({"storage": {"backend": "postgres", "url": url}})
    report = privacy_report.build(settings, [])
    assert report["database"]["usage_records"].startswith("PostgreSQL (storage.url)")
    assert "s3cret-pg" not in str(report)
