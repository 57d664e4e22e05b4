import os
import re
import threading
import warnings

import pytest

from nitroproxy.security.ids import IdSource


def test_ids_are_32_hex_characters_and_do_not_repeat() -> None:
    new_id = IdSource()
    ids = [new_id() for _ in range(10_000)]  # many refills of the 4 KiB buffer
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_two_sources_and_two_threads_never_share_bytes() -> None:
    a, b = IdSource(), IdSource()
    seen: list[str] = []
    lock = threading.Lock()

    def take() -> None:
        got = [a() for _ in range(2000)] + [b() for _ in range(2000)]
        with lock:
            seen.extend(got)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 16_000
    assert len(set(seen)) == len(seen)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_repeat_its_parent_s_ids() -> None:
    new_id = IdSource()
    new_id()  # the buffer is filled now, and the child would inherit it
    read, write = os.pipe()
    with warnings.catch_warnings():
        # 3.12+ warns about fork in a process with threads; the child only writes and exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, "".join(new_id() for _ in range(4)).encode())
        os._exit(0)
    os.close(write)
    parent = "".join(new_id() for _ in range(4))
    child = os.read(read, 1024).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 128
    assert {child[i : i + 32] for i in range(0, 128, 32)}.isdisjoint(
        {parent[i : i + 32] for i in range(0, 128, 32)}
    )
