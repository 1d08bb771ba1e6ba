"""``python -m toygpt sample``: continue a prompt with a trained run, token by token.

    python -m toygpt sample --run runs/my-run --prompt "ROMEO:" --max-tokens 200
    python -m toygpt sample --run my-run --prompt "" --temperature 0.8 --top-k 40 --seed 1
    python -m toygpt sample --run my-run --prompt "To be" --temperature 0   # greedy

RUN is a run folder, or a run id looked up in $TOYGPT_RUNS_DIR (default ./runs);
demo-shakespeare-char is the shipped demo model; pretrained:NAME is GPT-2-family weights from
`python -m toygpt pretrained` (e.g. pretrained:gpt2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from toygpt.cli.options import float_in, int_in
from toygpt.model import SIZE_LIMITS
from toygpt.sample import GenerationStats, encode_prompt, generate
from toygpt.sampling import SamplingConfig

MAX_SAMPLE_TOKENS = 1_000_000  # a long stream is fine on a terminal (Ctrl-C stops it); not endless


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample", help="generate text from a trained run",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )  # fmt: skip
    parser.add_argument("--run", required=True, metavar="RUN", help="run folder or run id")
    parser.add_argument("--prompt", default="", help="text to continue (empty: start from the start token)")
    parser.add_argument("--max-tokens", type=int_in(0, MAX_SAMPLE_TOKENS), default=200, metavar="N", help="tokens to generate (default 200)")
    parser.add_argument("--temperature", type=float_in(0.0, 100.0), default=1.0, help="0 = greedy, <1 sharper, >1 flatter (default 1)")
    parser.add_argument("--top-k", type=int_in(1, SIZE_LIMITS["vocab_size"]), default=None, metavar="K", help="keep only the K most likely tokens")
    parser.add_argument("--top-p", type=float_in(0.0, 1.0, low_open=True), default=None, metavar="P", help="keep the most likely tokens up to mass P")
    parser.add_argument("--seed", type=int_in(0, 2**63 - 1), default=None, help="make the sampling repeatable")
    parser.add_argument("--stop", action="append", default=None, metavar="TEXT", help="stop once TEXT appears (repeatable)")
    parser.add_argument("--no-cache", action="store_true", help="recompute the whole context every token (slower)")
    parser.add_argument("--stats", action="store_true", help="print tokens per second to stderr at the end")
    parser.set_defaults(func=run)


def resolve_run(run: str) -> Path:
    """A run folder as given, or a run id (the demo's too) through ``toygpt.runs.open_run``."""
    from toygpt.runs import open_run, runs_dir

    path = Path(run).expanduser()
    if path.is_dir():
        return path
    if Path(run).name != run or run in ("", ".", ".."):  # a path that does not exist; never a lookup
        raise ValueError(f"{run}: no such run folder")
    if (runs_dir() / run).is_dir():  # any checkpoint folder in the runs folder, run.json or not
        return runs_dir() / run
    return open_run(run).path  # the demo; else RunError (a ValueError) says how to list runs


def load_for_sampling(run: str):  # -> (GPT, Tokenizer); imports kept here so --help stays fast
    from toygpt.checkpoint import load_checkpoint
    from toygpt.pretrained import PRETRAINED_PREFIX, load_pretrained_reference
    from toygpt.tokenizers import tokenizer_from_dict
    from toygpt.tokenizers.base import check_model_vocab_size

    if run.startswith(PRETRAINED_PREFIX):
        return load_pretrained_reference(run)
    directory = resolve_run(run)
    checkpoint = load_checkpoint(directory)
    if checkpoint.tokenizer is None:
        raise ValueError(f"{directory} has no tokenizer.json, so text cannot be encoded; retrain or copy it in")
    tokenizer = tokenizer_from_dict(checkpoint.tokenizer)
    try:
        check_model_vocab_size(tokenizer, checkpoint.config.vocab_size)
    except ValueError as exc:
        raise ValueError(f"{directory}: {exc} (tokenizer.json and the weights come from different runs)") from None
    return checkpoint.model, tokenizer


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        model, tokenizer = load_for_sampling(args.run)
        ids = encode_prompt(tokenizer, args.prompt, model)
        sampling = SamplingConfig(args.temperature, args.top_k, args.top_p)
        steps = generate(model, ids, args.max_tokens, sampling=sampling, seed=args.seed, use_cache=not args.no_cache,
                         stop=args.stop, tokenizer=tokenizer)  # fmt: skip
        return _stream(steps, tokenizer, model.config.block_size, args, out, err)
    except (ValueError, OSError) as exc:  # CheckpointError, TokenizerError ... are ValueErrors
        print(f"error: {exc}", file=err)
        return 1


def _stream(steps, tokenizer, block_size: int, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the prompt, then the text as it grows. The whole continuation is decoded each time,
    so a character split across byte tokens prints once complete; with stop strings the last
    few characters wait until they cannot be the start of a stop string."""
    done, generated, shown, text = [], [], 0, ""
    holdback = max(len(s) for s in args.stop) - 1 if args.stop else 0
    out.write(args.prompt)
    for step in steps:
        if step.index == 0 and step.prompt_dropped:
            print(f"note: the prompt was cut to its last {block_size} tokens ({step.prompt_dropped} "
                  "dropped): that is all the model can read", file=err)  # fmt: skip
        done.append(step)
        generated.append(step.token_id)
        text = tokenizer.decode(generated)
        if step.stop_reason and step.stop_reason.startswith("stop string"):
            text = min((text.split(s, 1)[0] for s in args.stop), key=len)
            holdback = 0
        ready = len(text) - holdback
        if ready > shown and not text[:ready].endswith("\ufffd"):  # U+FFFD: rest of a character to come
            out.write(text[shown:ready])
            out.flush()
            shown = ready
    out.write(text[shown:] + "\n")
    if args.stats and done:
        stats = GenerationStats.of(done)  # the model's time only, not the printing
        print(f"{stats.tokens} tokens in {stats.total_seconds:.2f} s: the first after "
              f"{1000 * stats.first_token_seconds:.0f} ms (it reads the prompt), then "
              f"{stats.tokens_per_second:,.0f} tokens/s", file=err)  # fmt: skip
    return 0
