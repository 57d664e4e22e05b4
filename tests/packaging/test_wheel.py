"""The wheel, installed into a clean venv outside the repository: init → serve → a first
request and a first key, with no network; and the warnings a newcomer used to see."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.packaging.conftest import ROOT, fresh_env, intact, offline, run_session


def test_building_the_wheel_prints_no_setuptools_warning(wheel_build: tuple[Path, str]) -> None:
    _, log = wheel_build
    lines = [line for line in log.splitlines() if "is ignored: it is neither" not in line]
    assert not [line for line in lines if "Warning" in line or "!!" in line], lines


def test_init_serve_first_request_and_first_key_from_the_wheel(
    installed: Path, no_network: None, tmp_path: Path
) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()

    seen = run_session(str(installed), workdir, tmp_path / "home", ".")

    assert f"  {installed} serve\n" in seen["init"]  # found as ./nitroproxy.yaml: no --config
    assert seen["reply"] and seen["streamed"] and seen["admin_key_reply"]
    assert "demo" in seen["usage"]
    assert seen["serve_exit"] == 0 and not seen["serve_traceback"]
    assert seen["files"] == ["nitroproxy.env", "nitroproxy.yaml"]  # data not in the cwd
    assert intact(tmp_path / "home/.local/share/nitroproxy/nitroproxy.db")


def test_serve_without_a_configuration_says_how_to_make_one(
    installed: Path, no_network: None, tmp_path: Path
) -> None:
    done = subprocess.run(
        offline([str(installed), "serve"]),
        cwd=tmp_path,
        env=fresh_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "nitroproxy init" in done.stderr
    assert "cannot read config" not in done.stderr


def test_the_wheel_ships_the_example_configurations(installed: Path, tmp_path: Path) -> None:
    env = fresh_env(tmp_path / "home")
    example = subprocess.run(
        [str(installed), "init", "--example"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert example == (ROOT / "config" / "nitroproxy.yaml").read_text()
    (tmp_path / "example.yaml").write_text(example)
    checked = subprocess.run(
        [str(installed), "check-config", "example.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    # No provider key is set: the file is still valid, and the note names what serve needs.
    assert checked.returncode == 0, checked.stderr
    assert "OPENAI_API_KEY" in checked.stderr
