"""Micro-benchmarks of the hot pure code: ``python -m benchmarks.micro [--scale F]``.

A small timeit runner (best and median of 5 repeats, per operation): SSE parse per chunk,
the whole stream pipeline per chunk with and without token counting, token counting per
chunk, key lookup among 1,000 static keys, and the usage-record write rate into SQLite (the
``bench_writer`` scenario). Prints one ``MICROJSON {...}`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.bench_writer import _run as run_writer
from nitroproxy import config, data
from nitroproxy.core import sse, tokens
from nitroproxy.core.completion_counter import CompletionCounter
from nitroproxy.core.pipeline import OpenAIStream, TextLog
from nitroproxy.core.types import ApiFormat
from nitroproxy.mock.content import WORDS
from nitroproxy.web.auth import Authenticator

_MARK = "MICROJSON "
CHUNK = (
    b'data: {"id":"chatcmpl-mock-1","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"mock+tokens=50","system_fingerprint":"fp_nitroproxy_mock","choices":[{"index":0,'
    b'"delta":{"content":" fox"},"logprobs":null,"finish_reason":null}]}\n\n'
)


def per_op_ns(fn: Callable[[int], None], n: int, repeats: int = 5) -> dict[str, float]:
    """``fn(n)`` performs n operations; returns best and median ns per operation."""
    fn(max(1, n // 10))  # warm caches
    samples = []
    for _ in range(repeats):
        began = time.perf_counter_ns()
        fn(n)
        samples.append((time.perf_counter_ns() - began) / n)
    return {"best_ns": round(min(samples), 1), "median_ns": round(statistics.median(samples), 1)}


def _sse(n: int) -> None:
    decoder = sse.SSEDecoder()
    for _ in range(n):
        decoder.feed(CHUNK)


def _pipeline(count: bool) -> Callable[[int], None]:
    """Per chunk as the exchange runs it: feed, then commit once written. With ``count``
    the delivered text is kept and counted once at the end, as for a stream cut short."""
    enc = data.encoding_for_model("gpt-4o")

    def go(n: int) -> None:
        log = TextLog() if count else None
        pipe = OpenAIStream(client=ApiFormat.OPENAI, counter=log)
        for _ in range(n):
            pipe.feed(CHUNK)
            pipe.commit()
        if log is not None:
            tokens.count_text(enc, log.text())

    return go


def _tokens(n: int) -> None:
    counter = CompletionCounter(data.encoding_for_model("gpt-4o"))
    words = WORDS
    for i in range(n):
        counter.feed(words[i % len(words)])
    _ = counter.total


def _key_lookup() -> Callable[[int], None]:
    keys = [{"name": f"k{i}", "key": f"np-bench-key-{i:06d}"} for i in range(1000)]
    auth = Authenticator(config.parse({"keys": keys}))
    headers = {"Authorization": "Bearer np-bench-key-000500"}

    def go(n: int) -> None:
        for _ in range(n):
            auth.authenticate(headers)

    return go


def _writer(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        elapsed, dropped, stored = asyncio.run(run_writer(n, 500, Path(tmp) / "bench.db"))
    return {
        "records": n,
        "stored": stored,
        "dropped": dropped,
        "seconds": round(elapsed, 3),
        "records_per_s": round(stored / elapsed, 0),
    }


def run(scale: float) -> dict[str, Any]:
    n = max(100, int(20_000 * scale))
    return {
        "sse_parse_per_chunk": per_op_ns(_sse, n),
        "pipeline_per_chunk_counting": per_op_ns(_pipeline(True), n),
        "pipeline_per_chunk_no_counting": per_op_ns(_pipeline(False), n),
        "token_count_per_chunk": per_op_ns(_tokens, n),
        "key_lookup_1000_keys": per_op_ns(_key_lookup(), n),
        "usage_writer": _writer(max(1000, int(100_000 * scale))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full counts")
    args = parser.parse_args()
    print(_MARK + json.dumps(run(args.scale)), flush=True)


def parse(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            parsed: dict[str, Any] = json.loads(line[len(_MARK) :])
            return parsed
    return {"error": "micro-benchmarks printed no result"}


if __name__ == "__main__":
    main()
