"""Record and request ids: 128 bits from the operating system's CSPRNG, as 32 hex characters.

Request ids are sent to clients (``x-request-id``) and record ids are the primary key that
makes a journal replay idempotent, so they must be unpredictable and must never repeat. A
Mersenne Twister fails the first: about 156 observed 128-bit outputs recover its state, and
with it every other client's ids. ``os.urandom`` is the kernel's CSPRNG (``getrandom``), and
the ``secrets`` module is a thin layer over it.

One system call per id (``secrets.token_hex(16)``) costs about twice as much as one
``os.urandom(4096)`` shared by 128 ids, which is on a par with the Twister (figures in
``benchmarks/RESULTS.md``). The buffer is per thread: no lock, and no two threads are ever
handed the same bytes. A child made by ``fork`` starts with
an empty buffer, so parent and child never hand out the same ids. (``python -m
benchmarks.bench_ids`` measures all three.)
"""

from __future__ import annotations

import os
import threading
import weakref

_BUFFER_BYTES = 4096
_ID_HEX = 32


class IdSource(threading.local):
    """``IdSource()()`` is a new id. Safe to call from any thread; cheap on the hot path."""

    def __init__(self) -> None:
        self._buf = ""
        self._pos = 0
        _sources.add(self)

    def __call__(self) -> str:
        pos = self._pos
        buf = self._buf
        if pos >= len(buf):
            buf = self._buf = os.urandom(_BUFFER_BYTES).hex()
            pos = 0
        self._pos = pos + _ID_HEX
        return buf[pos : pos + _ID_HEX]

    def _forget(self) -> None:
        self._buf = ""
        self._pos = 0


_sources: weakref.WeakSet[IdSource] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Only the forking thread survives in the child; its buffers were copied from the
    # parent, which will hand out the same bytes. Drop them.
    for source in list(_sources):
        source._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
