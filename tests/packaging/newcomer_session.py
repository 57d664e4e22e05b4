"""A newcomer's first session, run as one script so that it can run with no network.

``python newcomer_session.py NITROPROXY WORKDIR`` runs, in WORKDIR and with the HOME and
environment it was given: ``init``, then the commands ``init`` printed (``serve`` and
``keys create``) exactly as printed, a request with the openai SDK, a key made through the
admin API, ``usage``, and SIGTERM. It prints one JSON object with what it saw; the tests
(test_dist.py, test_wheel.py) run it inside ``unshare -rn`` and assert on it.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from openai import OpenAI


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def shell(command: str, cwd: Path) -> str:
    done = subprocess.run(
        ["sh", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{command!r} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def first_reply(client: OpenAI, deadline: float) -> str:
    """A running server picks up a key made by the CLI within a second (it polls)."""
    while True:
        try:
            reply = client.chat.completions.create(
                model="demo", messages=[{"role": "user", "content": "Hello!"}]
            )
            return reply.choices[0].message.content or ""
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main(nitroproxy: str, workdir: Path, init_args: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    init = shell(f"{shlex.quote(nitroproxy)} init {' '.join(init_args)}", workdir)
    out["init"] = init
    steps = [line.strip() for line in init.split("next, in this order")[1].splitlines()[1:]]
    serve_cmd, key_cmd, curl_cmd = steps[:3]
    port = int(re.search(r"127\.0\.0\.1:(\d+)/", curl_cmd).group(1))  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"

    started = time.monotonic()
    server = subprocess.Popen(
        ["sh", "-c", f"exec {serve_cmd}"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not healthy(url):
            if server.poll() is not None or time.monotonic() - started > 30:
                raise SystemExit(f"serve did not come up: {server.communicate()[1][-2000:]}")
            time.sleep(0.01)
        out["startup_s"] = round(time.monotonic() - started, 3)

        key = shell(f'{key_cmd}; printf %s "$KEY"', workdir)
        out["key_prefix"] = key[:3]
        client = OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        out["reply"] = first_reply(client, time.monotonic() + 5)
        stream = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        out["streamed"] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        if shutil.which("curl"):
            out["curl"] = json.loads(shell(f"KEY={shlex.quote(key)}; {curl_cmd}", workdir))

        env_file = next(
            Path(line.split()[1])
            for line in init.splitlines()
            if line.startswith("wrote ") and "nitroproxy.env" in line
        )
        admin = dict(
            line.split("=", 1)
            for line in env_file.read_text().splitlines()
            if line and not line.startswith("#")
        )["NITROPROXY_ADMIN_KEY"]
        request = urllib.request.Request(
            url + "/admin/keys",
            data=json.dumps({"name": "second-key"}).encode(),
            headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            made = json.loads(response.read())
        second = OpenAI(base_url=url + "/v1", api_key=made["secret"], max_retries=0)
        out["admin_key_reply"] = first_reply(second, time.monotonic() + 5)

        time.sleep(0.5)  # the writer flushes every 200 ms
        out["usage"] = shell(f"{nitroproxy} usage --group-by model", workdir)
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    out["serve_exit"] = server.returncode
    out["serve_traceback"] = "Traceback" in err
    out["files"] = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*") if p.is_file())
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3:])))
