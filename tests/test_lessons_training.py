"""toygpt.lessons.training: the rules the Training and Runs pages used to decide themselves."""

from __future__ import annotations

import doctest
import math

import toygpt.lessons.training as training
from toygpt.jobs import TrainStatus
from toygpt.limits import MemoryBudgetError
from toygpt.model import GPTConfig, preset, total_parameters
from toygpt.runs import RunInfo
from toygpt.status import Status
from toygpt.train import TrainConfig


def info(run_id: str, status: str = "finished", read_only: bool = False, steps: int = 10) -> RunInfo:
    config = GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=1, n_embd=8).to_dict()
    return RunInfo(id=run_id, name=run_id, corpus="copy", tokenizer="char", model_config=config, train_config={},
                   steps=steps, best_val_loss=2.5, created="c", updated="u", tags=(), status=status,
                   read_only=read_only)  # fmt: skip


def test_startable_runs_leave_out_busy_unreadable_and_for_a_resume_read_only_runs():
    infos = [info("a"), info("busy"), info("broken", status=Status.UNREADABLE), info("demo", read_only=True)]
    assert training.startable_runs(infos, {"busy"}, writable=False) == ["a", "demo"]  # fine-tune the demo
    assert training.startable_runs(infos, {"busy"}, writable=True) == ["a"]  # resume writes into the run


def test_step_pace_prefers_the_runs_own_pace_then_a_probe_then_none(monkeypatch):
    small, config = preset("nano", vocab_size=32), TrainConfig(max_seconds=30.0)
    probed = []
    pace = training.step_pace(small, config, None, lambda m, c: probed.append(c) or 0.05, threads=1)
    assert pace.seconds == 0.05 and "20.0 steps/s" in pace.source and "1 thread a job" in pace.source
    assert probed[0].max_steps == 1 and probed[0].max_seconds is None  # the probe is a few steps, not the run
    monkeypatch.setattr(training, "read_metrics", lambda run_id: [{"type": "step", "step": 5, "ms_per_step": 40.0}])
    monkeypatch.setattr(training, "recent_step_seconds", lambda rows: 0.04)
    own = training.step_pace(small, config, "my-run", lambda m, c: 99.0, threads=1)
    assert own.seconds == 0.04 and own.source.startswith("my-run's own pace")
    huge = preset("gpt2", vocab_size=50257)
    assert total_parameters(huge) > training.PROBE_MAX_PARAMS
    assert training.step_pace(huge, config, None, lambda m, c: 1.0, threads=1) == training.Pace(None)

    def too_big(model, cfg):
        raise MemoryBudgetError("no room")

    assert training.step_pace(small, config, None, too_big, threads=1).seconds is None


def test_a_row_of_a_run_in_training_shows_the_jobs_figures_and_says_so():
    busy, idle = info("busy", status="running", steps=0), info("idle")
    live = {"busy": TrainStatus(job_id="j", kind="train", title="t", summary="s", status=Status.RUNNING, step=320,
                                best_val_loss=1.5, elapsed=65.0, run_id="busy")}  # fmt: skip
    rows = {row["run"]: row for row in training.run_rows([busy, idle], live, as_of="12:00:00")}
    assert rows["busy"]["steps"] == 320 and rows["busy"]["best val loss"] == 1.5
    assert rows["busy"]["status"] == "running (as of 12:00:00; live on the Training page)"
    assert rows["busy"]["training time"] == "1:05"
    assert rows["idle"]["steps"] == 10 and rows["idle"]["status"] == "finished"
    assert rows["idle"]["model"] == "1L × 1H × 8, context 16" and rows["idle"]["parameters"] > 0
    assert training.shape_text({}) == "?" and training.parameters_of({"n_layer": "x"}) is None


def test_steps_per_second_reads_the_latest_step_row():
    rows = [{"type": "step", "ms_per_step": 100.0}, {"type": "eval"}, {"type": "step", "ms_per_step": 50.0}]
    assert math.isclose(training.steps_per_second(rows), 20.0)
    assert training.steps_per_second([{"type": "eval"}]) is None


def test_vocab_size_follows_the_name_or_the_text():
    assert training.vocab_size_of("bpe-512", "anything") == 512
    assert training.vocab_size_of("char", "abcab") == 3


def test_docstring_examples_hold():
    result = doctest.testmod(training)
    assert result.attempted >= 1 and result.failed == 0
