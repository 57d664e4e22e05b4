"""Completion tokens counted in flight, as stream deltas arrive, without re-encoding."""

from __future__ import annotations

import unicodedata

import tiktoken

from nitroproxy.core.tokens import count_text

# A tail with no safe cut grows until this size, then is cut blindly (see CompletionCounter).
_FORCED_CUT_CHARS = 16_384


def _kind(char: str) -> str:
    """'L' letter, 'N' number, 'M' mark, '?' unassigned, else 'P'.

    '?' because the regex engine may know a newer Unicode than ``unicodedata``: a character
    unassigned here may be a letter there, so it never makes a cut.
    """
    if char.isalpha():
        return "L"
    category = unicodedata.category(char)
    if category == "Cn":
        return "?"
    return category[0] if category[0] in "NM" else "P"


def _is_cut(prev: str, nxt: str) -> bool:
    """Whether the pre-tokenizers of both encodings always split between ``prev`` and
    ``nxt``, whatever surrounds them (see CompletionCounter)."""
    if nxt == " ":
        return not prev.isspace()
    prev_kind = _kind(prev)
    if prev_kind == "L":
        return nxt != "'" and _kind(nxt) not in "LM?"
    if prev_kind == "N":
        return _kind(nxt) not in "N?"
    return False


def _last_cut(text: str) -> int:
    """The largest ``i`` with ``_is_cut(text[i - 1], text[i])``, or 0."""
    end, space_cut = len(text), 0
    while (i := text.rfind(" ", 1, end)) > 0:
        if not text[i - 1].isspace():
            space_cut = i
            break
        end = i
    for i in range(len(text) - 1, space_cut, -1):
        if _is_cut(text[i - 1], text[i]):
            return i
    return space_cut


class CompletionCounter:
    """Counts the tokens of a completion while its deltas arrive.

    ``total`` equals ``count_text(enc, "".join(pieces fed))``, yet ``feed`` encodes each
    character about once. tiktoken splits text into pieces with a regex and runs BPE inside
    each piece only, so the count of a text is the sum over its pieces. At a *safe cut* ``i``
    the split of ``text`` is the split of ``text[:i]`` followed by the split of ``text[i:]``,
    whatever follows: no alternative of either encoding's regex can run from ``text[i-1]``
    into ``text[i]``, and the only context-sensitive parts (``\\s+(?!\\S)``, ``\\s++$``)
    need whitespace right before ``i``. Safe cuts are a non-space followed by U+0020; a
    letter followed by anything but a letter, a mark or ``'`` (o200k's contractions); a digit
    followed by a non-digit. So ``feed`` buffers a tail and, every ``flush_chars`` or so,
    encodes the tail up to its last safe cut and keeps the rest; ``total`` encodes the tail.

    The one inexact case: a tail with no safe cut in ``_FORCED_CUT_CHARS`` characters (a huge
    run of letters, digits, punctuation or whitespace) is cut blindly, which may miscount the
    one piece cut in two by a token or two. Natural text, code and CJK prose (whose
    punctuation cuts) never get there. Characters unknown to this Python's Unicode tables
    never make a cut, in case tiktoken's regex engine knows them as letters.
    """

    __slots__ = (
        "_base",
        "_chars",
        "_committed",
        "_enc",
        "_flush_at",
        "_pending",
        "_tail",
    )

    def __init__(self, enc: tiktoken.Encoding, *, flush_chars: int = 256) -> None:
        if flush_chars < 1:
            raise ValueError("flush_chars must be at least 1")
        self._enc = enc
        self._base = flush_chars
        self._flush_at = flush_chars
        self._committed = 0
        self._chars = 0
        self._pending: list[str] = []
        self._tail: int | None = 0  # tokens in the pending tail, None until counted

    def feed(self, text: str) -> None:
        if not text:
            return
        self._pending.append(text)
        self._chars += len(text)
        self._tail = None
        if self._chars >= self._flush_at:
            self._flush()

    @property
    def total(self) -> int:
        if self._tail is None:
            tail = "".join(self._pending)
            self._pending = [tail]
            self._tail = count_text(self._enc, tail)
        return self._committed + self._tail

    @property
    def chars(self) -> int:
        """Characters fed so far."""
        return self._chars

    def _flush(self) -> None:
        tail = "".join(self._pending)
        cut = _last_cut(tail)
        if cut == 0 and len(tail) >= _FORCED_CUT_CHARS:
            cut = max(len(tail) - self._base, len(tail) // 2)
        if cut:
            self._committed += count_text(self._enc, tail[:cut])
            tail = tail[cut:]
        self._pending = [tail] if tail else []
        # Rescanning a tail that found no cut is paid for by waiting until it doubles.
        self._flush_at = self._chars + max(self._base, len(tail))
