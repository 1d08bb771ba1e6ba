"""The train, runs and data commands, run in-process through ``python -m toygpt``'s main()."""

from __future__ import annotations

import signal

import pytest

from toygpt import runs
from toygpt.__main__ import main

NANO = ["--corpus", "copy", "--preset", "nano", "--eval-interval", "5", "--eval-batches", "2", "--device", "cpu"]


def test_train_prints_progress_and_a_summary(capsys):
    handler = signal.getsignal(signal.SIGINT)
    assert main(["train", *NANO, "--max-steps", "10", "--name", "cli run", "--tag", "demo"]) == 0
    out = capsys.readouterr().out
    assert "training on cpu" in out and "step      5: train loss" in out
    assert "finished: reached max_steps=10" in out and "run: cli-run" in out and "best val loss" in out
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C handling is put back
    info = runs.open_run("cli-run").info()
    assert info["tags"] == ["demo"] and info["train_config"]["max_steps"] == 10


def test_resume_extends_a_run_and_runs_lists_it(capsys):
    assert main(["train", *NANO, "--max-steps", "6", "--name", "grow", "--lr", "0.002"]) == 0
    assert main(["train", "--resume", "grow", "--max-steps", "12"]) == 0
    run = runs.open_run("grow")
    assert run.training_state()[0].step == 12
    assert run.train_config().learning_rate == 0.002  # kept from the run; only max_steps changed
    capsys.readouterr()
    assert main(["runs"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:6] == ["ID", "CORPUS", "TOKENIZER", "MODEL", "STEPS", "BEST"]
    row = next(line for line in table.splitlines() if line.startswith("grow"))
    assert " 12 " in row and f"{run.info()['best_val_loss']:.4f}" in row


def test_init_from_checks_the_tokenizer_fits(capsys):
    assert main(["train", *NANO, "--max-steps", "2", "--name", "letters"]) == 0
    assert main(["train", "--init-from", "letters", "--corpus", "addition", "--max-steps", "2"]) == 1
    assert "letters's tokenizer cannot encode this corpus" in capsys.readouterr().err
    assert [i.id for i in runs.list_runs(include_demo=False)] == ["letters"]  # no half-made run


def test_fine_tune_on_a_corpus_with_the_same_characters(capsys):
    assert main(["train", *NANO, "--max-steps", "3", "--name", "base", "--corpus", "sort"]) == 0
    assert main(["train", "--init-from", "base", "--corpus", "sort", "--corpus-seed", "7", "--max-steps", "3",
                 "--eval-batches", "2", "--name", "tuned"]) == 0  # fmt: skip
    assert runs.open_run("tuned").info()["init_from"] == "base"


def test_own_text_and_its_errors(tmp_path, capsys):
    text = tmp_path / "mine.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    assert main(["train", "--text", str(text), "--preset", "nano", "--max-steps", "2", "--eval-batches", "2"]) == 0
    assert (runs.runs_dir() / next(i.id for i in runs.list_runs(include_demo=False)) / "corpus.txt").exists()
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café ".encode("latin-1") * 100)
    assert main(["train", "--text", str(latin), "--preset", "nano"]) == 1
    assert "not UTF-8 text" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # refused while parsing, in one line
        main(["train", "--corpus", "copy", "--preset", "nano", "--lr", "-1"])
    assert exit_.value.code == 2 and "argument --lr: -1 is not in [1e-09, 10]" in capsys.readouterr().err


def test_diverged_run_exits_nonzero(capsys):
    code = main(["train", *NANO, "--max-steps", "100", "--lr", "10", "--weight-decay", "1", "--warmup-steps", "0"])
    assert code == 3 and "diverged" in capsys.readouterr().out


def test_data_and_runs_commands(tmp_path, capsys):
    assert main(["data", "list"]) == 0
    assert "shakespeare" in capsys.readouterr().out
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not it")
    assert main(["data", "add", "shakespeare", str(wrong)]) == 1
    assert "sha256" in capsys.readouterr().err
    assert main(["data", "show", "addition", "--lines", "2"]) == 0
    assert "+" in capsys.readouterr().out
    assert main(["train", *NANO, "--max-steps", "2", "--name", "shipme"]) == 0
    assert main(["runs", "eval", "shipme", "--batches", "2"]) == 0
    assert "shipme (latest weights), 2 batches of 12: train loss" in capsys.readouterr().out
    archive = tmp_path / "run.zip"
    assert main(["runs", "export", "shipme", str(archive)]) == 0
    assert main(["runs", "import", str(archive), "--name", "copy of it"]) == 0
    assert "imported as run copy-of-it" in capsys.readouterr().out
    assert main(["runs", "delete", "copy-of-it"]) == 0
    assert main(["runs", "delete", "../shipme"]) == 1
    assert "is not a run id" in capsys.readouterr().err
