"""The configuration one command runs with: found, its env file read, loaded, data placed.

Every command goes through ``resolve``, so ``serve`` and ``keys create`` read the same file
and the same database. Errors are one line that starts with the file read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nitroproxy.config.discovery import Found, find_config, with_data_dir
from nitroproxy.config.envfile import env_file_for, read_env_file
from nitroproxy.config.errors import ConfigError
from nitroproxy.config.loader import load
from nitroproxy.config.provider_secrets import unset_provider_secrets
from nitroproxy.config.schema import Settings


@dataclass(frozen=True, slots=True)
class Resolved:
    settings: Settings
    found: Found
    # Variables from the env file that the environment lacked: the caller exports them, so
    # the data key reaches the store and the cache the way it reached the loader.
    env_added: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Provider secrets left unset because this command calls no provider.
    unset_secrets: tuple[str, ...] = ()


def _located(found: Found, message: str) -> ConfigError:
    path = str(found.path)
    return ConfigError(message if message.startswith(path) else f"{path}: {message}")


def resolve(
    explicit: str | None,
    *,
    env: Mapping[str, str],
    cwd: Path,
    providers: bool,
    require_models: bool = False,
) -> Resolved:
    """Load the configuration for a command. ``providers=False`` for a command that never
    calls a provider: unset provider secrets then do not stop it. ``require_models`` for
    ``serve`` and ``check-config``: a proxy with no models could only refuse every request."""
    found = find_config(explicit, env, cwd)
    absolute = found.path if found.path.is_absolute() else cwd / found.path
    try:
        from_file = read_env_file(env_file_for(absolute))
        added = {k: v for k, v in from_file.items() if k not in env}
        merged = {**env, **added}
        unset: list[str] = []
        if not providers:
            try:
                text = absolute.read_text(encoding="utf-8")
            except OSError:
                text = ""  # load() reports it, with the reason
            unset = unset_provider_secrets(text, merged)
            merged.update(dict.fromkeys(unset, ""))
        settings = load(absolute, env=merged)
    except ConfigError as exc:
        message = str(exc).replace(str(absolute), str(found.path))
        if message.endswith(" is not set"):
            where = env_file_for(found.path)
            message += f" (export it, or put it in {where})"
        raise _located(found, message) from None
    if require_models and not settings.models:
        raise _located(found, "models: none configured, so every request would be refused")
    return Resolved(
        settings=with_data_dir(settings, merged, cwd),
        found=found,
        env_added=added,
        unset_secrets=tuple(unset),
    )
