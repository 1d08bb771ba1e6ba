"""Every subcommand, driven through a table of bad values (issue 11, kind 6): each ends with one
line on stderr that says what is wrong, a non-zero exit status, and never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from toygpt.__main__ import main
from toygpt.model import preset
from toygpt.pipeline import TrainSpec, run_training
from toygpt.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_id() -> str:
    run_training(TrainSpec(corpus="copy", model=preset("nano"), name="cli",
                           train=TrainConfig(max_steps=2, eval_interval=1, eval_batches=1)))  # fmt: skip
    return "cli"


def cases(tmp: Path) -> list[tuple[list[str], str]]:
    folder, afile = tmp / "a-folder", tmp / "a-file.txt"
    folder.mkdir(exist_ok=True)
    afile.write_text("hello")
    return [
        # train: every number typed and ranged, paths checked, configs refused before allocation
        (["train", "--batch-size", "1e9"], "argument --batch-size: '1e9' is not a whole number"),
        (["train", "--batch-size", "1000000000"], "argument --batch-size: 1000000000 is not in [1, 4,096]"),
        (["train", "--n-embd", "65536"], "argument --n-embd: 65536 is not in [1, 32,768]"),
        (["train", "--n-layer", "100000"], "argument --n-layer: 100000 is not in [1, 256]"),
        (["train", "--n-embd", "32768", "--n-head", "8", "--corpus", "copy", "--max-steps", "1"], "this run needs about"),
        (["train", "--lr", "nan"], "argument --lr: nan is not in"),
        (["train", "--dropout", "1"], "argument --dropout: 1 is not in [0, 1)"),
        (["train", "--max-seconds", "inf"], "argument --max-seconds: inf is not in"),
        (["train", "--eval-batches", "0"], "argument --eval-batches: 0 is not in [1, 10,000]"),
        (["train", "--sample-tokens", "1000000000"], "argument --sample-tokens: 1000000000 is not in [1, 10,000]"),
        (["train", "--seed", "-1"], "argument --seed: -1 is not in"),
        (["train", "--text", "/dev/zero"], "argument --text: /dev/zero: not a regular file"),
        (["train", "--text", str(folder)], "not a regular file"),
        (["train", "--text", str(tmp / "missing.txt")], "no such file"),
        (["train", "--device", "tpu", "--max-steps", "1"], "device='tpu'"),
        (["train", "--resume", "no-such-run"], "there is no run 'no-such-run'"),
        (["train", "--tokenizer", "bpe-abc", "--corpus", "copy"], "bpe-abc"),
        # sample
        (["sample", "--run", "cli", "--max-tokens", "-1"], "argument --max-tokens: -1 is not in [0, "),
        (["sample", "--run", "cli", "--temperature", "-1"], "argument --temperature: -1 is not in [0, 100]"),
        (["sample", "--run", "cli", "--top-p", "0"], "argument --top-p: 0 is not in (0, 1]"),
        (["sample", "--run", "cli", "--top-k", "0"], "argument --top-k: 0 is not in"),
        (["sample", "--run", "cli", "--seed", "x"], "argument --seed: 'x' is not a whole number"),
        (["sample", "--run", "/dev/zero"], "no such run folder"),
        (["sample", "--run", "no-such-run"], "there is no run"),
        # runs
        (["runs", "pack", "cli", str(tmp / "pack"), "--metrics-every", "0"], "argument --metrics-every: 0 is not in"),
        (["runs", "eval", "cli", "--batches", "0"], "argument --batches: 0 is not in [1, 10,000]"),
        (["runs", "eval", "cli", "--batches", "-1"], "argument --batches: -1 is not in"),
        (["runs", "import", "/dev/zero"], "argument path: /dev/zero: not a regular file"),
        (["runs", "import", str(afile)], "not a zip file"),
        (["runs", "export", "cli", str(tmp / "nowhere" / "x.zip")], "does not exist"),
        (["runs", "export", "cli", str(folder)], "is a folder"),
        (["runs", "export-hf", "cli", str(afile)], "is a file, not a folder"),
        (["runs", "delete", "../etc"], "is not a run id"),
        (["runs", "frobnicate"], "invalid choice"),
        # tokenize
        (["tokenize", "--corpus", "/dev/zero", "-t", "char", "x"], "argument --corpus: /dev/zero: not a regular file"),
        (["tokenize", "-t", "bpe-abc", "x"], "bpe-abc"),
        # data
        (["data", "show", "copy", "--lines", "-1"], "argument --lines: -1 is not in"),
        (["data", "show", "copy", "--seed", "1.5"], "argument --seed: '1.5' is not a whole number"),
        (["data", "show", "no-such-corpus"], "no-such-corpus"),
        (["data", "add", "shakespeare", "/dev/zero"], "not a regular file"),
        # lab
        (["lab", "scaling", "--doublings", "1"], "argument --doublings: 1 is not in [2, 30]"),
        (["lab", "scaling", "--batch-size", "0"], "argument --batch-size: 0 is not in [1, 1,024]"),
        (["lab", "scaling", "--max-compute", "nan"], "argument --max-compute: nan is not in"),
        (["lab", "frobnicate"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ]


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse: exit status 2
        code = exit_.code
    return code, capsys.readouterr().err


def test_every_subcommand_refuses_bad_values_in_one_line(run_id, tmp_path, capsys):
    failures = []
    for argv, expected in cases(tmp_path):
        code, err = run_main(argv, capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        if code == 0 or len(lines) != 1 or expected not in err or "Traceback" in err:
            failures.append(f"{argv}: exit {code}, stderr {err!r}")
    assert failures == []


def test_in_a_real_process_no_traceback_reaches_the_terminal(tmp_path):
    commands = [
        (["train", "--batch-size", "1e9"], None),
        (["runs", "eval", "demo-shakespeare-char", "--batches", "0"], None),
        (["tokenize", "-t", "char"], "/dev/zero"),  # stdin without end: refused after 10 M characters
    ]
    for argv, stdin in commands:
        with open(stdin or "/dev/null", "rb") as source:
            done = subprocess.run([sys.executable, "-m", "toygpt", *argv], stdin=source, capture_output=True,
                                  text=True, cwd=ROOT, timeout=120)  # fmt: skip
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode != 0 and len(lines) == 1 and "Traceback" not in done.stderr, (argv, done.stderr)


def test_python_m_toygpt_lets_openmp_threads_sleep_unless_told_otherwise():
    """Spinning OpenMP threads collapse when anything else wants the cores (a 15 s budget trained
    0-2 steps spinning, 84-113 sleeping, under load here): ``python -m toygpt`` sets
    OMP_WAIT_POLICY=PASSIVE before torch loads, and keeps a value the user set."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    probe = ("import os, runpy, sys\n"
             "sys.argv = ['toygpt', 'tokenize', '--tokenizer', 'byte', 'hi']\n"
             "try:\n    runpy.run_module('toygpt', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print(os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}

    def run(code: str, **extra: str) -> str:
        done = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, cwd=root,
                              capture_output=True, text=True, check=True)
        return done.stdout.split()[-1]

    assert run(probe) == "PASSIVE"
    assert run(probe, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    # it is set in time: the command line's module loads no torch (OpenMP reads it when torch loads)
    assert run("import sys, toygpt.__main__; print('torch' in sys.modules)") == "False"
