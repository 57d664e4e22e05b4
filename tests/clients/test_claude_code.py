"""Claude Code (``claude -p``) through the proxy to the mock: a plain prompt natively and
translated to chat, a tool round trip with its Read tool, and ``/context``'s token counting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nitroproxy.core import pricing
from nitroproxy.core.types import Price, Usage
from nitroproxy.mock import WORDS
from nitroproxy.mock.content import chat_prompt_tokens
from tests.clients.conftest import (
    INSTALL_TIMEOUT,
    RUN_TIMEOUT,
    Clients,
    Run,
    WatchedProxy,
    base_env,
    run_client,
)
from tests.conftest import CLIENT_KEY, Proxy, Upstream, base_config, wait_records

# The first test of a session may install the clients from npm (see conftest).
pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 2 * RUN_TIMEOUT)

FIVE = "".join(WORDS[:5]).strip()
ANTHROPIC_PRICE = Price(input=3, output=15)
OPENAI_PRICE = Price(input=2.5, output=10, cached_input=1.25)


def config(upstream: Upstream, tmp_path: Path) -> dict[str, Any]:
    cfg = base_config(upstream.url, tmp_path)
    # Claude Code sends its tools with every turn: "text" makes the mock answer in text.
    cfg["models"]["claude-test"]["deployments"][0]["model"] = "mock-claude+text+tokens=5"
    cfg["models"]["claude-on-gpt"] = {
        "deployments": [
            {
                "name": "gpt-for-claude",
                "provider": "mock-openai",
                "model": "mock-gpt+text+tokens=5",
                "price": {"input": 2.5, "output": 10, "cached_input": 1.25},
            }
        ]
    }
    return cfg


async def claude(
    clients: Clients,
    proxy: Proxy,
    tmp_path: Path,
    prompt: str,
    model: str = "claude-test",
    *,
    fence: bool = True,
) -> Run:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = base_env(home, fence=fence)
    env.update(ANTHROPIC_BASE_URL=proxy.url, ANTHROPIC_API_KEY=CLIENT_KEY)
    argv = [str(clients.claude), "-p", prompt, "--model", model]
    run = await run_client(argv, cwd=project, env=env)
    assert run.returncode == 0, run.stderr or run.stdout
    return run


def mock_usage(body: dict[str, Any], output: int) -> Usage:
    """The mock's own count of a Messages body it answered."""
    prompt = chat_prompt_tokens(body["messages"], body.get("system"))
    return Usage(prompt_tokens=prompt, completion_tokens=output)


@pytest.fixture
async def setup(
    npm_clients: Clients, upstream: Upstream, watched_proxy: WatchedProxy, tmp_path: Path
) -> Any:
    proxy, seen = await watched_proxy(config(upstream, tmp_path))
    return npm_clients, upstream, proxy, seen


async def test_plain_prompt_natively_with_betas_forwarded_and_one_exact_record(
    setup: Any, tmp_path: Path
) -> None:
    clients, upstream, proxy, seen = setup
    run = await claude(clients, proxy, tmp_path, "say hello", fence=False)
    assert run.stdout.strip() == FIVE
    assert seen.calls == [("HEAD", "/"), ("POST", "/v1/messages")]
    (received,) = upstream.state.requests
    assert received.path == "/v1/messages"
    # Claude Code's system message inside messages reached Anthropic where it was.
    assert any(m["role"] == "system" for m in received.body["messages"][1:])
    sent = seen.headers[1]
    assert received.headers["anthropic-beta"] == sent["anthropic-beta"]
    assert "claude-code-20250219" in received.headers["anthropic-beta"]
    assert received.headers["anthropic-version"] == sent["anthropic-version"]
    (record,) = await wait_records(proxy, 1)
    usage = mock_usage(received.body, 5)
    assert (record.endpoint, record.stream, record.status) == ("messages", True, 200)
    assert (record.prompt_tokens, record.completion_tokens) == (usage.prompt_tokens, 5)
    assert record.usage_source == "provider"
    assert record.cost_nanos == pricing.cost_nanos(ANTHROPIC_PRICE, usage)


async def test_plain_prompt_translated_to_chat_keeps_the_system_message_in_place(
    setup: Any, tmp_path: Path
) -> None:
    clients, upstream, proxy, seen = setup
    run = await claude(clients, proxy, tmp_path, "say hello", model="claude-on-gpt")
    assert run.stdout.strip() == FIVE
    assert seen.calls == [("POST", "/v1/messages")]  # fenced: no HEAD / (see base_env)
    (received,) = upstream.state.requests
    assert received.path == "/v1/chat/completions"
    roles = [m["role"] for m in received.body["messages"]]
    assert roles[0] == "system" and "system" in roles[2:]  # the one inside the conversation
    assert "anthropic-beta" not in received.headers  # for Anthropic upstreams only
    (record,) = await wait_records(proxy, 1)
    prompt = chat_prompt_tokens(received.body["messages"])
    assert (record.prompt_tokens, record.completion_tokens) == (prompt, 5)
    assert record.cost_nanos == pricing.cost_nanos(OPENAI_PRICE, Usage(prompt, 5))


async def test_tool_round_trip_with_the_read_tool(setup: Any, tmp_path: Path) -> None:
    clients, upstream, proxy, seen = setup
    project = tmp_path / "project"
    project.mkdir()
    note = project / "note.txt"
    note.write_text("canary-7f3a9 is in the note\n")
    upstream.state.script_tool_call("mock-claude", "Read", {"file_path": str(note)})
    run = await claude(clients, proxy, tmp_path, "What does note.txt say?")
    assert run.stdout.strip() == FIVE
    assert seen.paths("POST") == ["/v1/messages", "/v1/messages"]
    first, second = upstream.state.requests
    # The second turn carries the tool's result: the file as Claude Code read it.
    results = [
        block
        for message in second.body["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    (result,) = results
    assert "canary-7f3a9 is in the note" in str(result["content"])
    assert result["tool_use_id"] == "toolu_mock_1"
    records = sorted(await wait_records(proxy, 2), key=lambda r: r.ts)
    arguments_tokens = 2  # the scripted arguments stream in two fragments
    for record, body, output in (
        (records[0], first.body, arguments_tokens),
        (records[1], second.body, 5),
    ):
        usage = mock_usage(body, output)
        assert (record.prompt_tokens, record.completion_tokens) == (usage.prompt_tokens, output)
        assert record.cost_nanos == pricing.cost_nanos(ANTHROPIC_PRICE, usage)


@pytest.mark.parametrize(
    ("model", "upstream_paths"),
    [
        # Routed to Anthropic: every count goes to its count_tokens, none to /v1/messages.
        ("claude-test", {"/v1/messages/count_tokens"}),
        # Routed elsewhere: counted by the proxy, the upstream sees nothing.
        ("claude-on-gpt", set()),
    ],
)
async def test_context_counts_tokens_without_a_billed_call(
    setup: Any, tmp_path: Path, model: str, upstream_paths: set[str]
) -> None:
    clients, upstream, proxy, seen = setup
    run = await claude(clients, proxy, tmp_path, "/context", model=model)
    assert "Context Usage" in run.stdout
    counts = seen.paths("POST")
    assert counts and set(counts) == {"/v1/messages/count_tokens"}
    assert {r.path for r in upstream.state.requests} == upstream_paths
    if upstream_paths:
        assert len(upstream.state.requests) == len(counts)
    records = await wait_records(proxy, len(counts))
    assert {r.endpoint for r in records} == {"messages.count_tokens"}
    assert all(r.cost_nanos == 0 and r.prompt_tokens == r.completion_tokens == 0 for r in records)
    assert {r.usage_source for r in records} == {"none"}
