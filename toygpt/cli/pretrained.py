"""``python -m toygpt pretrained``: GPT-2-family weights you bring, in the pretrained cache.

    python -m toygpt pretrained                        # list what is in the cache
    python -m toygpt pretrained add ~/Downloads/gpt2   # a Hugging Face model folder, checked and copied
    python -m toygpt pretrained add gpt2.zip --name gpt2
    python -m toygpt pretrained add model.safetensors --sha256 <hex>   # config.json beside it

A folder (or zip) holds config.json + model.safetensors of any GPT2LMHeadModel checkpoint
(gpt2, distilgpt2, a fine-tuned one, a folder from `runs export-hf`). Its config is checked,
the weights are copied in chunks with their SHA-256 recorded, and nothing is left behind when
a check fails. Added models appear in the sidebar, the explorer and `train --init-from`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from toygpt import pretrained


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrained", help="add GPT-2-family weights you have (a Hugging Face folder) and list them",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )  # fmt: skip
    parser.set_defaults(func=list_command)
    sub = parser.add_subparsers(dest="pretrained_command", metavar="ACTION")
    sub.add_parser("list", help="list the pretrained cache (the default)").set_defaults(func=list_command)
    add = sub.add_parser("add", help="check and copy a GPT-2-family model folder, zip or files into the cache")
    add.add_argument("path", type=Path, help="a model folder, a .zip of one, or its model.safetensors")
    add.add_argument("--name", help="the name it gets here (default: the folder's name)")
    add.add_argument("--sha256", help="refuse the weights unless model.safetensors has this SHA-256")
    add.set_defaults(func=add_command)


def list_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    infos = pretrained.list_pretrained()
    if not infos:
        print(f"no pretrained weights in {pretrained.pretrained_dir()} yet; add a Hugging Face GPT-2 folder "
              "with: python -m toygpt pretrained add PATH", file=out)  # fmt: skip
        return 0
    rows = [("NAME", "MODEL", "PARAMS", "SIZE", "TOKENIZER", "SHA256", "SOURCE")]
    for info in infos:
        c = info.config
        tokenizer = info.tokenizer.get("encoding") or info.tokenizer.get("type", "?")
        rows.append((info.name, f"{c.n_layer}L/{c.n_head}H/{c.n_embd}", f"{info.n_params / 1e6:.1f}M",
                     pretrained.size_text(info.weights_bytes), str(tokenizer),
                     (info.sha256 or "not recorded")[:12], info.source))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)
    return 0


def add_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    try:
        files = pretrained.files_in_folder(args.path)
        info = pretrained.add_pretrained(files, args.name, origin=str(args.path), expected_sha256=args.sha256)
    except (ValueError, OSError) as exc:  # CheckpointError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"added {info.label}, {pretrained.size_text(info.weights_bytes)}, sha256 {info.sha256}; "
          f"sample it with: python -m toygpt sample --run pretrained:{info.name}", file=out or sys.stdout)  # fmt: skip
    return 0
