"""Opening a database that this process already has open must keep that connection's locks.

Closing any descriptor of a file drops every POSIX lock the process holds on it. When
``open_db`` opened and closed the file to set its mode, a running server lost its locks each
time a component opened the database again, and a ``keys create`` beside it ended in
"wrong # of entries in index" once the server stopped. The probe asks another process for
the write lock on SQLite's SHARED range: granted means this process had lost its lock."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nitroproxy.store.db import create_private_file, open_db

PROBE = """
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0x40000002, 510, 0))
    print("free")
except OSError:
    print("held")
"""

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="struct flock layout of Linux")


def lock_state(path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


async def test_opening_the_database_again_keeps_the_locks_of_open_connections(
    tmp_path: Path,
) -> None:
    path = tmp_path / "np.db"
    first = await open_db(path)
    try:
        assert lock_state(path) == "held"
        second = await open_db(path)
        await second.close()
        create_private_file(path)
        assert lock_state(path) == "held"
    finally:
        await first.close()
    assert lock_state(path) == "free"


def test_a_new_database_file_is_private_from_its_first_byte(tmp_path: Path) -> None:
    path = tmp_path / "new" / "np.db"
    create_private_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.write_bytes(b"kept")
    create_private_file(path)  # an existing file is left as it is
    assert path.read_bytes() == b"kept"
    assert os.access(path, os.R_OK)
