"""The admin API fuzzed against its own OpenAPI document with schemathesis, on a real server.

Every response must be documented (status, content type, body schema), nothing may be a 5xx,
and data the document calls invalid must be refused with a 4xx. The server runs on a port in
a thread of its own, since schemathesis calls it synchronously. Bounded to a few seconds:
few examples per operation, derandomized so CI runs are repeatable.
"""

from __future__ import annotations

import asyncio
import copy
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from nitroproxy import config
from nitroproxy.mock import MockSettings, create_mock_app
from nitroproxy.reports import openapi
from nitroproxy.security.crypto import ENV_VAR, generate_key
from nitroproxy.store import keys, users
from nitroproxy.store.keys import KeySpec
from nitroproxy.web.app import create_app
from nitroproxy.web.appkeys import ACCOUNTS, AUTH
from nitroproxy.web.server import start
from tests.conftest import ADMIN_KEY, UPSTREAM_KEY, base_config

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}


class _Server:
    """The mock upstream and the proxy on loopback ports, in a loop on another thread."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.tmp = tmp
        self.runners: list[Any] = []
        self.url = ""
        self.ids = ("", "")

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _up(self) -> None:
        upstream, port = await start(
            create_mock_app(MockSettings(api_key=UPSTREAM_KEY)), "127.0.0.1", 0
        )
        self.runners.append(upstream)
        cfg = base_config(f"http://127.0.0.1:{port}", self.tmp)
        app = create_app(config.parse(cfg))
        proxy, port = await start(app, "127.0.0.1", 0, shutdown_grace=1.0)
        self.runners.append(proxy)
        self.url = f"http://127.0.0.1:{port}"
        store = app[ACCOUNTS]
        user = await users.create_user(store, actor="admin", name="Fuzz", email="fuzz@example.org")
        key = await keys.create_key(store, KeySpec(name="fuzz", user_id=user.id), actor="admin")
        await app[AUTH].refresh()
        self.ids = (user.id, key.key.id)

    async def _down(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()

    def __enter__(self) -> _Server:
        self.thread.start()
        self.run(self._up())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self._down())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Server]:
    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = generate_key()
    try:
        with _Server(tmp_path_factory.mktemp("fuzz")) as srv:
            yield srv
    finally:
        if old is None:
            del os.environ[ENV_VAR]
        else:
            os.environ[ENV_VAR] = old


@pytest.fixture(scope="module")
def api(server: _Server) -> Any:
    return schemathesis.openapi.from_dict(copy.deepcopy(openapi.document()))


OPERATIONS = [
    (method.upper(), path) for path, ops in openapi.document()["paths"].items() for method in ops
]
_SETTINGS = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_admin_api_matches_its_document(method: str, path: str, api: Any, server: _Server) -> None:
    operation = api[path][method]
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    if "{" in path:  # also reach a real user and key, not only unknown ids
        user_id, key_id = server.ids
        known = {"user_id": user_id} if "{user_id}" in path else {"key_id": key_id}
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known))

    for strategy in strategies:

        @_SETTINGS
        @given(case=strategy)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=server.url, headers=HEADERS, checks=CHECKS, timeout=10)

        check()


def test_the_served_document_is_the_one_fuzzed(server: _Server) -> None:
    import requests

    r = requests.get(server.url + "/admin/openapi.json", headers=HEADERS, timeout=5)
    assert r.status_code == 200 and r.json() == openapi.document()
    assert requests.get(server.url + "/admin/openapi.json", timeout=5).status_code == 401
