"""What a key holder reads about itself, and nothing about anyone else."""

from __future__ import annotations

from tests.conftest import CLIENT_KEY, wait_records
from tests.web.test_admin_api import Admin, admin, assert_openai_error, data_key  # noqa: F401


async def test_a_key_sees_only_its_own_usage_and_export(admin: Admin) -> None:  # noqa: F811
    ann = await admin.user(name="Ann Mecanary", email="ann.me@example.org")
    mine = await admin.key(name="mine", user_id=ann["id"])
    sibling = await admin.key(name="sibling", user_id=ann["id"])
    for secret in (mine["secret"], mine["secret"], sibling["secret"], CLIENT_KEY):
        await admin.chat(secret)
    await wait_records(admin.proxy, 4)

    usage = await admin("GET", "/v1/me/usage?group_by=key", key=mine["secret"])
    assert [(r["group"], r["requests"]) for r in usage["rows"]] == [(mine["id"], 2)]
    for path in ("/v1/usage?group_by=key", "/v1/usage?group_by=key&key_id=" + sibling["id"]):
        scoped = await admin("GET", path, key=mine["secret"])
        assert scoped["rows"] == usage["rows"]  # filters cannot widen a key's view

    doc = await admin("GET", "/v1/me/export", key=mine["secret"])
    assert doc["format"] == "nitroproxy.export.v2"
    assert doc["preferences"] == {"analytics": True, "cache": True}
    mine.pop("secret")
    assert doc["key"] == mine
    assert {r["key_id"] for r in doc["usage_records"]} == {mine["id"]}
    assert [e["action"] for e in doc["audit"]] == ["key.create"]
    text = str(doc)
    for other in (sibling["id"], "Mecanary", "ann.me@example.org", "cfg:test", "digest"):
        assert other not in text


async def test_the_admin_sees_everyone_on_v1_usage(admin: Admin) -> None:  # noqa: F811
    key = await admin.key(name="k")
    await admin.chat(key["secret"])
    await admin.chat(CLIENT_KEY)
    await wait_records(admin.proxy, 2)
    everyone = await admin("GET", "/v1/usage?group_by=key")
    assert {r["group"] for r in everyone["rows"]} == {key["id"], "cfg:test"}
    refused = await admin("GET", "/v1/me/usage", expect=403)
    assert_openai_error(refused, code="permission_denied")


async def test_a_config_key_exports_its_own_records(admin: Admin) -> None:  # noqa: F811
    await admin.chat(CLIENT_KEY)
    await wait_records(admin.proxy, 1)
    doc = await admin("GET", "/v1/me/export", key=CLIENT_KEY)
    assert doc["key"]["id"] == "cfg:test" and doc["key"]["source"] == "config"
    assert len(doc["usage_records"]) == 1
    bad = await admin("GET", "/v1/me/usage?from=tomorrow", key=CLIENT_KEY, expect=400)
    assert_openai_error(bad, param="from")
