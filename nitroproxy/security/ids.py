"""Record and request ids: 128 random bits as 32 hex characters, without a system call.

``uuid.uuid4`` reads ``os.urandom`` for every id, which showed up at ~5% of a request's CPU.
These ids name rows and requests; they are not secrets (keys use ``secrets``), so a
Mersenne Twister seeded from the OS is enough, and unlike a counter it reveals nothing about
how many requests other clients make.
"""

from __future__ import annotations

import random


class IdSource:
    __slots__ = ("_bits",)

    def __init__(self) -> None:
        self._bits = random.Random().getrandbits  # seeded from os.urandom

    def __call__(self) -> str:
        return f"{self._bits(128):032x}"
