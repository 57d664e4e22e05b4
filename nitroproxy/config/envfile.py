"""The secrets file beside a configuration: ``nitroproxy.env``, ``KEY=value`` lines.

``nitroproxy init`` writes it (mode 0600) with the admin key and the data key; every command
that reads a configuration also reads the ``nitroproxy.env`` in the same directory, and a
variable already in the environment wins over the file. The format is the one that a shell
(``set -a; . nitroproxy.env``), systemd's ``EnvironmentFile=`` and ``docker --env-file`` all
read the same way: one unquoted ``KEY=value`` a line, ``#`` comments. That common subset is why
this is not python-dotenv, whose quoting rules docker does not share.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from nitroproxy.config.errors import ConfigError

ENV_FILE_NAME = "nitroproxy.env"
_LINE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def env_file_for(config_path: Path) -> Path:
    return config_path.parent / ENV_FILE_NAME


def parse_env(text: str, where: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE_RE.match(line.removeprefix("export "))
        if m is None:
            raise ConfigError(f"{where}:{number}: expected KEY=value")
        values[m.group(1)] = m.group(2)
    return values


def read_env_file(path: Path) -> dict[str, str]:
    """The file's variables; an absent file is empty. It holds secrets, so a file that
    every user may read is refused rather than silently trusted (a group may read it: a
    systemd set-up often has ``root:nitroproxy 0640``)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except PermissionError:
        # A service user that may not read it (systemd's EnvironmentFile= read it as root
        # and passed the values on): the environment carries them, or ${VAR} says what is
        # missing.
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if mode & stat.S_IRWXO:
        raise ConfigError(f"{path}: holds secrets but every user may read it; run chmod 600 {path}")
    return parse_env(text, str(path))


def format_env(values: Mapping[str, str], comment: str) -> str:
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    for key, value in values.items():
        if not _LINE_RE.match(f"{key}={value}") or any(c.isspace() for c in value):
            raise ValueError(f"{key}: not representable in an env file")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 from the first byte (never briefly world-readable);
    an existing file is an error, so a second ``init`` cannot replace live keys."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
