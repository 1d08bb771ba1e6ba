"""``python -m toygpt data``: the corpora toygpt knows, and getting tiny shakespeare offline.

    python -m toygpt data list                        # built-in and downloadable corpora
    python -m toygpt data add shakespeare input.txt   # seed the cache from a local copy
    python -m toygpt data download shakespeare        # fetch it (checked against its sha256)
    python -m toygpt data show addition               # the first lines of a corpus
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from toygpt import data
from toygpt.cli.options import input_file, int_in


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="list corpora; add or download tiny shakespeare",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )  # fmt: skip
    parser.set_defaults(func=list_command)
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.add_parser("list", help="list corpora (the default)").set_defaults(func=list_command)
    add = sub.add_parser("add", help="put a local copy of a downloadable corpus into the cache")
    add.add_argument("name", choices=sorted(data.DOWNLOADS))
    add.add_argument("path", type=input_file(data.DEFAULT_MAX_BYTES))
    add.set_defaults(func=add_command)
    download = sub.add_parser("download", help="download a corpus into the cache")
    download.add_argument("name", choices=sorted(data.DOWNLOADS))
    download.add_argument("--url", help="another address to fetch it from (a mirror)")
    download.set_defaults(func=download_command)
    show = sub.add_parser("show", help="print the first lines of a corpus")
    show.add_argument("name")
    show.add_argument("--lines", type=int_in(0, 1_000_000), default=10)
    show.add_argument("--seed", type=int_in(0, 2**31 - 1), default=0)
    show.set_defaults(func=show_command)


def list_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    for info in data.list_corpora():
        cached = ""
        if info.kind == "download":
            cached = " [cached]" if data.cached_corpus_path(info.name).is_file() else " [not downloaded yet]"
        print(f"{info.name:<12} {info.kind:<9} {info.description}{cached}", file=out)
    print(f"\ndata folder: {data.data_dir()}  (set TOYGPT_DATA_DIR to move it)", file=out)
    return 0


def _report(action: str, func: Callable[[], Path], out: TextIO | None) -> int:
    try:
        path = func()
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{action}: {path}", file=out or sys.stdout)
    return 0


def add_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return _report("cached", lambda: data.add_corpus_file(args.name, args.path), out)


def download_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return _report("downloaded", lambda: data.download_corpus(args.name, args.url), out)


def show_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        text = data.load_corpus(args.name, args.seed)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in text.splitlines()[: max(0, args.lines)]:
        print(line, file=out)
    print(f"... ({len(text):,} characters, {len(set(text))} distinct)", file=out)
    return 0
