import subprocess
import sys
from pathlib import Path

import pytest

from nitroproxy import config
from nitroproxy.core.selection import Strategy

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
providers:
  openai: {kind: openai, base_url: "https://api.openai.com/v1", api_key: "${OPENAI_KEY}"}
  anthropic: {kind: anthropic, base_url: "https://api.anthropic.com/v1/",
              api_key: "${ANTHROPIC_KEY:-fallback-key}"}
models:
  gpt-4o:
    strategy: price
    deployments:
      - {provider: openai, model: gpt-4o, price: {input: 2.5, output: 10}}
      - {provider: anthropic, model: claude-x, weight: 2, seed: {ttft: 0.5}}
retention: {requests: 30d, billing: 1y, interval: 10m}
server: {shutdown_grace: 500ms}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_a_good_file_parses_into_typed_settings(tmp_path: Path) -> None:
    s = config.load(write(tmp_path, GOOD), env={"OPENAI_KEY": "sk-1"})
    assert s.providers["openai"].api_key == "sk-1"
    assert s.providers["anthropic"].api_key == "fallback-key"
    assert s.providers["anthropic"].base_url == "https://api.anthropic.com/v1"
    model = s.models["gpt-4o"]
    assert model.strategy is Strategy.PRICE
    assert [d.name for d in model.deployments] == [
        "openai/gpt-4o",
        "anthropic/claude-x",
    ]
    assert model.deployments[0].price.output == 10
    assert model.deployments[1].weight == 2 and model.deployments[1].seed_ttft == 0.5
    assert s.retention.requests == 30 * 86400 and s.retention.interval == 600
    assert s.server.shutdown_grace == 0.5


def test_secrets_do_not_show_in_repr(tmp_path: Path) -> None:
    s = config.load(write(tmp_path, GOOD), env={"OPENAI_KEY": "sk-canary-secret"})
    assert "sk-canary-secret" not in repr(s)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD.replace("{provider: anthropic,", "{provider: openia,"),
            "models.gpt-4o.deployments[1].provider: unknown provider 'openia' "
            "(known: anthropic, openai)",
        ),
        (
            GOOD.replace("strategy: price", "strategy: cheapest"),
            "models.gpt-4o.strategy: must be",
        ),
        (
            GOOD.replace("kind: openai", "kind: azure"),
            "providers.openai.kind: must be one of",
        ),
        (
            GOOD.replace('"https://api.openai.com/v1"', "api.openai.com"),
            "providers.openai.base_url",
        ),
        (
            GOOD.replace("requests: 30d", "requests: soon"),
            "retention.requests: expected a duration",
        ),
        (
            GOOD + "\nrouting: {max_atempts: 3}\n",
            "routing.max_atempts: unknown setting",
        ),
        (GOOD.replace("input: 2.5", "input: -1"), "price.input: must be at least 0"),
        ("models: [1, 2]\n", "models: expected a mapping"),
        ("providers: {p: {kind: openai}}\n", "providers.p.base_url: is required"),
        ("server: {port: 99999}\n", "server.port: must be at most 65535"),
        (
            "models: {m: {deployments: []}}\n",
            "models.m.deployments: at least one deployment",
        ),
        ("a: [\n", "invalid YAML"),
        ("storage: {on_failure: drop}\n", "storage.on_failure: must be one of refuse, serve"),
        ("server: {timeouts: {head: 5s}}\n", "server.timeouts.head: unknown setting"),
        ("server: {limits: {connections: 0}}\n", "server.limits.connections: must be at least 1"),
    ],
)
def test_errors_name_the_yaml_path(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load(write(tmp_path, text), env={"OPENAI_KEY": "k"})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_environment_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"\$\{OPENAI_KEY\} is not set"):
        config.load(write(tmp_path, GOOD), env={})


def test_check_config_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    bad = write(tmp_path, GOOD.replace("{provider: anthropic,", "{provider: openia,"))
    proc = subprocess.run(
        [sys.executable, "-m", "nitroproxy", "check-config", str(bad)],
        capture_output=True,
        text=True,
        env={"OPENAI_KEY": "k", "PATH": "/usr/bin"},
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "unknown provider 'openia'" in proc.stderr


@pytest.mark.parametrize("name", ["demo.yaml", "nitroproxy.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    env = {"OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "y"}
    settings = config.load(ROOT / "config" / name, env=env)
    assert settings.models


def test_a_deployment_without_a_price_takes_the_default_table(tmp_path: Path) -> None:
    text = """
providers: {openai: {kind: openai, base_url: "https://x/v1"}}
models:
  m:
    deployments:
      - {provider: openai, model: gpt-4o-2024-08-06}
      - {provider: openai, model: own}
"""
    s = config.load(write(tmp_path, text))
    known, unknown = s.models["m"].deployments
    assert known.price.input == 2.5 and known.price.output == 10
    assert unknown.price.input == 0 and unknown.price.output == 0


def test_durability_and_client_limits_have_safe_defaults_and_parse(tmp_path: Path) -> None:
    s = config.parse({"storage": {"path": str(tmp_path / "db" / "np.db"), "max_queue": 100}})
    assert s.storage.on_failure == "refuse"
    assert s.storage.journal_dir == ""
    assert s.storage.journal_path() == str(tmp_path / "db" / "journal")  # beside, not inside
    assert s.storage.high_water == 80
    assert not s.storage.journal_before_answer
    assert (s.server.timeouts.header, s.server.timeouts.body) == (60.0, 60.0)
    text = """
storage: {journal_dir: /mnt/other/journal, on_failure: serve, busy_timeout: 250ms,
          high_water: 10, journal_after: 2s, journal_before_answer: true}
server:
  timeouts: {header: 5s, body: 10s, keepalive: 30s}
  limits: {connections: 100, body_bytes_in_flight: 1048576}
"""
    s = config.load(write(tmp_path, text))
    assert s.storage.journal_dir == "/mnt/other/journal"
    assert (s.storage.on_failure, s.storage.busy_timeout, s.storage.high_water) == (
        "serve",
        0.25,
        10,
    )
    assert s.storage.journal_after == 2.0 and s.storage.journal_before_answer
    assert s.server.timeouts == config.ClientTimeouts(header=5.0, body=10.0, keepalive=30.0)
    assert s.server.limits == config.ServerLimits(connections=100, body_bytes_in_flight=1048576)


def test_a_section_given_twice_is_refused_not_silently_dropped(tmp_path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("stats: {min_bucket: 10}\nmodels: {}\nstats: {min_bucket: 20}\n")
    with pytest.raises(config.ConfigError, match=r"line 3.*'stats' appears twice"):
        config.load(path)
