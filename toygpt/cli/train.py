"""``python -m toygpt train``: train a model with a progress bar, into a run folder.

    python -m toygpt train --corpus shakespeare --tokenizer char --preset small --max-seconds 180
    python -m toygpt train --text my_notes.txt --preset nano --max-steps 500 --name notes
    python -m toygpt train --resume notes --max-steps 1000          # continue a run
    python -m toygpt train --init-from notes --corpus toy-english   # fine-tune into a new run
    python -m toygpt train --init-from pretrained:gpt2 --corpus shakespeare --train-last-blocks 1 \
        --block-size 128 --batch-size 4 --lr 3e-4 --max-steps 200        # fine-tune GPT-2 itself
    torchrun --nproc_per_node=2 -m toygpt train --corpus shakespeare --preset small

Ctrl-C stops after the current step and saves, so the run can be resumed.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

from toygpt import distributed
from toygpt.cli.options import float_in, input_file, int_in
from toygpt.data import DEFAULT_MAX_BYTES, read_user_text
from toygpt.formatting import clock, human_bytes
from toygpt.model import PRESETS, SIZE_LIMITS, preset
from toygpt.resume import plan_resume
from toygpt.runs import open_run
from toygpt.status import Status
from toygpt.train import DEVICES, MAX_SECONDS, PRECISIONS, TRAIN_LIMITS, TrainConfig

# command-line flag → TrainConfig field, with its type and range (the ranges TrainConfig checks;
# None: not given, keep the default or the saved value)
_COUNT = int_in(1, 10**9)
TRAIN_FLAGS = {
    "batch_size": int_in(1, TRAIN_LIMITS["batch_size"]), "block_size": int_in(1, SIZE_LIMITS["block_size"]),
    "max_steps": _COUNT, "max_seconds": float_in(0.001, MAX_SECONDS),
    "learning_rate": float_in(1e-9, 10.0), "min_lr": float_in(0.0, 10.0), "warmup_steps": int_in(0, 10**9),
    "weight_decay": float_in(0.0, 10.0), "grad_clip": float_in(0.0, 1e6), "eval_interval": _COUNT,
    "eval_batches": int_in(1, TRAIN_LIMITS["eval_batches"]), "sample_interval": int_in(0, 10**9),
    "sample_tokens": int_in(1, TRAIN_LIMITS["sample_tokens"]), "log_interval": _COUNT,
    "checkpoint_interval": int_in(0, 10**9), "max_snapshots": int_in(0, TRAIN_LIMITS["max_snapshots"]),
    "seed": int_in(0, TRAIN_LIMITS["seed"]), "num_threads": int_in(1, TRAIN_LIMITS["num_threads"]),
    "train_last_blocks": int_in(1, SIZE_LIMITS["n_layer"]),
}  # fmt: skip
CHOICE_FLAGS = {"device": DEVICES, "precision": PRECISIONS}
MODEL_FLAGS = {
    "n_layer": int_in(1, SIZE_LIMITS["n_layer"]), "n_head": int_in(1, SIZE_LIMITS["n_head"]),
    "n_embd": int_in(1, SIZE_LIMITS["n_embd"]), "dropout": float_in(0.0, 1.0, high_open=True),
}  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model (progress bar; Ctrl-C stops and saves)",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )  # fmt: skip
    source = parser.add_argument_group("what to train on")
    source.add_argument("--corpus", default="shakespeare", help="a corpus name (python -m toygpt data list)")
    source.add_argument("--text", metavar="PATH", type=input_file(DEFAULT_MAX_BYTES), help="train on your own UTF-8 text file instead")
    source.add_argument("--corpus-seed", type=int_in(0, 2**31 - 1), default=0, help="seed of a generated corpus")
    source.add_argument("--tokenizer", default="char", help="char | byte | bpe-<N> | bpe:PATH | gpt2 ...")
    model = parser.add_argument_group("model")
    model.add_argument("--preset", default="small", choices=sorted(PRESETS))
    for name, kind in MODEL_FLAGS.items():
        model.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None)
    training = parser.add_argument_group("training (defaults: toygpt.train.TrainConfig)")
    for name, kind in TRAIN_FLAGS.items():
        flag = "--lr" if name == "learning_rate" else f"--{name.replace('_', '-')}"
        training.add_argument(flag, dest=name, type=kind, default=None)
    for name, options in CHOICE_FLAGS.items():
        training.add_argument(f"--{name}", dest=name, default=None, help=f"{' | '.join(options)}"
                              + (" | cuda:N" if name == "device" else ""))  # fmt: skip
    training.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model (default: on CPUs with fast bf16 and a C++ compiler, or CUDA; --no-compile: eager)")
    run = parser.add_argument_group("run")
    run.add_argument("--name", help="a name for the run (becomes its id, sanitised)")
    run.add_argument("--tag", action="append", default=[], help="a tag (repeat for several)")
    run.add_argument("--resume", metavar="RUN", help="continue run RUN from its latest checkpoint")
    run.add_argument("--init-from", metavar="RUN",
                     help="start from RUN's weights (fine-tuning) in a new run; pretrained:NAME for GPT-2 "
                     "weights from `python -m toygpt pretrained`")  # fmt: skip
    run.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")
    parser.set_defaults(func=main)


def train_config_from(args: argparse.Namespace) -> TrainConfig | None:
    """The TrainConfig the flags describe: on resume, the run's saved config with the flags
    given applied on top (None: keep it all); otherwise the defaults with the flags applied."""
    given = {name: getattr(args, name) for name in [*TRAIN_FLAGS, *CHOICE_FLAGS, "compile"] if getattr(args, name) is not None}
    if args.resume:
        return plan_resume(args.resume, **given).config if given else None
    return TrainConfig(**given)


def spec_from(args: argparse.Namespace) -> Any:
    from toygpt.pipeline import TrainSpec

    model_changes = {name: getattr(args, name) for name in MODEL_FLAGS if getattr(args, name) is not None}
    text = read_user_text(args.text) if args.text else None
    corpus = args.corpus if text is None else args.text.name
    return TrainSpec(
        corpus=corpus, tokenizer=args.tokenizer, model=preset(args.preset, **model_changes),
        train=train_config_from(args), name=args.name, tags=tuple(args.tag), init_from=args.init_from,
        resume=args.resume, corpus_text=text, corpus_seed=args.corpus_seed,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Progress display
# --------------------------------------------------------------------------------------------


class Progress:
    """Draws events: a one-line bar redrawn in place on a terminal, plain lines elsewhere."""

    def __init__(self, out: TextIO, quiet: bool = False) -> None:
        self.out, self.quiet = out, quiet
        self.tty = out.isatty()
        self.val_loss: float | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "start":
            self._line(f"training on {event['device']} ({event['precision']}, {event.get('compile_reason', 'eager')}), "
                       f"{event['params']:,} parameters"
                       + (f", {event['world_size']} processes" if event["world_size"] > 1 else ""))  # fmt: skip
        elif kind == "eval":
            self.val_loss = event["val_loss"]
            self._line(f"step {event['step']:>6}: train loss {event['train_loss']:.4f}, val loss {event['val_loss']:.4f}")
        elif kind == "sample":
            self._line(f"sample at step {event['step']}: {event['text'][:300]!r}")
        elif kind in ("log", "preparing", "prepared"):
            self._line(f"note: {event['message']}")
        elif kind == "step" and self.tty and not self.quiet:
            self._bar(event)

    def _bar(self, event: dict[str, Any]) -> None:
        width = 24
        filled = int(width * event["progress"])
        bar = "#" * filled + "." * (width - filled)
        val = f" | val {self.val_loss:.3f}" if self.val_loss is not None else ""
        self.out.write(
            f"\r[{bar}] step {event['step']} | loss {event['loss']:.4f}{val} | "
            f"{event['tokens_per_s'] / 1000:.1f}k tok/s | ETA {clock(event['eta'], unknown='--:--')}  "
        )
        self.out.flush()

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty:
            self.out.write("\r\033[K")  # clear the bar; it is redrawn at the next step
        print(text, file=self.out, flush=True)


def summary(end: dict[str, Any], run_id: str | None) -> str:
    best = end.get("best_val_loss")
    lines = [
        f"{end['status']}: {end['message']}",
        f"steps {end['step']}, {end['tokens_seen']:,} tokens in {clock(end['elapsed'], unknown='--:--')}"
        + (f", best val loss {best:.4f}" if best is not None else ""),
    ]
    if run_id:
        lines.append(f"run: {run_id}  (sample: python -m toygpt sample --run {run_id}; "
                     f"continue: python -m toygpt train --resume {run_id})")  # fmt: skip
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def stop_on_ctrl_c(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C: stop after this step and save. A second one: the usual KeyboardInterrupt.
    The previous handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may install signal handlers
        return

    def handler(signum: int, frame: Any) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from toygpt.pipeline import run_training

    out = out or sys.stdout
    stop = threading.Event()
    try:
        dist = distributed.init_from_env()
    except (RuntimeError, ValueError) as exc:
        print(f"error: cannot join the torchrun process group: {exc}", file=sys.stderr)
        return 1
    try:
        spec = spec_from(args)
        if dist.active and spec.train_config.num_threads is None:
            spec = _with_threads(spec, distributed.threads_per_rank())
        progress = Progress(out, quiet=args.quiet or not dist.is_main)
        if dist.is_main:
            print(memory_line(spec), file=out)
        run_ids: list[str] = []
        with stop_on_ctrl_c(stop):
            end = run_training(spec, progress, stop, dist, on_run=lambda run: run_ids.append(run.id))
    except (ValueError, OSError) as exc:  # bad flags, missing corpus, unknown run, unreadable file
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown()
    if dist.is_main:
        print(("\n" if out.isatty() else "") + summary(end, run_ids[0] if run_ids else spec.resume), file=out)
    return 0 if end["status"] in (Status.FINISHED, Status.STOPPED) else 3


def memory_line(spec: Any) -> str:
    """What the run will need, said before it starts (``toygpt.pipeline.memory_parts``); a run over
    the memory budget is then refused where it is built (``toygpt.limits``), with the numbers."""
    from toygpt.pipeline import corpus_text_of, memory_parts

    text = open_run(spec.resume).corpus_text() if spec.resume else corpus_text_of(spec)
    parts = memory_parts(spec, text)
    detail = ", ".join(f"{name} {human_bytes(size, decimals=1)}" for name, size in parts.items() if size)
    return f"memory needed: about {human_bytes(sum(parts.values()), decimals=1)} ({detail})"


def _with_threads(spec: Any, threads: int) -> Any:
    from dataclasses import replace

    return replace(spec, train=spec.train_config.replace(num_threads=threads))
