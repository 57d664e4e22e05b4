"""The data key of a database: verify it at start-up, and rotate sealed columns to a new one.

Sealed columns are ``users.name`` and ``users.email`` (plus the ``email_index`` blind index
that goes with an email). ``meta.data_key_check`` is a sealed constant written with the first
sealed value: a wrong key fails on it at once with a clear message, even if every user row
has since been erased.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiosqlite

from nitroproxy.config.errors import StartupError
from nitroproxy.security.crypto import ENV_VAR, CryptoError, Keyring
from nitroproxy.store.db import transaction

__all__ = [
    "DataKeyError",
    "ensure_check_value",
    "load_keyring",
    "normalize_email",
    "open_sealed",
    "rotate_batch",
    "sealed_key_ids",
]

EMAIL_PURPOSE = "users.email"
CHECK_CONTEXT = b"meta.data_key_check"
_CHECK_PLAINTEXT = b"nitroproxy data key check"
_SEALED_COLUMNS = ("name", "email")


def normalize_email(email: str) -> str:
    return email.strip().casefold()


class DataKeyError(StartupError):
    """The data key is missing, malformed or wrong for this database. The message is one line
    meant for the operator."""


def open_sealed(keyring: Keyring | None, blob: bytes | None, *, context: str) -> str | None:
    if blob is None:
        return None
    if keyring is None:
        raise DataKeyError(f"this database holds encrypted user data; set {ENV_VAR}")
    try:
        return keyring.open_text(blob, context=context)
    except CryptoError as exc:
        raise DataKeyError(f"cannot decrypt user data: {exc}") from None


async def sealed_key_ids(conn: aiosqlite.Connection) -> set[str]:
    """The key ids named by sealed values (one scan of ``users``)."""
    parts = " UNION ".join(
        f"SELECT DISTINCT substr({c}, 3, 8) FROM users WHERE {c} IS NOT NULL"
        for c in _SEALED_COLUMNS
    )
    rows = await conn.execute_fetchall(parts)
    return {bytes(r[0]).decode("ascii", "replace") for r in rows}


async def _check_value(conn: aiosqlite.Connection) -> bytes | None:
    rows = list(await conn.execute_fetchall("SELECT value FROM meta WHERE name = 'data_key_check'"))
    return bytes(rows[0][0]) if rows else None


async def load_keyring(conn: aiosqlite.Connection, env: Mapping[str, str]) -> Keyring | None:
    """The keyring from ``env`` if it opens this database's sealed data; None when no key is
    set and nothing is sealed. Anything else raises :class:`DataKeyError`."""
    keyring: Keyring | None = None
    if env.get(ENV_VAR, "").strip():
        try:
            keyring = Keyring.from_env(env)
        except CryptoError as exc:
            raise DataKeyError(str(exc)) from None
    check = await _check_value(conn)
    used = await sealed_key_ids(conn)
    if keyring is None:
        if check is not None or used:
            raise DataKeyError(
                f"this database holds encrypted user data but {ENV_VAR} is not set; "
                "set it to the data key the data was written with"
            )
        return None
    if check is not None:
        used.add(Keyring.sealed_key_id(check))
    missing = sorted(used - set(keyring.key_ids))
    if missing:
        raise DataKeyError(
            f"{ENV_VAR} lacks the key this database's user data is encrypted with "
            f"(key id {', '.join(missing)}); set the right data key"
        )
    if check is not None:
        try:
            keyring.open(check, context=CHECK_CONTEXT)
        except CryptoError:
            raise DataKeyError(
                f"{ENV_VAR} does not decrypt this database's user data "
                f"(key id {Keyring.sealed_key_id(check)}); set the right data key"
            ) from None
    return keyring


async def ensure_check_value(conn: aiosqlite.Connection, keyring: Keyring) -> None:
    """Write the check value if there is none; call inside the transaction that seals."""
    await conn.execute(
        "INSERT INTO meta (name, value) VALUES ('data_key_check', ?) ON CONFLICT DO NOTHING",
        (keyring.seal(_CHECK_PLAINTEXT, context=CHECK_CONTEXT),),
    )


async def rotate_batch(conn: aiosqlite.Connection, keyring: Keyring, *, limit: int) -> int:
    """Re-seal up to ``limit`` rows not under the primary key, with their blind index, in one
    short transaction; with the last batch, re-seal the check value too. Returns the rows
    re-sealed: repeat until it is below ``limit``. Lookups try every key's index, so a live
    server finds rows on either side of a rotation in progress."""
    primary = keyring.primary_id.encode()
    stale = " OR ".join(f"({c} IS NOT NULL AND substr({c}, 3, 8) != ?)" for c in _SEALED_COLUMNS)
    async with transaction(conn):
        rows = list(
            await conn.execute_fetchall(
                f"SELECT id, name, email FROM users WHERE {stale} LIMIT ?",
                [primary] * len(_SEALED_COLUMNS) + [limit],
            )
        )
        for user_id, name, email in rows:
            await _reseal_row(conn, keyring, str(user_id), name, email)
        check = await _check_value(conn)
        last = len(rows) < limit  # nothing stale is left after this batch
        if last and check is not None and Keyring.sealed_key_id(check) != keyring.primary_id:
            await conn.execute("DELETE FROM meta WHERE name = 'data_key_check'")
            await ensure_check_value(conn, keyring)
    return len(rows)


async def _reseal_row(
    conn: aiosqlite.Connection,
    keyring: Keyring,
    user_id: str,
    name: bytes | None,
    email: bytes | None,
) -> None:
    values: dict[str, bytes | None] = {}
    index: str | None = None
    for column, blob in (("name", name), ("email", email)):
        plain = open_sealed(keyring, blob, context=f"users.{column}:{user_id}")
        if plain is None:
            values[column] = None
            continue
        values[column] = keyring.seal_text(plain, context=f"users.{column}:{user_id}")
        if column == "email":
            index = keyring.blind_index(normalize_email(plain), purpose=EMAIL_PURPOSE)
    await conn.execute(
        "UPDATE users SET name = ?, email = ?, email_index = ? WHERE id = ?",
        (values["name"], values["email"], index, user_id),
    )
