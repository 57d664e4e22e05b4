"""Structured logs: JSON lines (or a console format on a TTY), every line redacted.

Every event, from structlog or from the stdlib ``logging`` module (aiohttp, libraries),
passes through ``redact`` before it is rendered:

1. Content keys (``prompt``, ``messages``, ``content``, ``headers``, ``body`` …) are
   replaced with ``"[dropped]"`` at any depth: request and response text never reaches a log.
2. Credential keys (``authorization``, ``x-api-key``, ``*_api_key``, ``*_token``,
   ``password`` …) become ``"[redacted]"`` unless the value is a number, so
   ``prompt_tokens`` and friends survive.
3. Every remaining string, including the event message and rendered tracebacks, has
   anything shaped like a credential masked: ``Bearer …``, ``sk-…``, ``sk-ant-…``, our own
   ``np-…`` keys, and long random-looking runs (hex of 32+ characters, or 32+ characters
   mixing upper case, lower case and digits).

Logging configuration is process-wide by nature (structlog and ``logging`` both are), so
this module keeps one sink and one processor list and reconfigures them in place. Loggers
made before a reconfigure therefore follow the new output, format and redaction; only their
level stays as it was when they were created (or, for lazy ones, first used).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from enum import Enum
from typing import Any, TextIO, cast

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from nitroproxy.core.types import UsageRecord

__all__ = [
    "access_fields",
    "access_log",
    "configure_logging",
    "flush",
    "get_logger",
    "mask",
    "redact",
]

LEVEL_ENV = "NITROPROXY_LOG_LEVEL"
_LEVELS = {
    "debug": 10,
    "info": 20,
    "warning": 30,
    "warn": 30,
    "error": 40,
    "critical": 50,
}
_FORMATS = ("auto", "json", "console")

DROPPED = "[dropped]"
REDACTED = "[redacted]"

# Field names whose values are request or response text (normalised: lower case, "-" → "_").
_CONTENT_KEYS = frozenset(
    {
        "prompt", "prompts", "messages", "message_content", "content", "contents",
        "completion", "completions", "text", "input", "inputs", "system", "instructions",
        "tools", "tool_calls", "arguments", "choices", "delta", "body", "headers",
    }
)  # fmt: skip
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:authorization|api_?key|apikey|key|keys|secret|token|password|passwd|"
    r"cookie|credentials?|signature|private_key|admin_key|access_token|refresh_token)$"
)
# Ids we generate (request, record, key ids) may be long hex; only prefixed keys are
# masked in them, not the "long random run" rule.
_ID_KEY = re.compile(r"(?:^|_)ids?$")
_PLAIN, _DROP, _SECRET, _ID = 0, 1, 2, 3

_CREDENTIAL = re.compile(
    r"(?i:\b(bearer|basic)\s+)[^\s\"',;]+"
    r"|\b(sk-ant-|sk-|np-|ghp_|xox[abprs]-|AKIA|AIza)[A-Za-z0-9_\-]{16,}"
    r"|(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{32,}"
)
# Cheap pre-checks: most strings match neither, which spares them the pattern above (a
# literal alternation and a minimum length let the regex engine skip ahead).
_HINT = re.compile(r"Bearer|bearer|BEARER|Basic|basic|BASIC|sk-|np-|ghp_|xox|AKIA|AIza")
_LONG_RUN = re.compile(r"[A-Za-z0-9_\-]{32,}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_DIGIT = re.compile(r"[0-9]")
_MAX_DEPTH = 8
# Set by our own processors just before ``redact``, overwriting any caller value.
_OURS = frozenset({"timestamp", "level", "logger"})
_SCALARS = frozenset({int, float, bool, type(None)})


# Key names mostly come from code, so a small memo holds them all.
@functools.lru_cache(maxsize=4096)
def _key_kind(key: object) -> int:
    name = str(key).lower().replace("-", "_")
    if name in _CONTENT_KEYS:
        return _DROP
    if _SECRET_KEY.search(name):
        return _SECRET
    if _ID_KEY.search(name):
        return _ID
    return _PLAIN


def _looks_random(run: str) -> bool:
    if _HEX.fullmatch(run):
        return True
    return run.lower() != run and run.upper() != run and _DIGIT.search(run) is not None


def _mask_any(match: re.Match[str]) -> str:
    if match.group(1):
        return f"{match.group(1)} {REDACTED}"
    if match.group(2):
        return f"{match.group(2)[:6]}…{REDACTED}"
    run = match.group(0)
    return REDACTED if _looks_random(run) else run


def _mask_prefixed(match: re.Match[str]) -> str:
    if match.group(1) or match.group(2):
        return _mask_any(match)
    return match.group(0)


def mask(text: str, *, is_id: bool = False) -> str:
    """``text`` with anything shaped like a credential replaced."""
    if _HINT.search(text) is None and (is_id or _LONG_RUN.search(text) is None):
        return text
    return _CREDENTIAL.sub(_mask_prefixed if is_id else _mask_any, text)


# Model, provider, path and event names repeat on every line; memoise short values.
_mask_short = functools.lru_cache(maxsize=2048)(mask)


def _clean(value: Any, kind: int, depth: int) -> Any:
    """``value`` with content dropped and credentials masked; never mutates it."""
    if type(value) in _SCALARS:
        return value  # numbers cannot carry text, and token counts must survive
    if kind == _DROP:
        return DROPPED
    if kind == _SECRET:
        return REDACTED
    if type(value) is str:
        if kind == _ID:
            return mask(value, is_id=True)
        return _mask_short(value) if len(value) <= 64 else mask(value)
    if depth >= _MAX_DEPTH:
        return "[truncated]"
    if isinstance(value, Mapping):
        return {k: _clean(v, _key_kind(k), depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, _PLAIN, depth + 1) for v in value]
    if isinstance(value, Enum):
        return _clean(value.value, kind, depth + 1)
    if isinstance(value, BaseException):
        return mask(f"{type(value).__name__}: {value}")
    return mask(str(value), is_id=kind == _ID)


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The structlog processor applying the rules in the module docstring."""
    # Assigning to existing keys while iterating is safe: the size does not change.
    for key, value in event_dict.items():
        t = type(value)
        if t is str:
            if key in _OURS:
                continue
            kind = _key_kind(key)
            if kind == _PLAIN:  # the common case, inlined from _clean
                event_dict[key] = _mask_short(value) if len(value) <= 64 else mask(value)
                continue
        elif t in _SCALARS:
            continue
        else:
            kind = _key_kind(key)
        event_dict[key] = _clean(value, kind, 0)
    return event_dict


class _IsoTimestamp:
    """``timestamp`` as ISO 8601 UTC with milliseconds. About 6x cheaper than structlog's
    ``TimeStamper(fmt="iso")`` because the seconds part is formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1000):03d}Z"
        return event_dict


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class _Sink:
    """The one text stream all log lines go to. ``None`` means whatever ``sys.stdout`` is at
    write time, so a replaced stdout (test capture, a daemon's redirect) is followed."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return (sys.stdout if self.stream is None else self.stream).write(text)

    def flush(self) -> None:
        (sys.stdout if self.stream is None else self.stream).flush()


class _Output(structlog.WriteLogger):
    """Writes lines to the sink; ``name`` feeds ``add_logger_name`` as stdlib loggers do."""

    def __init__(self, sink: _Sink, name: str) -> None:
        super().__init__(cast(TextIO, sink))
        self.name = name


class _Batch:
    """Access lines gathered for up to ``DELAY`` seconds and written together: one system
    call per batch instead of one per request. Outside an event loop, lines go at once."""

    DELAY = 0.05
    MAX_LINES = 512

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink
        self._lines: list[str] = []
        self._handle: asyncio.TimerHandle | None = None

    def add(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= self.MAX_LINES:
            self.flush()
        elif self._handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._handle = loop.call_later(self.DELAY, self.flush)

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._lines:
            text = "".join(self._lines)
            self._lines.clear()
            self._sink.write(text)
            self._sink.flush()


class _Setup:
    """The process-wide logging state that ``configure_logging`` rewrites in place."""

    def __init__(self) -> None:
        self.sink = _Sink()
        # structlog's processor list; cached loggers hold this very list, so reconfiguring
        # replaces its elements and never rebinds it.
        self.processors: list[Processor] = _chain(_renderer(console=False))
        self.handler: logging.Handler | None = None
        self.configured = False
        # JSON lines at info or below: access lines may take the direct path.
        self.fast_access = True
        self.stamp = _IsoTimestamp()
        self.batch = _Batch(self.sink)


def _renderer(*, console: bool, colors: bool = False) -> Processor:
    if console:
        # Plain traceback text (already redacted), never rich's dump of local variables.
        return structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
    return structlog.processors.JSONRenderer(serializer=_dumps)


def _chain(renderer: Processor) -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        _IsoTimestamp(),
        structlog.processors.format_exc_info,
        redact,
        renderer,
    ]


_SETUP = _Setup()


def _stdlib_handler(renderer: Processor, level: int) -> logging.Handler:
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            _IsoTimestamp(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(cast(TextIO, _SETUP.sink))
    handler.setFormatter(formatter)
    handler.setLevel(level)
    return handler


def _resolve_level(level: str | None) -> int:
    name = (level or os.environ.get(LEVEL_ENV) or "info").strip().lower()
    if name not in _LEVELS:
        raise ValueError(f"log level must be one of {sorted(_LEVELS)}, got {name!r}")
    return _LEVELS[name]


def _output_factory(*args: Any) -> _Output:
    return _Output(_SETUP.sink, str(args[0]) if args else "nitroproxy")


def _configure_structlog(min_level: int) -> None:
    structlog.configure(
        processors=_SETUP.processors,
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=_output_factory,
        cache_logger_on_first_use=True,
    )


def configure_logging(
    *, level: str | None = None, fmt: str = "auto", stream: TextIO | None = None
) -> None:
    """Send structlog and stdlib logging to ``stream`` (default stdout), redacted.

    ``level``: the argument, else ``$NITROPROXY_LOG_LEVEL``, else ``info``. ``fmt``:
    ``json``, ``console``, or ``auto`` (console on a TTY, JSON otherwise). Calling it again
    replaces the previous setup rather than adding to it.
    """
    if fmt not in _FORMATS:
        raise ValueError(f"log format must be one of {_FORMATS}, got {fmt!r}")
    min_level = _resolve_level(level)
    tty = (sys.stdout if stream is None else stream).isatty()
    renderer = _renderer(console=fmt == "console" or (fmt == "auto" and tty), colors=tty)

    _SETUP.batch.flush()
    _SETUP.sink.stream = stream
    _SETUP.processors[:] = _chain(renderer)
    _SETUP.fast_access = isinstance(renderer, structlog.processors.JSONRenderer) and (
        min_level <= _LEVELS["info"]
    )
    _configure_structlog(min_level)
    _SETUP.configured = True

    root = logging.getLogger()
    if _SETUP.handler is not None:
        root.removeHandler(_SETUP.handler)
    _SETUP.handler = _stdlib_handler(renderer, min_level)
    root.addHandler(_SETUP.handler)
    root.setLevel(min_level)
    # We write one access line per request ourselves (``access_log``).
    logging.getLogger("aiohttp.access").disabled = True


def flush() -> None:
    """Write out access lines still waiting in the batch (at shutdown, or before reading
    the output in a test)."""
    _SETUP.batch.flush()


def get_logger(name: str = "nitroproxy") -> FilteringBoundLogger:
    """A logger whose lines carry ``logger=name``. Safe to create at import time: until
    ``configure_logging`` has run it is a lazy proxy that resolves the configuration on
    first use (structlog meanwhile gets the redacting JSON setup at ``info``, without
    touching stdlib logging). After that it is the bound logger itself, which skips the
    proxy's per-call indirection."""
    if _SETUP.configured:
        return cast(FilteringBoundLogger, structlog.get_logger(name).bind())
    if not structlog.is_configured():
        _configure_structlog(_LEVELS["info"])
    return cast(FilteringBoundLogger, structlog.get_logger(name))


def access_fields(
    record: UsageRecord, *, method: str, path: str, trace_id: str | None = None
) -> dict[str, Any]:
    """The fields of the one access line per request: metadata only, all from the record,
    and the call's trace id when it is traced."""
    ttft = record.ttft_ms
    fields = {
        "request_id": record.request_id,
        "key_id": record.key_id,
        "user_id": record.user_id,
        "method": method,
        "path": path,
        "model": record.model,
        "provider": record.provider,
        "deployment": record.deployment,
        "upstream_model": record.upstream_model,
        "status": record.status,
        "outcome": record.outcome,
        "error_class": record.error_class,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cached_tokens": record.cached_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "usage_source": record.usage_source,
        "cost_usd": record.cost_nanos / 1e9,
        "latency_ms": round(record.latency_ms, 2),
        "ttft_ms": None if ttft is None else round(ttft, 2),
        "attempts": record.attempts,
        "stream": record.stream,
    }
    if trace_id is not None:
        fields["trace_id"] = trace_id
    return fields


def access_log(
    logger: FilteringBoundLogger,
    record: UsageRecord,
    *,
    method: str,
    path: str,
    trace_id: str | None = None,
) -> None:
    """Write the one ``request`` line for a finished request.

    Every field comes from a ``UsageRecord`` (ids, config names, numbers, enum values) and
    the matched route, so there is nothing to redact: JSON lines skip the processor chain
    and are written directly, at a third of the cost per request."""
    line = access_fields(record, method=method, path=path, trace_id=trace_id)
    if _SETUP.fast_access and _SETUP.configured:
        line["event"] = "request"
        line["level"] = "info"
        line["logger"] = "nitroproxy.access"
        _SETUP.stamp(None, "info", line)
        _SETUP.batch.add(orjson.dumps(line).decode() + "\n")
        return
    logger.info("request", **line)
