"""The one way a command gets its configuration, and the ``--config`` option that names it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nitroproxy.config import ConfigError, Settings
from nitroproxy.config.resolved import Resolved, resolve

CONFIG_HELP = (
    "configuration file; default: $NITROPROXY_CONFIG, ./nitroproxy.yaml, config/demo.yaml in "
    "a checkout, then ~/.config/nitroproxy/config.yaml"
)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", help=CONFIG_HELP)


def resolve_or_exit(
    config: str | None, *, providers: bool = False, require_models: bool = False
) -> Resolved:
    """Load the configuration or print one line and exit 2. The env file's variables are
    exported, so the data key reaches every component the way it reached the loader."""
    try:
        resolved = resolve(
            config,
            env=os.environ,
            cwd=Path.cwd(),
            providers=providers,
            require_models=require_models,
        )
    except ConfigError as exc:
        print(f"nitroproxy: config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    os.environ.update(resolved.env_added)
    return resolved


def load_settings(config: str | None) -> Settings:
    """For the commands that only read the database: provider secrets are not needed."""
    return resolve_or_exit(config).settings
