"""``nitroproxy users …`` and ``nitroproxy keys …``: the admin API's account actions on the
same database, as actor ``cli:<account>`` (the operating-system account running the command,
:func:`cli_actor`). A running server sees each change within a second (it polls the
accounts version).

Output is a table (or ``key: value`` lines) by default and JSON with ``--json``; exports are
always JSON. Errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from nitroproxy.cli import privacy as cli_privacy
from nitroproxy.cli import tables
from nitroproxy.cli.loading import add_config_option
from nitroproxy.cli.privacy import audit_end_user_export, cli_actor
from nitroproxy.config import Settings, StartupError
from nitroproxy.core.end_users import EndUsers
from nitroproxy.core.errors import ProxyError
from nitroproxy.reports.export import CSV_PARTS, export_csv
from nitroproxy.reports.usage import parse_time
from nitroproxy.store import end_users, keys, preferences, users
from nitroproxy.store.accounts import AccountStore
from nitroproxy.store.keys import IssuedKey, KeySpec
from nitroproxy.store.meta import installation_secret
from nitroproxy.store.pg.rights import remote_records
from nitroproxy.store.rights import erase_user, export_user

Loader = Callable[[str | None], Settings]
Action = Callable[[AccountStore, argparse.Namespace], Awaitable[Any]]
_USER_COLUMNS = ("id", "name", "email", "tier", "status", "created")
_KEY_COLUMNS = ("name", "prefix", "id", "user_id", "models", "expires_at", "revoked", "created")


# -- output -------------------------------------------------------------------------------


def _print(result: Any, args: argparse.Namespace) -> None:
    if isinstance(result, str):  # a document already rendered (CSV)
        print(result, end="")
        return
    if getattr(args, "secret_only", False):
        print(result["secret"])
        return
    documents = isinstance(result, dict) and ("format" in result or "object" in result)
    if args.json or documents:  # exports and statements are always JSON
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    elif isinstance(result, list):
        print(tables.table(result, args.columns))
    else:
        print(tables.fields(result))
    if isinstance(result, dict) and "secret" in result:
        print("the secret is shown this once: store it now", file=sys.stderr)


# -- actions ------------------------------------------------------------------------------


async def _user_create(store: AccountStore, a: argparse.Namespace) -> Any:
    user = await users.create_user(
        store, actor=cli_actor(), name=a.name, email=a.email, tier=a.tier
    )
    return user.to_json()


async def _user_list(store: AccountStore, a: argparse.Namespace) -> Any:
    found = await users.list_users(
        store, status=a.status, email=a.email, after=a.after, limit=a.limit
    )
    return [u.to_json() for u in found]


async def _user_show(store: AccountStore, a: argparse.Namespace) -> Any:
    return (await users.get_user(store, a.id)).to_json()


async def _user_update(store: AccountStore, a: argparse.Namespace) -> Any:
    changes: dict[str, Any] = {}
    for name in ("name", "email"):
        if getattr(a, f"clear_{name}"):
            changes[name] = None
        elif getattr(a, name) is not None:
            changes[name] = getattr(a, name)
    if a.tier is not None:
        changes["tier"] = a.tier
    chosen = {n: getattr(a, n) == "on" for n in ("analytics", "cache") if getattr(a, n)}
    if changes or not chosen:
        await users.update_user(store, a.id, actor=cli_actor(), **changes)
    if chosen:  # objection to analytics, opt-out of the cache
        await preferences.set_preferences(
            store, a.id, actor=cli_actor(), require_user=True, **chosen
        )
    return (await users.get_user(store, a.id)).to_json()


def _set_status(status: str) -> Action:
    async def action(store: AccountStore, a: argparse.Namespace) -> Any:
        return (await users.update_user(store, a.id, actor=cli_actor(), status=status)).to_json()

    return action


async def _user_export(store: AccountStore, a: argparse.Namespace) -> Any:
    document = await export_user(store, a.id, actor=cli_actor())
    return document if a.format == "json" else export_csv(document, a.part)


async def _user_erase(store: AccountStore, a: argparse.Namespace) -> Any:
    if not a.yes:
        raise ProxyError(f"erasing {a.id} cannot be undone; repeat with --yes to confirm")
    return (await erase_user(store, a.id, actor=cli_actor())).to_json()


def _issued(issued: IssuedKey) -> dict[str, Any]:
    return {**issued.key.to_json(), "secret": issued.secret}


async def _key_create(store: AccountStore, a: argparse.Namespace) -> Any:
    spec = KeySpec(
        name=a.name,
        user_id=a.user,
        models=tuple(a.model) if a.model else None,
        rpm=a.rpm,
        tpm=a.tpm,
        max_concurrent=a.max_concurrent,
        budget_day_usd=a.budget_day,
        budget_month_usd=a.budget_month,
        expires_at=_expiry(a.expires),
        cache=a.cache,
    )
    return _issued(await keys.create_key(store, spec, actor=cli_actor()))


async def _key_list(store: AccountStore, a: argparse.Namespace) -> Any:
    found = await keys.list_keys(
        store, user_id=a.user, include_revoked=not a.active_only, after=a.after, limit=a.limit
    )
    return [k.to_json() for k in found]


async def _key_show(store: AccountStore, a: argparse.Namespace) -> Any:
    return (await keys.get_key(store, a.id)).to_json()


async def _key_revoke(store: AccountStore, a: argparse.Namespace) -> Any:
    return (await keys.revoke_key(store, a.id, actor=cli_actor())).to_json()


async def _key_rotate(store: AccountStore, a: argparse.Namespace) -> Any:
    return _issued(await keys.rotate_key(store, a.id, actor=cli_actor()))


def _expiry(value: str | None) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    parsed = parse_time(value)
    return None if parsed is None else int(parsed)


async def _end_user_recorded(store: AccountStore, a: argparse.Namespace) -> str | None:
    secret = await installation_secret(store.conn, "end_user")
    return EndUsers(a.end_user_mode, secret).recorded(a.end_user)


async def _end_user_export(store: AccountStore, a: argparse.Namespace) -> Any:
    recorded = await _end_user_recorded(store, a)
    if recorded is None:  # privacy.end_user: off keeps none
        return {"format": end_users.EXPORT_FORMAT, "end_user": None, "usage_records": []}
    document = await end_users.export_end_user(store, recorded)
    await audit_end_user_export(store, cli_actor(), document)
    return document


async def _end_user_erase(store: AccountStore, a: argparse.Namespace) -> Any:
    if not a.yes:
        raise ValueError("erasing an end user cannot be undone; pass --yes to confirm")
    recorded = await _end_user_recorded(store, a)
    if recorded is None:
        return {"usage_records_cleared": 0, "wal_truncated": True}
    return await end_users.erase_end_user(store, recorded, actor=cli_actor())


# -- running ------------------------------------------------------------------------------


def _run(action: Action, load: Loader) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        settings = load(args.config)
        args.end_user_mode = settings.privacy.end_user
        args.settings = settings  # for actions that need more than the accounts store

        async def go() -> Any:
            store = await AccountStore.open(
                Path(settings.storage.path),
                env=os.environ,
                tiers=settings.tiers,
                models=settings.models,
            )
            store.remote_records = remote_records(settings.storage)
            try:
                return await action(store, args)
            finally:
                await store.close()

        try:
            result = asyncio.run(go())
        except (ProxyError, StartupError, ValueError) as exc:
            print(f"nitroproxy: {exc}", file=sys.stderr)
            return 2
        _print(result, args)
        return 0

    return command


def _command(
    sub: Any,
    name: str,
    help: str,
    action: Action,
    load: Loader,
    columns: Sequence[str] = (),
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=help[0].upper() + help[1:] + "."
    )
    add_config_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_run(action, load), columns=columns)
    return p


def _group(sub: Any, name: str, help: str, description: str) -> Any:
    parser = sub.add_parser(name, help=help, description=description)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def add_parsers(sub: Any, *, load: Loader) -> None:
    def command(parent: Any, name: str, help: str, action: Action, **kw: Any) -> Any:
        return _command(parent, name, help, action, load, **kw)

    user_cmds = _group(
        sub,
        "users",
        "manage users (the people keys belong to)",
        "Manage users on the configured database, as the admin API does; a running server "
        "sees each change within a second.",
    )
    p = command(user_cmds, "create", "create a user", _user_create)
    p.add_argument("--name", help="the user's name (stored encrypted)")
    p.add_argument("--email", help="the user's email (stored encrypted)")
    p.add_argument(
        "--tier", default="default", help="limits tier from the config (default: default)"
    )
    p = command(user_cmds, "list", "list users", _user_list, columns=_USER_COLUMNS)
    p.add_argument(
        "--status", choices=["active", "suspended", "erased"], help="only users in this state"
    )
    p.add_argument("--email", help="find by email")
    p.add_argument("--after", help="the last id of the previous page")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    for name, help, action in (
        ("show", "show a user", _user_show),
        (
            "suspend",
            "suspend a user: their keys stop working, data is kept",
            _set_status("suspended"),
        ),
        ("activate", "reactivate a suspended user", _set_status("active")),
    ):
        command(user_cmds, name, help, action).add_argument("id", help="the user's id")
    p = command(user_cmds, "export", "everything held about a user (JSON, or CSV)", _user_export)
    p.add_argument("id", help="the user's id")
    p.add_argument("--format", default="json", choices=["json", "csv"], help="default json")
    p.add_argument("--part", default="usage_records", choices=list(CSV_PARTS), help="for CSV")
    p = command(user_cmds, "update", "rectify name or email, or change tier", _user_update)
    p.add_argument("id", help="the user's id")
    p.add_argument("--name", help="the corrected name")
    p.add_argument("--email", help="the corrected email")
    p.add_argument("--clear-name", action="store_true", help="remove the name")
    p.add_argument("--clear-email", action="store_true", help="remove the email")
    p.add_argument("--tier", help="move the user to this tier")
    p.add_argument("--analytics", choices=["on", "off"], help="off: the user objects")
    p.add_argument("--cache", choices=["on", "off"], help="off: never use the response cache")
    p = command(user_cmds, "erase", "erase a user (irreversible)", _user_erase)
    p.add_argument("id", help="the user's id")
    p.add_argument("--yes", action="store_true", help="confirm the erase")

    key_cmds = _group(
        sub,
        "keys",
        "manage client API keys",
        "Manage client keys on the configured database, as the admin API does; a running "
        "server sees each change within a second. Needs no provider API key.",
    )
    p = command(key_cmds, "create", "create a key; prints its secret once", _key_create)
    p.add_argument("--name", required=True, help="a label for the key, shown in tables")
    p.add_argument("--user", help="owner user id")
    p.add_argument("--model", action="append", help="allowed model (repeat); default all")
    p.add_argument("--rpm", type=int, help="requests per minute; default: the tier's")
    p.add_argument("--tpm", type=int, help="tokens per minute; default: the tier's")
    p.add_argument("--max-concurrent", type=int, help="streams at once; default: the tier's")
    p.add_argument("--budget-day", type=float, help="USD per UTC day")
    p.add_argument("--budget-month", type=float, help="USD per UTC month")
    p.add_argument("--expires", help="ISO date/datetime (UTC) or Unix seconds")
    p.add_argument("--cache", action="store_true", help="opt in to the response cache")
    p.add_argument(
        "--secret-only", action="store_true", help="print only the secret, for KEY=$(...)"
    )
    p = command(key_cmds, "list", "list keys", _key_list, columns=_KEY_COLUMNS)
    p.add_argument("--user", help="only this user's keys")
    p.add_argument("--active-only", action="store_true", help="hide revoked keys")
    p.add_argument("--after", help="the last id of the previous page")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    for name, help, action in (
        ("show", "show a key's metadata", _key_show),
        ("revoke", "revoke a key", _key_revoke),
        ("rotate", "new secret for the key; prints it once", _key_rotate),
    ):
        p = command(key_cmds, name, help, action)
        p.add_argument("id", help="the key's id (see keys list)")
        if name == "rotate":
            p.add_argument("--secret-only", action="store_true", help="print only the new secret")

    eu_cmds = _group(
        sub,
        "end-users",
        "data rights of your clients' end users (OpenAI user, Anthropic metadata.user_id)",
        "Export or erase what the records keep of one end user your clients name; the "
        "records themselves stay, so billing totals do not change.",
    )
    p = command(eu_cmds, "export", "an end user's usage records, as JSON", _end_user_export)
    p.add_argument("end_user", help="the end user as your client sends it")
    p = command(
        eu_cmds, "erase", "remove an end user from every record (totals stay)", _end_user_erase
    )
    p.add_argument("end_user", help="the end user as your client sends it")
    p.add_argument("--yes", action="store_true", help="confirm the erase")

    cli_privacy.add_parsers(sub, user_cmds, command)
