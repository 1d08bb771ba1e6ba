"""``python -m toygpt lab``: run a Concepts-lab experiment from the command line, for budgets
longer than a page visit (overnight, or on a GPU); the result is saved as a run that the
Concepts lab page lists and opens like one it ran itself.

    python -m toygpt lab scaling --max-compute 1e13 --estimate   # how long it takes here, then run it
    python -m toygpt lab scaling --max-compute 1e13
    python -m toygpt lab scaling --sizes 1x32x2,2x64x4,4x128x4,4x192x6,6x256x8 --max-compute 1e15 --device cuda
"""

from __future__ import annotations

import argparse
import sys

from toygpt.cli.options import float_in, int_in


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lab", help="run a lab experiment (scaling) and save its result as a run",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )  # fmt: skip
    sub = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    scaling = sub.add_parser("scaling", help="a ladder of sizes against compute; the frontier and its power law")
    scaling.add_argument("--corpus", default="shakespeare", help="corpus name (default shakespeare)")
    scaling.add_argument("--sizes", default=None, metavar="LxCxH,...",
                         help="comma-separated sizes, e.g. 1x32x2,2x64x4 (default: the page's ladder)")
    scaling.add_argument("--max-compute", type=float_in(1e6, 1e21), default=None, metavar="FLOPS",
                         help="the largest budget in training FLOPs (default: the page's; --estimate says "
                              "how long a setting takes on this machine)")
    scaling.add_argument("--doublings", type=int_in(2, 30), default=None, help="budgets below the largest, each half the last")
    scaling.add_argument("--batch-size", type=int_in(1, 1024), default=None)
    scaling.add_argument("--block-size", type=int_in(2, 1024), default=None)
    scaling.add_argument("--learning-rate", type=float_in(1e-6, 1.0), default=None)
    scaling.add_argument("--seed", type=int_in(0, 2**31 - 1), default=0)
    scaling.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    scaling.add_argument("--threads", type=int_in(1, 1024), default=None, help="torch threads on the CPU")
    scaling.add_argument("--estimate", action="store_true",
                         help="print what this setting will cost here (training steps of its sizes timed "
                              "just now) and exit without training")  # fmt: skip
    scaling.set_defaults(func=run_scaling)


def run_scaling(args: argparse.Namespace) -> int:
    import torch

    from toygpt import lab

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible to torch here; use --device cpu")
    options = {"corpus": args.corpus, "seed": args.seed, "device": args.device, "max_compute": args.max_compute,
               "doublings": args.doublings, "batch_size": args.batch_size, "block_size": args.block_size,
               "learning_rate": args.learning_rate}  # fmt: skip
    if args.sizes:
        options["sizes"] = tuple(size.strip() for size in args.sizes.split(",") if size.strip())
    params = lab.scaling.ScalingParams(**{k: v for k, v in options.items() if v is not None})
    budget = f"Budget: {params.budget().text}"
    if args.estimate:
        print(budget)
        return 0
    print(budget, file=sys.stderr)

    def progress(event: dict) -> None:
        if event.get("type") == "metric":
            print(f"  {event['variant']}: step {event['step']}, val loss {event['val_loss']:.4f}", file=sys.stderr)

    result = lab.run_experiment("scaling", params, progress)
    run_id = lab.save_result(result)
    print(lab.reading(result))
    print(f"saved as run {run_id} (open it on the Concepts lab page, 'Scaling on a CPU')")
    return 0
