"""``python -m toygpt tokenize``: show how a tokenizer cuts a text into tokens.

    python -m toygpt tokenize --tokenizer byte "héllo"
    python -m toygpt tokenize --tokenizer bpe-512 --corpus input.txt "To be, or not to be"
    echo "hello" | python -m toygpt tokenize --tokenizer gpt2
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from toygpt.cli.options import input_file, read_stdin
from toygpt.data import DEFAULT_MAX_BYTES
from toygpt.tokenizers import Tokenizer, TokenizerError, get_tokenizer

# Pastel 256-colour backgrounds with black text: readable on dark and light terminals.
_BACKGROUNDS = (153, 186, 217, 194, 223, 189, 159, 230)
MAX_CORPUS_BYTES = DEFAULT_MAX_BYTES  # what training reads at most
MAX_TEXT_CHARS = 10_000_000  # the text to show as tokens (one line per token is printed)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tokenize", help="show the tokens (with ids) a tokenizer makes of a text",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="TOKENIZER: char | byte | bpe-<N> | bpe:<tokenizer.json> | gpt2 | r50k_base | "
               "p50k_base | cl100k_base | o200k_base",
    )
    parser.add_argument("text", nargs="?", default="-", help="the text ('-' or nothing: read stdin)")
    parser.add_argument("--tokenizer", "-t", default="byte", metavar="TOKENIZER")
    parser.add_argument("--corpus", type=input_file(MAX_CORPUS_BYTES), help="text file the char and bpe-<N> tokenizers are built from")
    parser.add_argument("--allow-special", action="store_true",
                        help="encode text such as <|endoftext|> as the special token")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        text = read_stdin(MAX_TEXT_CHARS) if args.text == "-" else args.text
        corpus = _read_corpus(args.corpus) if args.corpus else None
        tokenizer = get_tokenizer(args.tokenizer, corpus_text=corpus)
        ids, spans = tokenizer.encode_with_spans(text, allow_special=args.allow_special)
    except TokenizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except UnicodeDecodeError as exc:
        print(f"error: standard input is not UTF-8 text ({exc.reason})", file=sys.stderr)
        return 1
    colour = args.color == "always" or (args.color == "auto" and _terminal_has_colour(out))
    print(_summary(tokenizer, text, ids), file=out)
    if colour:
        print("".join(_paint(tokenizer.token_label(i), k) for k, i in enumerate(ids)), file=out)
    for k, token_id in enumerate(ids):
        label = tokenizer.token_label(token_id)
        start, end = spans[k]
        print(f"{token_id:>8}  {_paint(label, k) if colour else label}  [{start}:{end}]", file=out)
    return 0


def _read_corpus(path: str) -> str:
    try:
        if os.path.getsize(path) > MAX_CORPUS_BYTES:
            raise TokenizerError(f"{path} is over {MAX_CORPUS_BYTES >> 20} MiB; use a smaller corpus")
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise TokenizerError(f"cannot read corpus {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise TokenizerError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _summary(tokenizer: Tokenizer, text: str, ids: list[int]) -> str:
    per_token = f"{len(text) / len(ids):.2f}" if ids else "–"
    return (f"{tokenizer.name} (vocab {tokenizer.vocab_size:,}): {len(ids):,} tokens for "
            f"{len(text):,} characters ({len(text.encode('utf-8')):,} bytes), "
            f"{per_token} characters per token")


def _paint(label: str, k: int) -> str:
    return f"\x1b[48;5;{_BACKGROUNDS[k % len(_BACKGROUNDS)]}m\x1b[30m{label}\x1b[0m"


def _terminal_has_colour(out: TextIO) -> bool:
    """Colour only on a real terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return hasattr(out, "isatty") and out.isatty()
