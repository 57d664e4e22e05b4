"""The one base for everything that stops the proxy or a command from starting.

A ``StartupError`` is the operator's to fix (a bad config file, a wrong data key, a database
from a newer NitroProxy): its message is one line, and the CLI prints it and exits 2, never a
traceback.
"""

from __future__ import annotations


class StartupError(Exception):
    """Cannot start: the message is one line meant for the operator."""


class ConfigError(StartupError):
    """A bad config file: the message is one line, starting with the YAML path."""
