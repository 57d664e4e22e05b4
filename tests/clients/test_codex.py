"""Codex CLI (``codex exec``) through the proxy to the mock: the Responses API passed through
to an upstream that speaks it, and translated to chat completions and to Anthropic Messages;
a plain prompt and a tool round trip with its exec_command tool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nitroproxy.core import pricing
from nitroproxy.core.types import Price, Usage
from nitroproxy.mock import WORDS
from nitroproxy.mock.content import chat_prompt_tokens
from nitroproxy.mock.responses_routes import prompt_tokens
from nitroproxy.mock.tools import scripted_call
from tests.clients.conftest import (
    INSTALL_TIMEOUT,
    RUN_TIMEOUT,
    Clients,
    Run,
    WatchedProxy,
    base_env,
    run_client,
)
from tests.conftest import CLIENT_KEY, UPSTREAM_KEY, Proxy, Upstream, base_config, wait_records

# The first test of a session may install the clients from npm (see conftest).
pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 2 * RUN_TIMEOUT)

FIVE = "".join(WORDS[:5]).strip()
PRICE = Price(input=1, output=2)
# The three ways a Responses call can go, by model: as it came, to chat, to Messages.
ROUTES = {
    "codex-native": ("mock-responses", "mock-gpt+text+tokens=5", "/v1/responses"),
    "codex-chat": ("mock-openai", "mock-gpt+text+tokens=5", "/v1/chat/completions"),
    "codex-claude": ("mock-anthropic", "mock-claude+text+tokens=5", "/v1/messages"),
}


def config(upstream: Upstream, tmp_path: Path) -> dict[str, Any]:
    cfg = base_config(upstream.url, tmp_path)
    cfg["providers"]["mock-responses"] = {
        "kind": "openai",
        "base_url": upstream.url + "/v1",
        "api_key": UPSTREAM_KEY,
        "responses": True,
    }
    for name, (provider, model, _) in ROUTES.items():
        cfg["models"][name] = {
            "deployments": [
                {
                    "name": f"{name}-0",
                    "provider": provider,
                    "model": model,
                    "price": {"input": 1, "output": 2},
                }
            ]
        }
    return cfg


CODEX_CONFIG = """\
model = "{model}"
model_provider = "nitro"
# A hosted tool runs on OpenAI's side: the translated paths refuse it, so it stays off.
web_search = "disabled"

[model_providers.nitro]
name = "NitroProxy"
base_url = "{base_url}"
env_key = "NITRO_API_KEY"
wire_api = "responses"
"""


async def codex(
    clients: Clients, proxy: Proxy, tmp_path: Path, prompt: str, model: str
) -> tuple[Run, str]:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    home = tmp_path / "home"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(model=model, base_url=proxy.v1))
    env = base_env(home)
    env.update(CODEX_HOME=str(codex_home), NITRO_API_KEY=CLIENT_KEY)
    last = tmp_path / "last-message.txt"
    argv = [
        str(clients.codex),
        "exec",
        "--skip-git-repo-check",
        "--ephemeral",
        "--color",
        "never",
        "-o",
        str(last),
        prompt,
    ]
    run = await run_client(argv, cwd=project, env=env)
    assert run.returncode == 0, run.stderr[-3000:] or run.stdout
    return run, last.read_text().strip()


@pytest.fixture
async def setup(
    npm_clients: Clients, upstream: Upstream, watched_proxy: WatchedProxy, tmp_path: Path
) -> Any:
    proxy, seen = await watched_proxy(config(upstream, tmp_path))
    return npm_clients, upstream, proxy, seen


def mock_prompt(path: str, body: dict[str, Any]) -> int:
    """The mock's prompt count of the request it got, by the API it got it in."""
    if path == "/v1/responses":
        return prompt_tokens(body)
    return chat_prompt_tokens(body["messages"], body.get("system"))


def tokens_used(run: Run) -> int:
    """What Codex shows as the session's total: the sum of every response's usage."""
    lines = run.stderr.splitlines()
    return int(lines[lines.index("tokens used") + 1].replace(",", ""))


async def assert_records(proxy: Proxy, upstream: Upstream, outputs: list[int]) -> int:
    """One record per upstream call, each with the mock's exact usage; their total."""
    records = sorted(await wait_records(proxy, len(outputs)), key=lambda r: r.ts)
    total = 0
    for record, received, output in zip(records, upstream.state.requests, outputs, strict=True):
        usage = Usage(mock_prompt(received.path, received.body), output)
        assert (record.endpoint, record.stream, record.status) == ("responses", True, 200)
        assert (record.prompt_tokens, record.completion_tokens) == (usage.prompt_tokens, output)
        assert record.usage_source == "provider"
        assert record.cost_nanos == pricing.cost_nanos(PRICE, usage)
        total += usage.total_tokens
    return total


@pytest.mark.parametrize("model", list(ROUTES))
async def test_plain_prompt_every_way(setup: Any, tmp_path: Path, model: str) -> None:
    clients, upstream, proxy, seen = setup
    run, answer = await codex(clients, proxy, tmp_path, "say hello", model)
    assert answer == FIVE
    assert seen.calls == [("POST", "/v1/responses")]
    (received,) = upstream.state.requests
    assert received.path == ROUTES[model][2]
    if model == "codex-native":
        # Passed through as it came: Codex's own fields included.
        assert received.body["store"] is False and received.body["include"]
    total = await assert_records(proxy, upstream, [5])
    assert tokens_used(run) == total  # the usage Codex was told is the usage recorded


@pytest.mark.parametrize("model", list(ROUTES))
async def test_tool_round_trip_with_exec_command_every_way(
    setup: Any, tmp_path: Path, model: str
) -> None:
    clients, upstream, proxy, seen = setup
    project = tmp_path / "project"
    project.mkdir()
    (project / "note.txt").write_text("canary-51c2 lives here\n")
    upstream.state.script_tool_call(
        ROUTES[model][1].partition("+")[0], "exec_command", {"cmd": "cat note.txt"}
    )
    run, answer = await codex(clients, proxy, tmp_path, "What is in note.txt?", model)
    assert answer == FIVE
    assert seen.calls == [("POST", "/v1/responses")] * 2
    first, second = upstream.state.requests
    assert first.path == second.path == ROUTES[model][2]
    # The command's output went back to the model, in the upstream's own form.
    sent_back = json.dumps(second.body)
    assert "canary-51c2 lives here" in sent_back
    call_id = "toolu_mock_1" if model == "codex-claude" else "call_mock_1"
    assert call_id in sent_back
    arguments = len(scripted_call({"cmd": "cat note.txt"}).fragments)
    total = await assert_records(proxy, upstream, [arguments, 5])
    assert tokens_used(run) == total
