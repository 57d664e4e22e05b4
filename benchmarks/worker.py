"""A long-lived load process: ``python -m benchmarks.worker`` takes one JSON job per stdin line
and answers each with one JSON line on stdout.

Starting a Python load client per measurement costs about 0.3 s of interpreter and aiohttp
import, which dominates short runs; the harness starts one worker (pinned to the load core)
and sends it every streaming run, and every non-streamed run when wrk is not used.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import time
from typing import Any

_MARK = "WORKERJSON "


def _serve() -> None:
    from benchmarks import pyload, streams
    from benchmarks.loop import new_loop

    loop = new_loop()
    for line in sys.stdin:
        job = json.loads(line)
        kind = job.pop("kind")
        try:
            if kind == "load":
                text = loop.run_until_complete(pyload.run(**job))
                result: dict[str, Any] = {"stdout": text}
            else:
                args = argparse.Namespace(**job)
                args.body_bytes = args.body.encode()
                result = {
                    "stdout": streams.MARK + json.dumps(loop.run_until_complete(streams.run(args)))
                }
        except Exception as exc:  # reported to the harness, which counts the run as failed
            result = {"stdout": "", "error": f"{type(exc).__name__}: {exc}"}
        print(_MARK + json.dumps(result), flush=True)
    loop.close()


class Worker:
    """The harness's handle on a worker process (which the harness owns and stops)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid

    def call(self, job: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one job, wait up to ``timeout`` seconds for its answer."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write((json.dumps(job) + "\n").encode())
        stdin.flush()
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 0.2)
            if not ready:
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            for line in buf.split(b"\n"):
                if line.startswith(_MARK.encode()):
                    answer: dict[str, Any] = json.loads(line[len(_MARK) :])
                    return answer
        # A worker that overran may still answer later, out of turn: never reuse it.
        self.proc.kill()
        return {"stdout": "", "error": f"no answer from the load worker within {timeout:.0f}s"}


if __name__ == "__main__":
    _serve()
