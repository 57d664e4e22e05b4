"""`--help` explains every command and every option, in words meant for a user."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from nitroproxy.cli.main import build_parser


def parsers(
    parser: argparse.ArgumentParser, path: str = "nitroproxy"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"{path} {name}: no help line"
                yield from parsers(sub, f"{path} {name}")


ALL = list(parsers(build_parser()))


@pytest.mark.parametrize(("path", "parser"), ALL, ids=[p for p, _ in ALL])
def test_every_command_and_option_has_help(path: str, parser: argparse.ArgumentParser) -> None:
    assert parser.description, path
    undocumented = [
        a.option_strings or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction)
        and (not a.help or a.help == argparse.SUPPRESS)
    ]
    assert undocumented == [], path


def test_the_top_help_is_for_users_not_developers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "No logic here" not in text and "parse arguments" not in text
    for words in ("nitroproxy init", "keys create", "--version", "$NITROPROXY_CONFIG"):
        assert words in text


def test_every_command_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    commands = {p.split()[1] for p, _ in ALL if len(p.split()) == 2}
    assert {"init", "serve", "check-config", "usage", "keys", "users"} <= commands
