"""What tracing costs one call on the hot path: ``python -m benchmarks.trace_cost [--calls N]``.

The real gateway with the test suite's ``MockTransport`` (no sockets, so no load generator
and no upstream share the measurement): non-streamed and streamed calls, each with one
failed attempt before the one that answers in the ``m`` model and one attempt in ``one``.
Reported per call as process CPU time (all threads, so the batch processor's export thread
counts too), best and median of 5 repeats, for: tracing off; on with every span built and
then dropped by the exporter; on with every span encoded as OTLP protobuf (what the OTLP
exporter does before its HTTP POST); and on at a 10% sample ratio, encoded. Prints one
``TRACEJSON {...}`` line after the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from nitroproxy.config import TracingSettings
from nitroproxy.telemetry.traces import Tracing
from tests.proxy.fakes import Sent, drain, make_rig, ok

_MARK = "TRACEJSON "


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Encode(SpanExporter):
    """The OTLP/HTTP exporter's work short of the network: encode and serialise."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode_spans(spans).SerializePartialToString()
        return SpanExportResult.SUCCESS


def _handler(sent: Sent) -> Any:
    return ok(stream=sent.body.get("stream") is True)


async def _calls(tracing: Tracing | None, n: int, stream: bool) -> float:
    """CPU seconds per call over ``n`` calls on a fresh gateway."""
    rig = make_rig(_handler)
    rig.gateway.tracing = tracing
    await rig.gateway.start()
    try:
        for _ in range(20):  # warm up
            await drain(rig, rig.call("one", stream=stream))
        start = time.process_time()
        for _ in range(n):
            await drain(rig, rig.call("one", stream=stream))
        if tracing is not None:
            await asyncio.get_running_loop().run_in_executor(None, tracing.force_flush)
        spent = time.process_time() - start
        await rig.settled()
    finally:
        await rig.gateway.close()
    return spent / n


def _tracing(mode: str) -> Tracing | None:
    if mode == "off":
        return None
    ratio = 0.1 if mode == "encoded_10pct" else 1.0
    exporter = _Drop() if mode == "dropped" else _Encode()
    return Tracing(TracingSettings(enabled=True, sample_ratio=ratio), exporter=exporter)


MODES = ("off", "dropped", "encoded", "encoded_10pct")


def run(calls: int, repeats: int = 5, modes: Sequence[str] = MODES) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for stream in (False, True):
        kind = "stream" if stream else "json"
        for mode in modes:
            samples = []
            for _ in range(repeats):
                tracing = _tracing(mode)
                samples.append(asyncio.run(_calls(tracing, calls, stream)) * 1e6)
                if tracing is not None:
                    tracing.shutdown()
            out[f"{kind}/{mode}"] = {
                "best_us": round(min(samples), 1),
                "median_us": round(statistics.median(samples), 1),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--modes", default=",".join(MODES), help=f"some of {', '.join(MODES)}")
    args = parser.parse_args()
    result = run(args.calls, modes=args.modes.split(","))
    for name, stats in result.items():
        base = result.get(name.split("/")[0] + "/off", stats)["best_us"]
        print(
            f"{name:22} best {stats['best_us']:8.1f} us/call  median {stats['median_us']:8.1f}"
            f"  (+{stats['best_us'] - base:.1f} us over off)"
        )
    print(_MARK + json.dumps(result))


if __name__ == "__main__":
    main()
