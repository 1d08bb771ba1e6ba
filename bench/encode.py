"""Benchmark: encoding speed (MB/s of UTF-8 text) of every tokenizer on the same text.

    python bench/encode.py [--corpus PATH]

Baseline: the byte tokenizer, measured in the same run; ratios are against it. tiktoken's
published encodings are included when their files are cached (this never downloads).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toygpt.tokenizers import (  # noqa: E402
    TIKTOKEN_NAMES,
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    get_tiktoken,
)
from toygpt.tokenizers.tiktoken_ import missing_files  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not args.corpus.is_file():
        print(f"corpus not found: {args.corpus} (pass --corpus PATH)", file=sys.stderr)
        return 1
    text = args.corpus.read_text(encoding="utf-8")
    megabytes = len(text.encode("utf-8")) / 1e6
    bpe = BPETokenizer.train(text, 1024)
    candidates = [
        ("byte", ByteTokenizer().encode),
        ("char", CharTokenizer.from_text(text).encode),
        ("bpe-1024 (tiktoken-backed)", bpe.encode),
        ("bpe-1024 (plain Python)", bpe.encode_python),
    ]
    os.environ.setdefault("TOYGPT_OFFLINE", "1")  # a benchmark must not wait on the network
    candidates += [(name, get_tiktoken(name).encode) for name in TIKTOKEN_NAMES if not missing_files(name)]
    skipped = [name for name in TIKTOKEN_NAMES if missing_files(name)]

    print(f"text: {args.corpus.name}, {megabytes:.2f} MB; median of {args.repeats} runs\n")
    print(f"{'tokenizer':30s} {'tokens':>9s} {'median s':>9s} {'MB/s':>8s} {'time / byte':>12s}")
    baseline, seconds_of = None, {}
    for name, encode in candidates:
        n_tokens = len(encode(text))  # also warms up (builds tiktoken's tables, caches regexes)
        seconds = median_seconds(lambda encode=encode: encode(text), args.repeats)
        baseline, seconds_of[name] = baseline or seconds, seconds
        print(f"{name:30s} {n_tokens:9,d} {seconds:9.3f} {megabytes / seconds:8.1f} {seconds / baseline:11.1f}x")
    ratio = seconds_of["bpe-1024 (plain Python)"] / seconds_of["bpe-1024 (tiktoken-backed)"]
    print(f"\nplain-Python BPE encoder takes {ratio:.1f}x the time of the tiktoken-backed one")
    if skipped:
        print(f"\nnot cached (not measured): {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
