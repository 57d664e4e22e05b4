"""Server-sent events, sans I/O: bytes in, events out; and the one encoder.

The decoder keeps each event's raw bytes so a pass-through relay can forward exactly what
the upstream sent, while the accounting code reads the parsed ``data``.
"""

from __future__ import annotations

from dataclasses import dataclass

_LF2 = b"\n\n"


@dataclass(slots=True)
class Event:
    raw: bytes
    """The event block as received, normalized to LF line ends, ending in a blank line."""
    event: str | None
    data: bytes | None
    """The data lines joined by LF; None for a block with no data (a comment, a keep-alive).

    Not frozen: one is made per event, and a frozen dataclass pays a ``__setattr__`` per
    field; treat it as immutable."""


class SSEDecoder:
    """Incremental decoder for ``text/event-stream`` (WHATWG rules: LF, CRLF or CR line ends,
    ``:`` comments, one optional space after the colon, multi-line data joined by LF)."""

    __slots__ = ("_buf", "_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._cr = False

    def feed(self, chunk: bytes) -> list[Event]:
        if self._cr or b"\r" in chunk:
            chunk = self._normalize(chunk)
        buf = self._buf + chunk if self._buf else chunk
        end = buf.rfind(_LF2)
        if end < 0:
            self._buf = buf
            return []
        self._buf = buf[end + 2 :]
        complete = buf[: end + 2]
        if complete.count(_LF2) == 1 and not complete.startswith(b"\n"):
            return [_parse(complete)]
        return [_parse(block + _LF2) for block in complete.split(_LF2) if block.strip(b"\n")]

    def flush(self) -> list[Event]:
        """End of stream: a final block without its blank line is still dispatched, as
        browsers do not but every upstream we know means it (and the tail is otherwise lost)."""
        tail, self._buf = self._buf, b""
        self._cr = False
        if tail.strip(b"\n"):
            return [_parse(tail.rstrip(b"\n") + _LF2)]
        return []

    @property
    def pending(self) -> int:
        return len(self._buf)

    def _normalize(self, chunk: bytes) -> bytes:
        # A CR at the end of one chunk may be the first half of a CRLF split across reads.
        if self._cr:
            self._cr = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        trailing_cr = chunk.endswith(b"\r")
        if trailing_cr:
            self._cr = True
            chunk = chunk[:-1]
        chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return chunk + b"\n" if trailing_cr else chunk


def _parse(block: bytes) -> Event:
    # Fast path: the shape nearly every LLM upstream sends, ``data: {...}\n\n``.
    if block.startswith(b"data: ") and block.count(b"\n") == 2:
        return Event(block, None, block[6:-2])
    event: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    return Event(block, event, b"\n".join(data) if data else None)


def encode(data: bytes, event: str | None = None) -> bytes:
    """One event. ``data`` must not contain CR or LF (compact JSON never does)."""
    if event is None:
        return b"data: " + data + _LF2
    return b"event: " + event.encode() + b"\ndata: " + data + _LF2


def comment(text: str = "keep-alive") -> bytes:
    return b": " + text.encode() + _LF2


DONE = b"data: [DONE]\n\n"

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    # nginx and friends buffer proxied responses unless told not to.
    "X-Accel-Buffering": "no",
}
