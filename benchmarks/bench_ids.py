"""Cost of one request id: ``python -m benchmarks.bench_ids [-n N]``.

Compares ``security.ids.IdSource`` (``os.urandom`` in 4 KiB reads, a buffer per thread) with
one ``secrets.token_hex(16)`` per id, ``uuid.uuid4().hex`` and the Mersenne Twister the
project used before. Prints the best of 5 runs, in microseconds per id.
"""

from __future__ import annotations

import argparse
import random
import secrets
import timeit
import uuid
from collections.abc import Callable

from nitroproxy.security.ids import IdSource


def _twister() -> Callable[[], str]:
    bits = random.Random().getrandbits
    return lambda: f"{bits(128):032x}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500_000)
    args = parser.parse_args()
    candidates: dict[str, Callable[[], str]] = {
        "IdSource (os.urandom, 4 KiB per thread)": IdSource(),
        "secrets.token_hex(16)": lambda: secrets.token_hex(16),
        "uuid.uuid4().hex": lambda: uuid.uuid4().hex,
        "random.getrandbits(128) (not a CSPRNG)": _twister(),
    }
    for name, fn in candidates.items():
        best = min(timeit.repeat(fn, number=args.n, repeat=5)) / args.n
        print(f"{name:42s} {best * 1e6:6.3f} us/id")


if __name__ == "__main__":
    main()
