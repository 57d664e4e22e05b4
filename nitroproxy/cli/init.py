"""``nitroproxy init [DIR]``: a starter configuration, fresh keys, and what to type next.

Without DIR it writes ``$XDG_CONFIG_HOME/nitroproxy/config.yaml``, which every command finds
from any directory; with DIR, ``DIR/nitroproxy.yaml``, found when run from DIR (or named with
``--config``). Either way the keys go to ``nitroproxy.env`` beside it, mode 0600, and nothing
that exists is overwritten: a second ``init`` must not replace a live data key.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import shutil
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

from nitroproxy.cli.starter import PROVIDERS, Starter, config_text, env_comment
from nitroproxy.config import discovery
from nitroproxy.config.envfile import ENV_FILE_NAME, format_env, write_private
from nitroproxy.config.errors import ConfigError
from nitroproxy.security.crypto import ENV_VAR as DATA_KEY_VAR
from nitroproxy.security.crypto import generate_key

ADMIN_KEY_VAR = "NITROPROXY_ADMIN_KEY"


def program() -> str:
    """How the user ran us, for commands they can paste: ``nitroproxy`` when that is on
    PATH, else the path they typed (``./nitroproxy``, ``.venv/bin/nitroproxy``)."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "nitroproxy"
    if argv0.endswith("__main__.py"):
        return f"{shlex.quote(sys.executable)} -m nitroproxy"
    on_path = shutil.which(Path(argv0).name)
    if on_path and Path(on_path).resolve() == Path(argv0).resolve():
        return Path(argv0).name
    return shlex.quote(argv0)


def _target(directory: str | None, cwd: Path) -> Path:
    if directory is None:
        return discovery.user_config(os.environ)
    return Path(directory) / discovery.LOCAL_NAME


def _config_flag(config: Path, cwd: Path) -> str:
    """``--config X`` when a command run from ``cwd`` would not find ``config`` itself."""
    try:
        found = discovery.find_config(None, os.environ, cwd).path
    except ConfigError:
        found = None
    if found is not None and (cwd / found).resolve() == config.resolve():
        return ""
    return f" --config {shlex.quote(str(config.resolve()))}"


def run_init(args: argparse.Namespace) -> int:
    if args.example:
        print((files("nitroproxy.data") / "nitroproxy.yaml").read_text(encoding="utf-8"), end="")
        return 0
    cwd = Path.cwd()
    config = _target(args.dir, cwd)
    env_file = config.parent / ENV_FILE_NAME
    starter = Starter(
        host=args.host,
        port=args.port,
        mock_port=args.mock_port,
        providers=tuple(dict.fromkeys(args.provider or ["mock"])),
    )
    for path in (config, env_file):
        if path.exists():
            print(f"nitroproxy: {path} exists; not overwriting it", file=sys.stderr)
            return 2
    config.parent.mkdir(parents=True, exist_ok=True)
    keys = {ADMIN_KEY_VAR: f"np-admin-{secrets.token_urlsafe(32)}", DATA_KEY_VAR: generate_key()}
    write_private(env_file, format_env(keys, env_comment(starter.providers)))
    config.write_text(config_text(starter), encoding="utf-8")
    me, flag = program(), _config_flag(config, cwd)
    url = f"http://{'127.0.0.1' if starter.host == '0.0.0.0' else starter.host}:{starter.port}"
    body = (
        f'{{"model": "{starter.first_model}", '
        '"messages": [{"role": "user", "content": "Hello!"}]}'
    )
    print(f"wrote {config}")
    print(f"wrote {env_file} (mode 0600: the admin key and the data key)")
    missing = [p for p in starter.providers if p != "mock"]
    if missing:
        print(f"add your {', '.join(missing)} API key(s) to {env_file} first")
    print("\nnext, in this order (the server in its own terminal):")
    print(f"  {me} serve{flag}")
    print(f"  KEY=$({me} keys create --name first-key --secret-only{flag})")
    print(
        f'  curl -s {url}/v1/chat/completions -H "Authorization: Bearer $KEY" '
        f"-H 'Content-Type: application/json' -d '{body}'"
    )
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="write a starter configuration and fresh keys",
        description=(
            "Write a commented starter configuration (the bundled mock provider unless "
            "--provider names real ones) and a nitroproxy.env file (mode 0600) with a fresh "
            "admin key and data key, then print the next three commands. Without DIR the "
            "configuration goes to $XDG_CONFIG_HOME/nitroproxy/config.yaml "
            "(~/.config/nitroproxy), where every command finds it; with DIR, to "
            "DIR/nitroproxy.yaml. Existing files are never overwritten."
        ),
    )
    p.add_argument(
        "dir", nargs="?", metavar="DIR", help="directory for nitroproxy.yaml and nitroproxy.env"
    )
    p.add_argument(
        "--provider",
        action="append",
        choices=PROVIDERS,
        help="a provider to configure (repeat for several); default: mock, no API keys needed",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument(
        "--mock-port", type=int, default=8081, help="port of the bundled mock (default 8081)"
    )
    p.add_argument(
        "--example",
        action="store_true",
        help="print the annotated example that shows every section, and write nothing",
    )
    p.set_defaults(func=run_init)
