"""What every command's parser shares: argument types and the subcommand table's type."""

from __future__ import annotations

import argparse
from typing import Any, TypeAlias


class DefaultsShown(argparse.HelpFormatter):
    """Every option's help ends with its default, where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        hidden = default is None or default is False or default is argparse.SUPPRESS
        shown = not hidden and bool(action.option_strings)
        if shown and "%(default)" not in text and "default:" not in text:
            text += " (default: %(default)s)"
        return text


class CommandParser(argparse.ArgumentParser):
    """A command's parser: its options' defaults are shown in ``--help``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsShown)
        super().__init__(*args, **kwargs)


SubParsers: TypeAlias = "argparse._SubParsersAction[CommandParser]"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value
