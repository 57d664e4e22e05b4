"""The streaming load client: many concurrent SSE chat streams, each one checked.

``python -m benchmarks.streams --url URL --body FILE --tokens N --concurrency C
(--streams N | --duration S)``. A stream counts as ok only if it answers 200, carries exactly
the expected number of content tokens, has no error event and ends with ``data: [DONE]``;
anything else is an error of a named kind. TTFT is measured from sending the request to the
first content token. Prints one ``STREAMJSON {...}`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from benchmarks.loop import new_loop
from benchmarks.sseclient import SSEConnection, request_bytes

MARK = "STREAMJSON "


@dataclass
class _Tally:
    ttft: list[float] = field(default_factory=list)
    ok: int = 0
    tokens: int = 0
    started: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


def _count(block: bytes, state: dict[str, Any]) -> None:
    """Fold one SSE event block into ``state`` (tokens, done, error)."""
    for line in block.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            state["done"] = True
            continue
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            state["error"] = "bad_json"
            continue
        if not isinstance(obj, dict) or "error" in obj:
            state["error"] = "error_event"
            continue
        for choice in obj.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content:
                state["tokens"] += 1
                if state["first"] is None:
                    state["first"] = time.perf_counter()


async def _connect(args: argparse.Namespace) -> SSEConnection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(SSEConnection, args.host, args.port)
    return conn


async def _one(
    conn: SSEConnection | None, args: argparse.Namespace, tally: _Tally
) -> SSEConnection | None:
    """One stream; returns the connection for the next one, or None if it must not be reused."""
    tally.started += 1
    state: dict[str, Any] = {"tokens": 0, "done": False, "error": None, "first": None}
    began = time.perf_counter()
    try:
        async with asyncio.timeout(args.timeout):
            if conn is None or conn.closed:
                conn = await _connect(args)
            status = await conn.exchange(args.request, lambda block: _count(block, state))
    except TimeoutError:
        tally.error("timeout")
        _drop(conn)
        return None
    except OSError:
        tally.error("connection")
        _drop(conn)
        return None
    if status != 200:
        tally.error("bad_status")
    elif state["error"] is not None:
        tally.error(state["error"])
    elif not state["done"]:
        tally.error("no_done")
    elif state["tokens"] != args.tokens:
        tally.error("token_count")
    else:
        tally.ok += 1
        tally.tokens += state["tokens"]
        tally.ttft.append(state["first"] - began)
    return conn


def _drop(conn: SSEConnection | None) -> None:
    if conn is not None and conn.transport is not None:
        conn.transport.abort()


async def _worker(
    args: argparse.Namespace, budget: list[int], deadline: float, tally: _Tally, delay: float
) -> None:
    conn: SSEConnection | None = None
    # A ramp spreads the first starts over one stream's length, so that a closed loop of
    # equal streams does not stay one synchronized burst.
    await asyncio.sleep(delay)
    try:
        while time.monotonic() < deadline and budget[0] != 0:
            budget[0] -= 1
            conn = await _one(conn, args, tally)
    finally:
        if conn is not None and conn.transport is not None:
            conn.transport.close()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tally = _Tally()
    budget = [args.streams if args.streams > 0 else -1]
    args.host, args.port, args.request = request_bytes(args.url, args.body_bytes, args.headers)
    began = time.monotonic()
    deadline = began + args.duration
    ramp = getattr(args, "ramp", 0.0) / max(1, args.concurrency)
    await asyncio.gather(
        *(_worker(args, budget, deadline, tally, i * ramp) for i in range(args.concurrency))
    )
    elapsed = time.monotonic() - began
    return {
        "streams": tally.started,
        "ok": tally.ok,
        "errors": sum(tally.kinds.values()),
        "error_kinds": tally.kinds,
        "duration_s": round(elapsed, 3),
        "streams_per_s": round(tally.ok / elapsed, 1),
        "tokens_per_s": round(tally.tokens / elapsed, 1),
        "ttft_p50_ms": round(_pct(tally.ttft, 50), 3),
        "ttft_p99_ms": round(_pct(tally.ttft, 99), 3),
        "ttft_max_ms": round(max(tally.ttft, default=0.0) * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="a file with the JSON request body")
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--streams", type=int, default=0, help="stop after N streams")
    parser.add_argument("--duration", type=float, default=10.0, help="no new streams after S s")
    parser.add_argument("--timeout", type=float, default=60.0, help="per stream, seconds")
    parser.add_argument("--ramp", type=float, default=0.0, help="spread first starts over S s")
    args = parser.parse_args()
    with open(args.body, "rb") as f:
        args.body_bytes = f.read()
    args.headers = {"Content-Type": "application/json"}
    for header in args.header:
        name, _, value = header.partition(":")
        args.headers[name.strip()] = value.strip()
    loop = new_loop()
    try:
        result = loop.run_until_complete(run(args))
    finally:
        loop.close()
    print(MARK + json.dumps(result), flush=True)


def parse(stdout: str) -> dict[str, Any]:
    """The result line of a run's output; a run that printed none is one error."""
    for line in stdout.splitlines():
        if line.startswith(MARK):
            parsed: dict[str, Any] = json.loads(line[len(MARK) :])
            return parsed
    return {"streams": 0, "ok": 0, "errors": 1, "error_kinds": {"no_output": 1}}


if __name__ == "__main__":
    main()
