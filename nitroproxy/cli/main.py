"""The ``nitroproxy`` command: parse arguments, call one function, print. No logic here."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from nitroproxy import __version__, config
from nitroproxy.cli import accounts as cli_accounts
from nitroproxy.cli import init as cli_init
from nitroproxy.cli.loading import add_config_option, load_settings, resolve_or_exit

DESCRIPTION = (
    "NitroProxy: one self-hosted endpoint for the OpenAI and Anthropic APIs that routes "
    "each request across your providers and counts every token, without storing prompts."
)
EPILOG = """\
first steps:
  nitroproxy init                        write a starter configuration and fresh keys
  nitroproxy serve                       run the proxy (http://127.0.0.1:8080)
  nitroproxy keys create --name NAME     make a client key; it is printed once

Every command reads the configuration named by --config, else $NITROPROXY_CONFIG,
./nitroproxy.yaml, config/demo.yaml in a checkout, then
$XDG_CONFIG_HOME/nitroproxy/config.yaml, and the nitroproxy.env file beside it.
`nitroproxy COMMAND --help` describes each command."""


def _fail(exc: Exception) -> int:
    print(f"nitroproxy: {exc}", file=sys.stderr)
    return 2


def cmd_serve(args: argparse.Namespace) -> int:
    from nitroproxy.web.server import serve

    resolved = resolve_or_exit(args.config, providers=True, require_models=True)
    try:
        if args.workers != 1:
            from nitroproxy.web.workers import run_workers

            path = resolved.found.path
            return run_workers(resolved.settings, args.workers, config_path=str(path))
        serve(resolved.settings, config_path=resolved.found.path)
    except config.StartupError as exc:
        # Raised while the app starts (a wrong data key, an unreadable certificate, a
        # database from a newer NitroProxy): one line, no traceback.
        return _fail(exc)
    except OSError as exc:  # the port is taken, the address does not exist
        print(f"nitroproxy: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    resolved = resolve_or_exit(args.file or args.config, require_models=True)
    settings = resolved.settings
    deployments = sum(len(m.deployments) for m in settings.models.values())
    print(
        f"{resolved.found.path}: ok ({len(settings.providers)} providers, "
        f"{len(settings.models)} models, {deployments} deployments; "
        f"data in {settings.storage.path})"
    )
    if resolved.unset_secrets:
        names = ", ".join(f"${n}" for n in resolved.unset_secrets)
        print(f"nitroproxy: note: {names} not set; `serve` needs it", file=sys.stderr)
    return 0


def cmd_privacy_report(args: argparse.Namespace) -> int:
    from nitroproxy.web.routes.privacy import privacy_report_json, privacy_report_text

    settings = load_settings(args.config)
    print(privacy_report_json(settings) if args.json else privacy_report_text(settings))
    return 0


def cmd_mock_provider(args: argparse.Namespace) -> int:
    from nitroproxy.mock import MockSettings, run_mock

    run_mock(args.host, args.port, MockSettings(tokens=args.tokens, delay_ms=args.delay_ms))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from nitroproxy.store.sweeper import RetentionSweeper, SweepResult, retention_policy

    settings = load_settings(args.config)
    r = settings.retention
    policy = retention_policy(r)

    async def sweep() -> SweepResult:
        sweeper = RetentionSweeper(settings.storage.path, policy, batch_size=r.batch_size)
        try:
            return await sweeper.run_once()
        finally:
            await sweeper.close()

    try:
        result = asyncio.run(sweep())
    except config.StartupError as exc:
        return _fail(exc)
    print(
        f"rolled up {result.deleted_raw} records into {result.rolled_up} daily aggregates; "
        f"deleted {result.deleted_aggregates} expired aggregates, {result.deleted_billing} "
        f"expired billing lines, {result.deleted_audit} expired audit entries; erased "
        f"{result.erased_accounts} closed accounts; deleted {result.deleted_keys} dead keys"
    )
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    from nitroproxy.reports.usage import usage_report

    settings = load_settings(args.config)
    try:
        report = asyncio.run(
            usage_report(settings, args.start, args.end, args.group_by, args.format)
        )
    except (ValueError, config.StartupError) as exc:
        return _fail(exc)
    print(report)
    return 0


def _add(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=help[0].upper() + help[1:] + "."
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nitroproxy",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"nitroproxy {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cli_init.add_parser(sub)

    p = _add(sub, "serve", "run the proxy until SIGTERM or Ctrl-C")
    add_config_option(p)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes on one port (needs state.backend: redis)",
    )
    p.set_defaults(func=cmd_serve)

    p = _add(sub, "check-config", "validate a configuration file and exit (2 on an error)")
    p.add_argument("file", nargs="?", metavar="FILE", help="the file; default: as --config")
    add_config_option(p)
    p.set_defaults(func=cmd_check_config)

    p = _add(sub, "privacy-report", "what is stored, where, for how long, and who reads it")
    add_config_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_privacy_report)

    p = _add(sub, "mock-provider", "run the bundled mock LLM provider (OpenAI and Anthropic)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8081, help="port to listen on (default 8081)")
    p.add_argument("--tokens", type=int, default=12, help="tokens per answer (default 12)")
    p.add_argument(
        "--delay-ms", type=float, default=0.0, help="pause before each token (default 0)"
    )
    p.set_defaults(func=cmd_mock_provider)

    p = _add(sub, "sweep", "run the retention sweeper once")
    add_config_option(p)
    p.set_defaults(func=cmd_sweep)

    p = _add(sub, "usage", "usage totals from the usage records")
    add_config_option(p)
    p.add_argument("--from", dest="start", help="ISO date or datetime (UTC), inclusive")
    p.add_argument("--to", dest="end", help="ISO date or datetime (UTC), exclusive")
    p.add_argument(
        "--group-by",
        default="day",
        choices=["day", "model", "provider", "key", "user"],
        help="one row per day (default), model, provider, key or user",
    )
    p.add_argument(
        "--format",
        default="table",
        choices=["table", "json", "csv"],
        help="table (default), json or csv",
    )
    p.set_defaults(func=cmd_usage)

    cli_accounts.add_parsers(sub, load=load_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
