"""``python -m toygpt runs``: list, export, import and delete training runs.

    python -m toygpt runs                      # a table: id, corpus, steps, best val loss, status
    python -m toygpt runs export RUN out.zip
    python -m toygpt runs export-hf RUN FOLDER  # a folder transformers.GPT2LMHeadModel loads
    python -m toygpt runs import out.zip
    python -m toygpt runs delete RUN
    python -m toygpt runs pack RUN checkpoints/x --snapshots 0,200,800   # a compact read-only copy
    python -m toygpt runs eval RUN             # train/val loss on 200 batches of its corpus
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from toygpt import run_archive, runs
from toygpt.cli.options import input_file, int_in, output_file, output_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "runs", help="list training runs with their best val loss (export / import / delete)",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )  # fmt: skip
    parser.set_defaults(func=list_command)
    sub = parser.add_subparsers(dest="runs_command", metavar="ACTION")
    sub.add_parser("list", help="list runs (the default)").set_defaults(func=list_command)
    export = sub.add_parser("export", help="write a run as a zip file")
    export.add_argument("run")
    export.add_argument("path", type=output_file)
    export.set_defaults(func=export_command)
    export_hf = sub.add_parser(
        "export-hf", help="write a run as a Hugging Face GPT-2 folder (GPT2LMHeadModel.from_pretrained)"
    )
    export_hf.add_argument("run")
    export_hf.add_argument("folder", type=output_folder, help="a new (or empty) folder")
    export_hf.add_argument("--weights", choices=("best", "latest"), default="best")
    export_hf.set_defaults(func=export_hf_command)
    imp = sub.add_parser("import", help="add a run from a zip file")
    imp.add_argument("path", type=input_file(run_archive.MAX_IMPORT_BYTES))
    imp.add_argument("--name", help="a name for the imported run")
    imp.set_defaults(func=import_command)
    delete = sub.add_parser("delete", help="delete a run folder")
    delete.add_argument("run")
    delete.set_defaults(func=delete_command)
    pack = sub.add_parser("pack", help="write a compact read-only copy (float16 weights, chosen snapshots)")
    pack.add_argument("run")
    pack.add_argument("path", type=output_folder)
    pack.add_argument("--snapshots", help="comma-separated snapshot steps to keep (default: all)")
    pack.add_argument("--metrics-every", type=int_in(1, 10**9), default=50, help="keep every Nth step row of the metrics")
    pack.add_argument("--overwrite", action="store_true", help="replace an earlier pack in PATH")
    pack.set_defaults(func=pack_command)
    evaluate = sub.add_parser("eval", help="train and val loss of a run's model on its own corpus")
    evaluate.add_argument("run")
    evaluate.add_argument("--batches", type=int_in(1, runs.MAX_EVAL_BATCHES), default=200)
    evaluate.add_argument("--weights", choices=("latest", "best"), default="latest")
    evaluate.set_defaults(func=eval_command)


def format_table(infos: list[runs.RunInfo]) -> str:
    rows = [("ID", "CORPUS", "TOKENIZER", "MODEL", "STEPS", "BEST VAL", "STATUS", "CREATED")]
    for info in infos:
        m = info.model_config
        shape = f"{m.get('n_layer', '?')}L/{m.get('n_head', '?')}H/{m.get('n_embd', '?')}"
        best = f"{info.best_val_loss:.4f}" if info.best_val_loss is not None else "-"
        status = info.status + (" (read-only)" if info.read_only else "")
        rows.append((info.id, info.corpus, info.tokenizer, shape, str(info.steps), best, status, info.created))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def list_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    infos = runs.list_runs()
    if not infos:
        print(f"no runs in {runs.runs_dir()} yet; train one with: python -m toygpt train --preset nano --corpus copy", file=out)
        return 0
    print(format_table(infos), file=out)
    return 0


def export_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    try:
        data = run_archive.export_zip(args.run)
        args.path.write_bytes(data)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.path} ({len(data):,} bytes)", file=out or sys.stdout)
    return 0


def export_hf_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    try:
        folder = run_archive.export_run_hf(args.run, args.folder, args.weights)
    except (ValueError, OSError) as exc:  # RunError, CheckpointError, TokenizerError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 1
    names = ", ".join(sorted(p.name for p in folder.iterdir()))
    print(f"wrote {folder} ({names}); load it with transformers.GPT2LMHeadModel.from_pretrained"
          f"({str(folder)!r}); {folder / 'README.md'} says how to encode text", file=out or sys.stdout)  # fmt: skip
    return 0


def import_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    try:
        if args.path.stat().st_size > run_archive.MAX_IMPORT_BYTES:
            raise runs.RunError(f"{args.path} is larger than {run_archive.MAX_IMPORT_BYTES:,} bytes")
        run_id = run_archive.import_zip(args.path.read_bytes(), name=args.name)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"imported as run {run_id}", file=out or sys.stdout)
    return 0


def delete_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    try:
        runs.delete_run(args.run)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"deleted run {args.run}", file=out or sys.stdout)
    return 0


def pack_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    try:
        steps = [int(s) for s in args.snapshots.split(",")] if args.snapshots else None
        target = run_archive.pack_run(args.run, args.path, steps, args.metrics_every, args.overwrite)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"packed {args.run} into {target} ({size:,} bytes)", file=out or sys.stdout)
    return 0


def eval_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    try:
        losses = runs.open_run(args.run).evaluate(args.weights, args.batches)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.run} ({args.weights} weights), {args.batches} batches of 12: "
          f"train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", file=out or sys.stdout)  # fmt: skip
    return 0
