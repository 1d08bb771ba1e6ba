"""Arguments that are checked when they are parsed: every number has a type and a range, every
path a kind and a size, and a bad one ends the command with one line saying which and why.

    >>> parser = Parser(prog="demo")
    >>> _ = parser.add_argument("--batches", type=int_in(1, 10_000))
    >>> parser.parse_args(["--batches", "0"])                 # doctest: +SKIP
    demo: error: argument --batches: 0 is not in [1, 10,000]

(argparse's own ``error`` prints the whole usage first, and library errors would print a
traceback; neither tells a learner in one line what to change.)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

MAX_WHOLE = 2**63 - 1


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (exit status 2); subcommand
    parsers made from it are ``Parser`` too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message.splitlines()[0] if message else 'bad arguments'} (see --help)\n")


def int_in(low: int, high: int = MAX_WHOLE) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r:.40} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in [{low:,}, {high:,}]")
        return value

    parse.__name__ = "whole number"
    return parse


def float_in(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high] (``low_open``/``high_open``: excluded)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r:.40} is not a number") from None
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if not math.isfinite(value) or too_low or too_high:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"{text} is not in {interval}")
        return value

    parse.__name__ = "number"
    return parse


def input_file(max_bytes: int) -> Callable[[str], Path]:
    """An argparse type: an existing regular file of at most ``max_bytes`` (not a folder, not a
    device such as /dev/zero, which has no end)."""

    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{text}: no such file")
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"{text}: not a regular file")
        size = path.stat().st_size
        if size > max_bytes:
            raise argparse.ArgumentTypeError(f"{text}: {size:,} bytes is above the {max_bytes:,}-byte limit")
        return path

    parse.__name__ = "file"
    return parse


def output_file(text: str) -> Path:
    """An argparse type: a file to write, whose folder exists and which is not a folder."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder; give a file name")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the folder {path.parent} does not exist")
    return path


def output_folder(text: str) -> Path:
    """An argparse type: a folder to create or fill, not an existing file, under a folder that exists."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a file, not a folder")
    if not path.exists() and not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the folder {path.parent} does not exist")
    return path


def read_stdin(max_chars: int) -> str:
    """Standard input, refused past ``max_chars`` (``... < /dev/zero`` must not fill memory)."""
    text = sys.stdin.read(max_chars + 1)
    if len(text) > max_chars:
        raise ValueError(f"standard input is longer than {max_chars:,} characters; give a shorter text")
    return text


def one_line(exc: BaseException) -> str:
    """An exception as one line for the terminal."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, ValueError | OSError) else f"{type(exc).__name__}: {text}"


def debug() -> bool:
    """``TOYGPT_DEBUG=1`` shows tracebacks instead of one-line errors."""
    return os.environ.get("TOYGPT_DEBUG", "") not in ("", "0")


def run_command(func: Callable[[Any], int], args: Any) -> int:
    """Run a command; any error it lets through becomes one line on stderr and exit status 1."""
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("\nstopped (Ctrl-C)", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, MemoryError, RecursionError) as exc:
        if debug():
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
