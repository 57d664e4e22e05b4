"""Where the configuration and the data live, so every command finds the same ones.

The configuration is the first of: ``--config``, ``$NITROPROXY_CONFIG``, ``./nitroproxy.yaml``,
``config/demo.yaml`` when the current directory is a NitroProxy checkout (what ``make run``
serves), then ``$XDG_CONFIG_HOME/nitroproxy/config.yaml`` (``~/.config/nitroproxy``). A
command that finds none says where it looked and how to make one (``nitroproxy init``).

A relative ``storage.path`` means what it always meant inside a checkout (relative to the
checkout). Elsewhere it is relative to the data directory, ``$NITROPROXY_DATA_DIR`` or else
``$XDG_DATA_HOME/nitroproxy`` (``~/.local/share/nitroproxy``), so an installed proxy never
writes into whatever directory it happened to be started from; the ``data/`` prefix that the
example configurations use names that directory itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath

from nitroproxy.config.errors import ConfigError
from nitroproxy.config.schema import Settings

CONFIG_ENV = "NITROPROXY_CONFIG"
DATA_ENV = "NITROPROXY_DATA_DIR"
LOCAL_NAME = "nitroproxy.yaml"
USER_NAME = "config.yaml"
CHECKOUT_CONFIG = PurePath("config", "demo.yaml")
# What makes a directory a NitroProxy checkout: the files a clone has and an install lacks.
_CHECKOUT_MARKERS = (PurePath("setup.cfg"), PurePath("nitroproxy", "__init__.py"), CHECKOUT_CONFIG)


@dataclass(frozen=True, slots=True)
class Found:
    """A configuration file and how it was found (for messages: "read X (from $Y)")."""

    path: Path
    source: str


def is_checkout(cwd: Path) -> bool:
    return all((cwd / marker).is_file() for marker in _CHECKOUT_MARKERS)


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()


def config_home(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/nitroproxy``; XDG says a relative value is to be ignored."""
    base = env.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else _home(env) / ".config"
    return root / "nitroproxy"


def user_config(env: Mapping[str, str]) -> Path:
    return config_home(env) / USER_NAME


def data_dir(env: Mapping[str, str], cwd: Path) -> Path:
    """Where a relative ``storage.path`` points: ``$NITROPROXY_DATA_DIR``, the checkout's
    ``data/`` when run from a checkout, else ``$XDG_DATA_HOME/nitroproxy``."""
    explicit = env.get(DATA_ENV, "")
    if explicit:
        return Path(explicit)
    if is_checkout(cwd):
        return cwd / "data"
    base = env.get("XDG_DATA_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else _home(env) / ".local" / "share"
    return root / "nitroproxy"


def find_config(explicit: str | None, env: Mapping[str, str], cwd: Path) -> Found:
    """The configuration a command reads; ``ConfigError`` (one line) when there is none."""
    if explicit:
        return Found(Path(explicit), "--config")
    if env.get(CONFIG_ENV):
        return Found(Path(env[CONFIG_ENV]), f"${CONFIG_ENV}")
    local = cwd / LOCAL_NAME
    if local.is_file():
        return Found(Path(LOCAL_NAME), f"./{LOCAL_NAME}")
    if is_checkout(cwd):
        return Found(Path(CHECKOUT_CONFIG), "this checkout's demo (what `make run` serves)")
    user = user_config(env)
    if user.is_file():
        return Found(user, "$XDG_CONFIG_HOME" if env.get("XDG_CONFIG_HOME") else "~/.config")
    raise ConfigError(
        f"no configuration found (looked for --config, ${CONFIG_ENV}, ./{LOCAL_NAME} and "
        f"{user}); run `nitroproxy init` to write one"
    )


def storage_path(path: str, env: Mapping[str, str], cwd: Path) -> str:
    """``storage.path`` as an absolute path outside a checkout (see the module docstring)."""
    if path == ":memory:" or Path(path).is_absolute():
        return path
    if is_checkout(cwd) and not env.get(DATA_ENV):
        return path
    parts = PurePath(path).parts
    if len(parts) > 1 and parts[0] == "data":
        parts = parts[1:]
    return str(data_dir(env, cwd).joinpath(*parts))


def with_data_dir(settings: Settings, env: Mapping[str, str], cwd: Path) -> Settings:
    storage = settings.storage
    resolved = storage_path(storage.path, env, cwd)
    # An explicit journal directory is placed by the same rules (unset, it is beside the
    # database wherever that is).
    journal = storage_path(storage.journal_dir, env, cwd) if storage.journal_dir else ""
    if resolved == storage.path and journal == storage.journal_dir:
        return settings
    placed = dataclasses.replace(storage, path=resolved, journal_dir=journal)
    return dataclasses.replace(settings, storage=placed)
