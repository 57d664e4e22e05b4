"""What one request asks the mock to do, read from its upstream model name (pure).

Grammar: ``<name>[+<directive>]...``; the name is free text and is echoed back as the model.

=============== ===================================================================
``tokens=N``    N completion tokens (default ``MockSettings.tokens``)
``delay=MS``    MS milliseconds before each streamed token after the first
``cached=N``    report N cached prompt tokens
``reasoning=N`` report N reasoning tokens (OpenAI chat; included in completion_tokens)
``write5m=N``   Anthropic: report N prompt tokens written to the 5-minute cache
``write1h=N``   Anthropic: report N prompt tokens written to the 1-hour cache (both are
                outside ``input_tokens``, as Anthropic reports them)
``retry=S``     send ``retry-after: S`` with a ``failNNN`` answer (429 defaults to 1)
``failNNN``     answer status NNN (400..599) with an error body in the route's shape
``hang``        never answer; wait until the client goes away
``reset``       close the TCP connection before any response byte
``drop``        stream: half the tokens, then close the connection without the end
                events; non-stream: close it right after the response headers
``slowfirst``   the first token waits ``MockSettings.slow_first_token_ms``
``nousage``     report no usage at all (Anthropic streams keep message_start's)
``garbage``     stream: two valid token events, then lines that are not JSON, then
                the end; non-stream: a 200 whose body is not JSON
``ok``          nothing; a "behave normally" entry for ``MockState.enqueue_faults``
``echo``        the completion is the text of the last user message (legacy
                completions: the prompt), one token per word, each sent as " word"
                like the normal words; ``tokens=N`` is ignored, the request's
                ``max_tokens`` still cuts it, and completion_tokens is the number of
                words (the mock's count, not a tokenizer's). A tool-call answer's
                arguments become ``{"query": <that text>}``. Not a fault: a queued
                entry keeps it. Made for privacy tests: a canary in the prompt comes
                back in the text and in tool arguments.
``text``        answer with text even when tools are offered (a scripted call,
                ``MockState.script_tool_call``, is still made): what a coding agent
                that sends its tools with every turn needs for a plain answer.
                Not a fault: a queued entry keeps it.
=============== ===================================================================

Unknown directives are a 400, so that a typo in a test fails loudly instead of passing.
Precedence of the faults that stop before a response: ``reset``, ``hang``, ``failNNN``.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from nitroproxy.mock.settings import MockSettings

_FLAGS = frozenset({"hang", "reset", "drop", "slowfirst", "nousage", "garbage", "echo", "text"})
# Flags that shape the answer rather than fault it: a queued entry does not replace them.
_CONTENT_FLAGS = frozenset({"echo", "text"})
_COUNTS = {
    "tokens": "tokens",
    "cached": "cached",
    "reasoning": "reasoning",
    "write5m": "write_5m",
    "write1h": "write_1h",
}


@dataclass(frozen=True)
class Script:
    """The resolved behaviour of one request."""

    tokens: int
    delay_ms: float
    first_token_delay_ms: float
    cached: int = 0
    reasoning: int = 0
    write_5m: int = 0
    write_1h: int = 0
    fail_status: int | None = None
    retry_after: str | None = None
    flags: frozenset[str] = frozenset()


def parse_script(
    model: str,
    settings: MockSettings,
    queued: str | None = None,
    override: object = None,
) -> Script:
    """Resolve a request's script; raises ValueError naming the bad directive.

    ``queued`` is an entry from ``MockState.enqueue_faults``: its faults replace those of the
    model name (so ``mock+fail500`` with a queued ``ok`` succeeds once), while ``echo`` stays.
    ``override`` is the optional body field ``"mock": {"tokens": N, "delay_ms": MS}``.
    """
    _, *segments = model.split("+")
    script = Script(settings.tokens, settings.delay_ms, settings.first_token_delay_ms)
    script = _apply(script, segments)
    if queued is not None:
        script = _apply(
            replace(script, fail_status=None, flags=script.flags & _CONTENT_FLAGS),
            queued.split("+"),
        )
    if override is not None:
        script = _apply_override(script, override)
    if "slowfirst" in script.flags:
        script = replace(script, first_token_delay_ms=settings.slow_first_token_ms)
    return script


def check_directives(entry: str) -> None:
    """Raise ValueError unless ``entry`` is a valid ``+``-joined list of directives."""
    _apply(Script(0, 0.0, 0.0), entry.split("+"))


def _apply(script: Script, segments: Iterable[str]) -> Script:
    flags = set(script.flags)
    changes: dict[str, Any] = {}
    for segment in segments:
        name, eq, value = segment.partition("=")
        if eq:
            changes.update(_parameter(name, value))
        elif segment.startswith("fail"):
            changes["fail_status"] = _status(segment)
        elif segment in _FLAGS:
            flags.add(segment)
        elif segment != "ok":
            raise ValueError(f"unknown mock directive {segment!r} in the model name")
    return replace(script, flags=frozenset(flags), **changes)


def _parameter(name: str, value: str) -> dict[str, Any]:
    if name in _COUNTS:
        return {_COUNTS[name]: _count(name, value)}
    if name == "delay":
        return {"delay_ms": _milliseconds(name, value)}
    if name == "retry":
        _milliseconds(name, value)  # validates; the header carries the text as written
        return {"retry_after": value}
    raise ValueError(f"unknown mock directive {name + '=' + value!r} in the model name")


def _status(segment: str) -> int:
    digits = segment.removeprefix("fail")
    if not (digits.isdigit() and 400 <= int(digits) <= 599):
        raise ValueError(f"mock directive {segment!r}: expected fail400 .. fail599")
    return int(digits)


def _count(name: str, value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"mock directive {name}={value!r}: expected a whole number >= 0")
    return int(value)


def _milliseconds(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:  # also rejects nan
        raise ValueError(f"mock directive {name}={value!r}: expected a number >= 0")
    return number


def _apply_override(script: Script, override: object) -> Script:
    if not isinstance(override, Mapping):
        raise ValueError('"mock" must be an object like {"tokens": 5, "delay_ms": 10}')
    tokens = override.get("tokens", script.tokens)
    delay = override.get("delay_ms", script.delay_ms)
    if not (isinstance(tokens, int) and tokens >= 0):
        raise ValueError('"mock.tokens" must be a whole number >= 0')
    if not (isinstance(delay, int | float) and delay >= 0):
        raise ValueError('"mock.delay_ms" must be a number >= 0')
    return replace(script, tokens=tokens, delay_ms=float(delay))
