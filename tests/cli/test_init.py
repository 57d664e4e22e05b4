"""``nitroproxy init``: the starter configuration, the 0600 env file, the next commands."""

from __future__ import annotations

import itertools
import stat
import sys
from pathlib import Path

import pytest

from nitroproxy import cli
from nitroproxy.cli.starter import PROVIDERS, Starter, config_text
from nitroproxy.config import ConfigError, load
from nitroproxy.config.resolved import resolve

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def newcomer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and a fresh HOME, with no NitroProxy variables."""
    for name in ("NITROPROXY_CONFIG", "NITROPROXY_DATA_DIR", "NITROPROXY_ADMIN_KEY",
                 "NITROPROXY_DATA_KEY", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "OPENAI_API_KEY",
                 "ANTHROPIC_API_KEY"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sys, "argv", ["nitroproxy"])  # as typed, for the printed commands
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_init_writes_a_config_and_a_private_env_file_and_prints_three_commands(
    newcomer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["init", "."]) == 0
    out = capsys.readouterr().out
    env_file = newcomer / "nitroproxy.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert values["NITROPROXY_ADMIN_KEY"].startswith("np-admin-")
    assert len(values["NITROPROXY_DATA_KEY"]) == 44
    assert values["NITROPROXY_ADMIN_KEY"] not in (newcomer / "nitroproxy.yaml").read_text()
    steps = [s.strip() for s in out.split("next, in this order")[1].splitlines()[1:4]]
    assert steps[:2] == [
        "nitroproxy serve",
        "KEY=$(nitroproxy keys create --name first-key --secret-only)",
    ]
    assert "--config" not in out  # ./nitroproxy.yaml is found from here
    assert steps[2].startswith("curl -s http://127.0.0.1:8080/v1/chat/completions")


def test_init_without_dir_writes_the_user_config_that_every_directory_finds(
    newcomer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["init", "--port", "9000"]) == 0
    config = newcomer.parent / "home" / ".config" / "nitroproxy" / "config.yaml"
    assert config.is_file() and (config.parent / "nitroproxy.env").is_file()
    resolved = resolve(None, env={"HOME": str(newcomer.parent / "home")}, cwd=newcomer,
                       providers=True, require_models=True)  # fmt: skip
    assert resolved.found.path == config
    assert resolved.settings.server.port == 9000
    assert resolved.settings.auth.admin_key == resolved.env_added["NITROPROXY_ADMIN_KEY"]
    data = newcomer.parent / "home" / ".local" / "share" / "nitroproxy" / "nitroproxy.db"
    assert resolved.settings.storage.path == str(data)


def test_init_elsewhere_prints_the_config_flag(
    newcomer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["init", "sub"]) == 0
    config = (newcomer / "sub" / "nitroproxy.yaml").resolve()
    assert f"serve --config {config}" in capsys.readouterr().out


def test_a_second_init_overwrites_nothing(
    newcomer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["init", "."]) == 0
    before = (newcomer / "nitroproxy.env").read_text()
    assert cli.main(["init", "."]) == 2
    assert "exists; not overwriting it" in capsys.readouterr().err
    assert (newcomer / "nitroproxy.env").read_text() == before


@pytest.mark.parametrize(
    "providers",
    [p for n in range(1, 4) for p in itertools.permutations(PROVIDERS, n)],
    ids="+".join,
)
def test_every_starter_is_a_valid_configuration(providers: tuple[str, ...], tmp_path: Path) -> None:
    env = {"NITROPROXY_ADMIN_KEY": "a" * 12, "OPENAI_API_KEY": "o", "ANTHROPIC_API_KEY": "a"}
    path = tmp_path / "starter.yaml"
    path.write_text(config_text(Starter(providers=providers)))
    settings = load(path, env=env)
    assert set(settings.providers) >= {p for p in providers if p != "mock"}
    assert (settings.server.mock_provider is not None) == ("mock" in providers)
    assert Starter(providers=providers).first_model in settings.models


def test_named_providers_need_their_keys_for_serve_only(
    newcomer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["init", ".", "--provider", "openai"]) == 0
    assert "add your openai API key(s)" in capsys.readouterr().out
    assert cli.main(["keys", "create", "--name", "k", "--secret-only"]) == 0
    assert capsys.readouterr().out.startswith("np-")
    with pytest.raises(ConfigError, match=r"OPENAI_API_KEY\} is not set"):
        resolve(None, env={"HOME": str(newcomer)}, cwd=newcomer, providers=True)


def test_init_example_prints_the_shipped_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["init", "--example"]) == 0
    assert capsys.readouterr().out == (ROOT / "config" / "nitroproxy.yaml").read_text()
