"""Command line: ``python -m toygpt <command> ...``.

Each command lives in its own module under ``toygpt/cli/`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the parsed
args and returning an exit code). Commands are imported lazily so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from toygpt.cli.options import Parser, run_command

# command name -> module under toygpt.cli that registers it
COMMANDS = {
    "tokenize": "toygpt.cli.tokenize",
    "data": "toygpt.cli.data",
    "train": "toygpt.cli.train",
    "runs": "toygpt.cli.runs",
    "sample": "toygpt.cli.sample",
    "lab": "toygpt.cli.lab",
    "pretrained": "toygpt.cli.pretrained",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = Parser(prog="python -m toygpt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = [a for a in argv if a in COMMANDS][:1] or list(COMMANDS)
    for name in wanted:
        importlib.import_module(COMMANDS[name]).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)  # a bad argument: one line and exit status 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args.func, args)  # an error: one line and exit status 1 (TOYGPT_DEBUG=1: traceback)


def prefer_sleeping_threads() -> None:
    """OpenMP threads sleep while they wait instead of spinning, unless the user chose otherwise. Set
    before torch (and so OpenMP) is loaded: the commands import it lazily. When any other process
    wants the cores (a browser, the dashboard, a test run), spinning threads collapse: on this
    2-core machine under load, the first validation of a `train --preset small` run took 13-17 s
    spinning against 1.7-2.3 s sleeping, and a 15 s budget trained 0-2 steps against 84-113. On an
    idle machine sleeping costs little (the dashboard's worker, which sleeps, trained at 0.97x the
    CLI's speed: bench/app_training.py). The dashboard's training worker sets the same."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


if __name__ == "__main__":
    prefer_sleeping_threads()
    sys.exit(main())
