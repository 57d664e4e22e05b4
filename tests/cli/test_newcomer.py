"""The dead ends a new user met (issue 17), each as the test that would have caught it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nitroproxy import cli, config
from nitroproxy.config.discovery import CHECKOUT_CONFIG
from nitroproxy.core.limits import KeyLimits, check_budget
from nitroproxy.store.db import open_db
from nitroproxy.store.usage import insert_many
from tests.records import make_record

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


@pytest.fixture
def newcomer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (
        "NITROPROXY_CONFIG",
        "NITROPROXY_DATA_DIR",
        "NITROPROXY_ADMIN_KEY",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def fake_checkout(at: Path) -> Path:
    """A directory with what makes a checkout, the real demo config and the real venv."""
    (at / "nitroproxy").mkdir(parents=True)
    (at / "nitroproxy" / "__init__.py").write_text("")
    (at / "setup.cfg").write_text("")
    (at / "config").mkdir()
    shutil.copy(ROOT / "config" / "demo.yaml", at / "config" / "demo.yaml")
    (at / ".venv").symlink_to(ROOT / ".venv")
    return at


def test_serve_outside_a_checkout_with_no_config_says_to_run_init(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(newcomer)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run `nitroproxy init`" in err


def test_after_make_run_the_cli_reads_the_demo_it_serves(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert re.search(rf"^CONFIG \?= {re.escape(str(CHECKOUT_CONFIG))}$", MAKEFILE, re.M)
    assert "$(BIN)/nitroproxy serve --config $(CONFIG)" in MAKEFILE
    repo = fake_checkout(newcomer / "repo")
    monkeypatch.chdir(repo)
    db = repo / "data" / "demo.db"

    async def seed() -> None:
        conn = await open_db(db)
        await insert_many(conn, [make_record(1, model="demo", cost_nanos=300_000)])
        await conn.close()

    asyncio.run(seed())
    assert cli.main(["usage", "--group-by", "model"]) == 0  # no OPENAI_API_KEY needed
    out = capsys.readouterr().out
    assert re.search(r"^demo\s+1\s", out, re.M) and "0.0003" in out


def test_the_readme_says_where_the_cli_lives() -> None:
    assert "`.venv/bin/nitroproxy`" in README
    setup = README.split("## Set-up")[1].split("```")[1].strip().splitlines()
    assert [line.split("#")[0].strip() for line in setup[1:]] == ["make run", "make test"]


def test_keys_create_needs_no_provider_key(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NITROPROXY_DATA_DIR", str(newcomer / "data"))
    shipped = str(ROOT / "config" / "nitroproxy.yaml")
    assert cli.main(["keys", "create", "-c", shipped, "--name", "first"]) == 0
    assert "secret" in capsys.readouterr().out
    assert (newcomer / "data" / "nitroproxy.db").is_file()
    with pytest.raises(SystemExit):
        cli.main(["serve", "-c", shipped])  # serve calls providers: it needs their keys
    assert f"{shipped}: environment variable $" in capsys.readouterr().err


def readme_blocks(section: str) -> list[str]:
    text = README.split(f"## {section}")[1].split("\n## ")[0]
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def test_the_readme_first_key_commands_work_as_pasted(newcomer: Path) -> None:
    """The README's blocks, run by a shell against `make run`'s server, with no network
    (a namespace of its own, so port 8080 is free whatever else runs here)."""
    from tests.packaging.conftest import fresh_env, offline

    if not (shutil.which("unshare") and shutil.which("ip")):
        pytest.skip("needs unshare (util-linux) and ip (iproute2) for a private port 8080")
    cli_block, export_block, curl_block = readme_blocks("Your first key")
    repo = fake_checkout(newcomer / "repo")
    wait = (
        ".venv/bin/python -c 'import time, urllib.request\n"
        "for _ in range(300):\n"
        '    try: urllib.request.urlopen("http://127.0.0.1:8080/healthz"); break\n'
        "    except OSError: time.sleep(0.05)'"
    )
    script = "\n".join(
        [
            "set -e",
            export_block,
            ".venv/bin/nitroproxy serve --config config/demo.yaml >serve.log 2>&1 & pid=$!",
            wait,
            "echo '--- cli'",
            cli_block,
            "echo '--- api'",
            curl_block,
            "kill -TERM $pid; wait $pid",
        ]
    )
    done = subprocess.run(
        offline(["sh", "-c", script]),
        cwd=repo,
        env=fresh_env(newcomer / "home"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    cli_out, api_out = done.stdout.split("--- cli\n")[1].split("--- api\n")
    assert re.search(r"^secret\s+np-", cli_out, re.M)
    made = json.loads(api_out)
    assert made["name"] == "second-key" and made["secret"].startswith("np-")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from nitroproxy import __version__

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"nitroproxy {__version__}\n"


def test_tables_show_names_iso_times_and_money_that_is_not_zero(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(newcomer)
    cfg = newcomer / "np.yaml"
    cfg.write_text(f"storage: {{path: {newcomer / 'np.db'}}}\n")
    assert cli.main(["keys", "create", "-c", str(cfg), "--name", "laptop", "--json",
                     "--budget-day", "0.0003"]) == 0  # fmt: skip
    key = json.loads(capsys.readouterr().out)

    async def seed() -> None:
        conn = await open_db(newcomer / "np.db")
        record = dataclasses.replace(make_record(1, cost_nanos=140), key_id=key["id"])
        await insert_many(conn, [record])
        await conn.close()

    asyncio.run(seed())
    assert cli.main(["keys", "list", "-c", str(cfg)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[0] == "name" and row.startswith("laptop")
    assert re.search(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b", row)
    assert str(key["created"]) not in row
    assert cli.main(["keys", "show", "-c", str(cfg), key["id"]]) == 0
    assert re.search(r"^budget_day_usd\s+\$0\.0003$", capsys.readouterr().out, re.M)
    assert cli.main(["usage", "-c", str(cfg), "--group-by", "key"]) == 0
    usage = capsys.readouterr().out
    assert f"laptop ({key['prefix']})" in usage and "0.00000014" in usage


def test_a_tiny_budget_is_reported_with_its_digits() -> None:
    quota = check_budget(KeyLimits(budget_day_usd=0.0003), 0.00031, 0.0)
    assert quota is not None
    assert "daily budget of $0.0003 (spent $0.00031)" in str(quota)


@pytest.mark.parametrize("command", [["check-config", "{file}"], ["serve", "-c", "{file}"]])
def test_a_configuration_with_no_models_is_refused_in_one_line(
    newcomer: Path, command: list[str]
) -> None:
    empty = newcomer / "empty.yaml"
    empty.write_text("server: {port: 0}\n")
    done = subprocess.run(
        [sys.executable, "-m", "nitroproxy", *(c.format(file=empty) for c in command)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    refusal = "models: none configured, so every request would be refused"
    assert done.stderr == f"nitroproxy: config error: {empty}: {refusal}\n"


def test_make_run_installs_the_runtime_dependencies_only(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("needs make")
    done = subprocess.run(
        ["make", "-n", "run", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    installs = [line for line in done.stdout.splitlines() if "pip install" in line]
    assert installs and all("[" not in line for line in installs), installs
    assert any(line.endswith("install -q -e .") for line in installs)


def test_the_example_configuration_shows_every_section() -> None:
    text = (ROOT / "config" / "nitroproxy.yaml").read_text()
    shown = set(yaml.safe_load(text))
    sections = {f.name for f in dataclasses.fields(config.Settings)}
    assert sections - shown == set()
    server = {f.name for f in dataclasses.fields(config.ServerSettings)}
    missing = {name for name in server if not re.search(rf"^\s*#?\s*{name}:", text, re.M)}
    assert missing == set()
