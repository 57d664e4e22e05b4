"""Finding the configuration, the env file beside it and the data directory; provider
secrets that only ``serve`` needs; the one-line refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nitroproxy.config import ConfigError
from nitroproxy.config.discovery import data_dir, find_config, storage_path
from nitroproxy.config.envfile import parse_env, read_env_file
from nitroproxy.config.provider_secrets import unset_provider_secrets
from nitroproxy.config.resolved import resolve

ROOT = Path(__file__).resolve().parents[2]
MODEL = "models: {m: {deployments: [{provider: p, model: x}]}}\n"
PROVIDER = "providers: {p: {kind: openai, base_url: 'http://127.0.0.1:9/v1', api_key: k}}\n"


def checkout(at: Path) -> Path:
    """The files that make a directory a NitroProxy checkout."""
    (at / "nitroproxy").mkdir(parents=True)
    (at / "nitroproxy" / "__init__.py").write_text("")
    (at / "config").mkdir()
    (at / "config" / "demo.yaml").write_text(PROVIDER + MODEL)
    (at / "setup.cfg").write_text("")
    return at


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home")}


def test_the_first_place_that_names_a_configuration_wins(
    tmp_path: Path, home: dict[str, str]
) -> None:
    user = tmp_path / "home" / ".config" / "nitroproxy" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("")
    cwd = checkout(tmp_path / "repo")
    assert find_config(None, home, tmp_path).path == user
    assert find_config(None, home, cwd).path == Path("config/demo.yaml")  # what make run serves
    (cwd / "nitroproxy.yaml").write_text("")
    assert find_config(None, home, cwd).path == Path("nitroproxy.yaml")
    env = {**home, "NITROPROXY_CONFIG": "/etc/np.yaml"}
    assert find_config(None, env, cwd).path == Path("/etc/np.yaml")
    assert find_config("given.yaml", env, cwd).path == Path("given.yaml")


def test_xdg_config_home_is_honoured_and_a_relative_one_ignored(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "nitroproxy").mkdir(parents=True)
    (xdg / "nitroproxy" / "config.yaml").write_text("")
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(xdg)}
    assert find_config(None, env, tmp_path).path == xdg / "nitroproxy" / "config.yaml"
    with pytest.raises(ConfigError, match=r"home/\.config/nitroproxy/config\.yaml"):
        find_config(None, {**env, "XDG_CONFIG_HOME": "xdg"}, tmp_path)


def test_no_configuration_anywhere_is_one_line_that_says_how_to_make_one(
    tmp_path: Path, home: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as info:
        find_config(None, home, tmp_path)
    assert "nitroproxy init" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data/nitroproxy.db", "{data}/nitroproxy.db"),
        ("usage.db", "{data}/usage.db"),
        ("sub/usage.db", "{data}/sub/usage.db"),
        ("/srv/np.db", "/srv/np.db"),
        (":memory:", ":memory:"),
    ],
)
def test_relative_storage_outside_a_checkout_lands_in_the_data_directory(
    tmp_path: Path, path: str, expected: str
) -> None:
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "share")}
    data = tmp_path / "share" / "nitroproxy"
    assert data_dir(env, tmp_path) == data
    assert storage_path(path, env, tmp_path) == expected.format(data=data)


def test_inside_a_checkout_relative_storage_keeps_its_meaning(tmp_path: Path) -> None:
    cwd = checkout(tmp_path)
    assert storage_path("data/demo.db", {"HOME": str(tmp_path)}, cwd) == "data/demo.db"
    env = {"NITROPROXY_DATA_DIR": "/var/lib/np"}
    assert storage_path("data/demo.db", env, cwd) == "/var/lib/np/demo.db"


def test_the_env_file_fills_what_the_environment_lacks(tmp_path: Path) -> None:
    (tmp_path / "np.yaml").write_text(
        PROVIDER + MODEL + "storage: {path: '${DB}'}\nauth: {admin_key: '${ADMIN}'}\n"
    )
    env_file = tmp_path / "nitroproxy.env"
    env_file.write_text("# secrets\nADMIN=from-file-admin\nexport DB=/tmp/from-file.db\n")
    env_file.chmod(0o600)
    env = {"HOME": str(tmp_path), "ADMIN": "from-env-admin"}
    resolved = resolve(str(tmp_path / "np.yaml"), env=env, cwd=tmp_path, providers=True)
    assert resolved.settings.auth.admin_key == "from-env-admin"
    assert resolved.settings.storage.path == "/tmp/from-file.db"
    assert dict(resolved.env_added) == {"DB": "/tmp/from-file.db"}


def test_an_env_file_every_user_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nitroproxy.env"
    path.write_text("A=b\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_env_file(path)
    path.chmod(0o640)  # a group (root:nitroproxy) may read it
    assert read_env_file(path) == {"A": "b"}


def test_a_bad_env_line_names_its_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"^x.env:2: expected KEY=value$"):
        parse_env("A=1\nnot a line\n", "x.env")


@pytest.mark.parametrize(
    ("text", "env", "unset"),
    [
        ("providers: {o: {api_key: '${K}'}}", {}, ["K"]),
        ("providers:\n  o:\n    api_key: ${K}\n    headers: {x-org: '${O}'}\n", {}, ["K", "O"]),
        ("providers: {o: {api_key: '${K}'}}", {"K": "set"}, []),
        ("providers: {o: {api_key: '${K}'}}\nauth: {admin_key: '${K}'}", {}, []),
        ("providers: {o: {base_url: '${URL}'}}", {}, []),
        ("storage: {path: '${K}'}", {}, []),
        ("# api_key: ${K}\nproviders: {}", {}, []),
    ],
)
def test_only_provider_secrets_may_stay_unset(
    text: str, env: dict[str, str], unset: list[str]
) -> None:
    assert unset_provider_secrets(text, env) == unset


def test_commands_that_call_no_provider_run_without_provider_keys(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "NITROPROXY_DATA_DIR": str(tmp_path / "data")}
    shipped = str(ROOT / "config" / "nitroproxy.yaml")
    resolved = resolve(shipped, env=env, cwd=tmp_path, providers=False)
    assert resolved.unset_secrets == ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")
    assert resolved.settings.storage.path == str(tmp_path / "data" / "nitroproxy.db")
    with pytest.raises(ConfigError) as info:
        resolve(shipped, env=env, cwd=tmp_path, providers=True)
    assert str(info.value).startswith(f"{shipped}: ") and "API_KEY} is not set" in str(info.value)
    assert str(info.value).endswith(f"(export it, or put it in {ROOT}/config/nitroproxy.env)")


def test_a_configuration_without_models_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("{}\n")
    with pytest.raises(ConfigError) as info:
        resolve("empty.yaml", env=os.environ, cwd=tmp_path, providers=True, require_models=True)
    assert str(info.value) == (
        "empty.yaml: models: none configured, so every request would be refused"
    )


def test_an_unreadable_configuration_names_the_file_as_given(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^missing.yaml: cannot read config"):
        resolve("missing.yaml", env={"HOME": str(tmp_path)}, cwd=tmp_path, providers=False)
