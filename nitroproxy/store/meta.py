"""Small named values in the ``meta`` table that belong to the installation."""

from __future__ import annotations

import os

import aiosqlite


async def installation_secret(conn: aiosqlite.Connection, name: str) -> bytes:
    """A random 32-byte secret created on first use and the same ever after (for keyed
    pseudonyms: the same end user gets the same pseudonym across restarts). It lives in the
    0600 database file, beside the data it pseudonymises; erasing the file forgets it."""
    await conn.execute(
        "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        (name, os.urandom(32).hex()),
    )
    rows = list(await conn.execute_fetchall("SELECT value FROM meta WHERE name = ?", (name,)))
    return bytes.fromhex(str(rows[0][0]))
