"""The command line: ``nitroproxy serve``, ``usage``, ``users``, ``keys`` and the rest."""

from nitroproxy.cli.main import main

__all__ = ["main"]
