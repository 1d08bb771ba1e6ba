"""Benchmark: BPE training, incremental trainer vs the textbook one (recount after every merge).

    python bench/bpe_train.py [--corpus PATH]

Prints medians and the speed-up, measured in the same run. The textbook trainer is too slow to
run to 1024 tokens on the whole book, so it is timed on its first merges and extrapolated per
merge (said so in the output); a second comparison runs both all the way on a slice of the book.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toygpt.tokenizers.bpe import learn_merges, learn_merges_textbook  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--textbook-merges", type=int, default=6,
                        help="merges to time the textbook trainer on (whole book)")
    parser.add_argument("--slice-chars", type=int, default=30_000)
    args = parser.parse_args()
    if not args.corpus.is_file():
        print(f"corpus not found: {args.corpus} (pass --corpus PATH)", file=sys.stderr)
        return 1
    text = args.corpus.read_text(encoding="utf-8")
    print(f"corpus: {args.corpus.name}, {len(text):,} characters; GPT-2 split pattern\n")

    t1024, fast = median_time(lambda: learn_merges(text, 1024), 3)
    t2048, _ = median_time(lambda: learn_merges(text, 2048), 3)
    print(f"incremental  vocab 1024 ({len(fast)} merges): median {t1024:6.2f} s  (3 runs)")
    print(f"incremental  vocab 2048:                median {t2048:6.2f} s  (3 runs; target <= 10 s)")

    k = args.textbook_merges
    t_empty, _ = median_time(lambda: learn_merges_textbook(text, 256), 3)  # pre-tokenize only
    t_k, slow = median_time(lambda: learn_merges_textbook(text, 256 + k), 1)
    per_merge = (t_k - t_empty) / k
    t_est = t_empty + per_merge * len(fast)
    print(f"textbook     first {k} merges: {t_k:.2f} s (of which {t_empty:.2f} s pre-tokenizing), "
          f"{per_merge:.3f} s per merge")
    print(f"textbook     vocab 1024 EXTRAPOLATED: {t_empty:.2f} + {len(fast)} x {per_merge:.3f} "
          f"= {t_est:.0f} s (an overestimate: later merges are cheaper as chunks shrink)")
    print(f"same first {k} merges: {slow == fast[:k]}")
    print(f"speed-up at vocab 1024 (extrapolated): {t_est / t1024:,.0f}x  (target >= 20x)\n")

    part = text[: args.slice_chars]
    tf, fast_part = median_time(lambda: learn_merges(part, 1024), 3)
    ts, slow_part = median_time(lambda: learn_merges_textbook(part, 1024), 1)
    print(f"slice of {len(part):,} characters, both trainers to vocab 1024 "
          f"({len(fast_part)} merges), no extrapolation:")
    print(f"  incremental median {tf:.3f} s, textbook {ts:.2f} s, speed-up {ts / tf:,.0f}x, "
          f"same merges: {fast_part == slow_part}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
