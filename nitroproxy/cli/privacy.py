"""``nitroproxy users statements|close``, ``nitroproxy admins …``, ``nitroproxy
rotate-data-key`` and ``nitroproxy export-schema``: billing, closure, named admin keys and
rotation from the command line, on the server's database, as actor ``cli:<account>``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

import orjson

from nitroproxy.cache.rotation import rotate_cache
from nitroproxy.cache.store import default_path
from nitroproxy.core.errors import InvalidRequest
from nitroproxy.core.statements import parse_period
from nitroproxy.reports import export as export_report
from nitroproxy.reports.statements import statements_csv, statements_json
from nitroproxy.store import admins, billing, users
from nitroproxy.store.accounts import AccountStore

__all__ = ["ROTATED_COLUMNS", "add_parsers", "audit_end_user_export", "cli_actor"]

# Every sealed column (declared BLOB) of both files, and what re-encrypts it on rotation;
# tests/cli/test_privacy.py fails when a migration adds one that is not listed here.
ROTATED_COLUMNS = {
    "users.name": "AccountStore.rotate_data_key",
    "users.email": "AccountStore.rotate_data_key",
    "cache_entries.blob": "cache.rotation.rotate_cache",
    "cache_meta.value": "cache.rotation.rotate_cache",
}


def cli_actor() -> str:
    """``cli:<account>``: who ran the command, as the audit log records it."""
    try:
        account = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        account = f"uid{os.getuid()}"
    return f"cli:{account}"


async def audit_end_user_export(store: AccountStore, actor: str, document: Any) -> None:
    """Exports are audited; an end user's names no one (the value may be personal)."""
    await store.note(
        actor=actor,
        action="end_user.export",
        target=None,
        detail={"usage_records": len(document["usage_records"])},
    )


async def _statements(store: AccountStore, a: argparse.Namespace) -> Any:
    period = None
    if a.period is not None:
        try:
            period = parse_period(a.period)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="period") from None
    found = await billing.user_statements(store, a.id, actor=cli_actor(), period=period)
    if a.format == "csv":
        return statements_csv(found)
    return statements_json(a.id, found)


async def _close(store: AccountStore, a: argparse.Namespace) -> Any:
    return (await users.close_user(store, a.id, actor=cli_actor())).to_json()


async def _admin_create(store: AccountStore, a: argparse.Namespace) -> Any:
    if a.name in a.settings.auth.admin_keys:
        raise InvalidRequest(f"the configuration already names an admin {a.name!r}", param="name")
    issued = await admins.create_admin(store, a.name, actor=cli_actor())
    return {**issued.key.to_json(), "secret": issued.secret}


async def _admin_list(store: AccountStore, a: argparse.Namespace) -> Any:
    configured = [
        {"name": n, "prefix": "-", "revoked": False, "created": None, "updated": None}
        for n in sorted(a.settings.auth.admin_keys)
    ]
    if a.settings.auth.admin_key:
        configured.insert(0, {"name": "admin", "prefix": "-", "revoked": False})
    stored = [k.to_json() for k in await admins.list_admins(store)]
    return [{**c, "source": "config"} for c in configured] + [
        {**k, "source": "database"} for k in stored
    ]


async def _admin_revoke(store: AccountStore, a: argparse.Namespace) -> Any:
    return (await admins.revoke_admin(store, a.name, actor=cli_actor())).to_json()


async def _rotate(store: AccountStore, a: argparse.Namespace) -> Any:
    """Users first (refused without a data key), then the response cache file if there is
    one (whether or not the config turns the cache on: its data is encrypted either way)."""

    def users_progress(done: int) -> None:
        print(f"re-encrypted {done} users…", file=sys.stderr)

    def cache_progress(done: int, purged: int) -> None:
        print(f"cache: re-encrypted {done} entries, purged {purged}…", file=sys.stderr)

    rows = await store.rotate_data_key(
        actor=cli_actor(), batch_size=a.batch_size, on_batch=users_progress
    )
    assert store.keyring is not None  # rotate_data_key refuses without one
    cache = await rotate_cache(
        default_path(a.settings.storage.path),
        store.keyring,
        batch_size=a.batch_size,
        on_batch=cache_progress,
    )
    result: dict[str, Any] = {"reencrypted_users": rows, "key_id": store.keyring.primary_id}
    if cache is None:
        result["cache"] = "no cache file"
    else:
        result["reencrypted_cache_entries"] = cache.reencrypted
        result["purged_cache_entries"] = cache.purged
        if cache.purged:
            print(
                f"cache: {cache.purged} entries could not be re-encrypted (an old format or "
                "a key not held) and were deleted; the cache refills on use",
                file=sys.stderr,
            )
        await store.note(
            actor=cli_actor(),
            action="cache.rotate",
            target=None,
            detail={
                "key_id": store.keyring.primary_id,
                "reencrypted": cache.reencrypted,
                "purged": cache.purged,
            },
        )
    return result


def _print_schema(_args: argparse.Namespace) -> int:
    print(orjson.dumps(export_report.schema(), option=orjson.OPT_INDENT_2).decode())
    return 0


Command = Callable[..., argparse.ArgumentParser]


def add_parsers(sub: Any, user_cmds: Any, command: Command) -> None:
    """Add these commands; ``command(parent, name, help, action, columns=...)`` builds one
    that opens the accounts store (``cli.accounts``)."""
    p = command(user_cmds, "statements", "a user's monthly statements", _statements)
    p.add_argument("id", help="a user id, an erased user's id or a billing pseudonym")
    p.add_argument("--period", help="one month, YYYY-MM")
    p.add_argument("--format", default="json", choices=["json", "csv"], help="default json")
    p = command(user_cmds, "close", "close an account: erased after the grace", _close)
    p.add_argument("id", help="the user's id")

    admin_cmds = sub.add_parser(
        "admins",
        help="named admin keys",
        description="Named admin keys kept in the database (the config may name more); each "
        "admin's name is the actor of the audit entries they cause.",
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    p = command(admin_cmds, "create", "a new admin key; prints its secret once", _admin_create)
    p.add_argument("name", help="the admin's name: the actor of their audit entries")
    command(
        admin_cmds,
        "list",
        "admin keys (config and database)",
        _admin_list,
        columns=("name", "prefix", "source", "revoked", "created"),
    )
    p = command(admin_cmds, "revoke", "revoke a database admin key", _admin_revoke)
    p.add_argument("name", help="the admin's name (see admins list)")

    p = command(
        sub,
        "rotate-data-key",
        "re-encrypt user data and the response cache under the first NITROPROXY_DATA_KEY key",
        _rotate,
    )
    p.add_argument(
        "--batch-size", type=int, default=100, help="users per transaction (default 100)"
    )

    p = sub.add_parser(
        "export-schema",
        help="the JSON Schema of export documents",
        description="Print the JSON Schema that every user export document follows.",
    )
    p.set_defaults(func=_print_schema)
