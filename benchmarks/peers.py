"""LiteLLM, the peer: installed into its own venv (``.peers/litellm``), run offline, one worker,
no database, in front of the same upstream (facts in shared/peers.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from benchmarks.targets import PROXY_CPU, Processes, Target, free_port, pinned, wait_http

VENV = Path(".peers/litellm")
MASTER_KEY = "sk-bench-master-key"
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
}


def ensure_litellm(log: list[str]) -> str | None:
    """The installed LiteLLM version, installing it first if needed; None if that failed."""
    python = VENV / "bin" / "python"
    if not (VENV / "bin" / "litellm").exists():
        steps = [
            [shutil.which("python3") or sys.executable, "-m", "venv", str(VENV)],
            [str(VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
        ]
        for cmd in steps:
            log.append("$ " + " ".join(cmd))
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.append(f"  failed: {exc}")
                return None
            if done.returncode != 0:
                log.append(f"  exit {done.returncode}: {done.stderr[-500:]}")
                return None
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
    done = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip() or None


def litellm_config(upstream: Target, models: Sequence[str]) -> dict[str, object]:
    return {
        "model_list": [
            {
                "model_name": m,
                "litellm_params": {
                    "model": f"openai/{m}",
                    "api_base": upstream.base_url + "/v1",
                    "api_key": "upstream-key-unused",
                },
            }
            for m in models
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }


def start_litellm(
    procs: Processes, upstream: Target, models: Sequence[str], run_dir: Path
) -> Target:
    port = free_port()
    path = run_dir / "litellm.yaml"
    path.write_text(yaml.safe_dump(litellm_config(upstream, models)), encoding="utf-8")
    argv = [
        str(VENV / "bin" / "litellm"), "--config", str(path), "--host", "127.0.0.1",
        "--port", str(port), "--num_workers", "1",
    ]  # fmt: skip
    proc = procs.start("litellm", pinned(PROXY_CPU, argv), env=OFFLINE_ENV)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/health/liveliness", 120, proc)
    return Target("litellm", base, {"Authorization": f"Bearer {MASTER_KEY}"}, proc.pid)
