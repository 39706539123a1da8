"""Argument types of the command line: every value is checked when it is parsed.

A bad value ends the command before it does any work, with exit status 2 and
one line naming the option and the file (argparse's own convention for usage
errors). Output paths are checked for what would fail later (a folder where a
file goes, an unwritable folder, a kernel interface such as /proc); the writer
(``vida_eval.files``) still reports what changes in between.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .files import output_dir_problem, output_file_problem


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the message and where help is, without the usage block."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def fraction(text: str) -> float:
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{value} must be in (0, 1]")
    return value


def share(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value} must be in [0, 1]")
    return value


def output_file(text: str) -> str:
    problem = output_file_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def output_dir(text: str) -> str:
    problem = output_dir_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _existing(text: str, folder: bool) -> str:
    path = Path(text)
    kind, other = ("folder", "file") if folder else ("file", "folder")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such {kind}")
    if path.is_dir() != folder:
        raise argparse.ArgumentTypeError(f"{text}: is a {other}, not a {kind}")
    return text


def existing_dir(text: str) -> str:
    return _existing(text, folder=True)


def existing_file(text: str) -> str:
    return _existing(text, folder=False)


def existing_path(text: str) -> str:
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file or folder")
    return text


def choice_list(choices: tuple[str, ...]):
    """A comma-separated subset of *choices*, in the order given, each once."""

    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"{', '.join(map(repr, unknown)) or 'nothing'} given; "
                                             f"choose from {','.join(choices)}")
        return list(dict.fromkeys(names))

    return parse
