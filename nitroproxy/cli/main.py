"""The ``nitroproxy`` command: parse arguments, call one function, print. No logic here."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from nitroproxy import config
from nitroproxy.cli import accounts as cli_accounts

DEFAULT_CONFIG = "config/nitroproxy.yaml"


def _load(path: str) -> config.Settings:
    try:
        return config.load(path)
    except config.ConfigError as exc:
        print(f"nitroproxy: config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _fail(exc: Exception) -> int:
    print(f"nitroproxy: {exc}", file=sys.stderr)
    return 2


def cmd_serve(args: argparse.Namespace) -> int:
    from nitroproxy.web.server import serve

    settings = _load(args.config)
    try:
        serve(settings)
    except config.StartupError as exc:
        # Raised while the app starts (a wrong data key, an unreadable certificate, a
        # database from a newer NitroProxy): one line, no traceback.
        return _fail(exc)
    except OSError as exc:  # the port is taken, the address does not exist
        print(f"nitroproxy: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load(args.file)
    deployments = sum(len(m.deployments) for m in settings.models.values())
    print(
        f"{args.file}: ok ({len(settings.providers)} providers, {len(settings.models)} models, "
        f"{deployments} deployments)"
    )
    return 0


def cmd_privacy_report(args: argparse.Namespace) -> int:
    from nitroproxy.web.routes.privacy import privacy_report_json, privacy_report_text

    settings = _load(args.config)
    print(privacy_report_json(settings) if args.json else privacy_report_text(settings))
    return 0


def cmd_mock_provider(args: argparse.Namespace) -> int:
    from nitroproxy.mock import MockSettings, run_mock

    run_mock(args.host, args.port, MockSettings(tokens=args.tokens, delay_ms=args.delay_ms))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from nitroproxy.store.sweeper import RetentionSweeper, SweepResult, retention_policy

    settings = _load(args.config)
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

    settings = _load(args.config)
    try:
        report = asyncio.run(
            usage_report(settings, args.start, args.end, args.group_by, args.format)
        )
    except (ValueError, config.StartupError) as exc:
        return _fail(exc)
    print(report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nitroproxy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the proxy")
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate a config file and exit")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("privacy-report", help="what is stored, where, how long, who reads it")
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_privacy_report)

    p = sub.add_parser("mock-provider", help="run the bundled mock LLM provider")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--tokens", type=int, default=12)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.set_defaults(func=cmd_mock_provider)

    p = sub.add_parser("sweep", help="run the retention sweeper once")
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("usage", help="usage totals from the usage records")
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG)
    p.add_argument("--from", dest="start", help="ISO date or datetime (UTC), inclusive")
    p.add_argument("--to", dest="end", help="ISO date or datetime (UTC), exclusive")
    p.add_argument("--group-by", default="day", choices=["day", "model", "provider", "key", "user"])
    p.add_argument("--format", default="table", choices=["table", "json", "csv"])
    p.set_defaults(func=cmd_usage)

    cli_accounts.add_parsers(sub, load=_load, default_config=DEFAULT_CONFIG)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
