"""Background jobs: start, watch, stop, caps and refusals, failures, metrics on disk."""

from __future__ import annotations

import threading

import pytest

from tests.polling import wait_for
from toygpt import runs
from toygpt.jobs import JobRefused, JobRegistry
from toygpt.model import preset
from toygpt.pipeline import TrainSpec
from toygpt.train import TrainConfig

QUICK = TrainConfig(max_steps=30, eval_interval=10, eval_batches=2, log_interval=1, checkpoint_interval=0)



@pytest.fixture
def registry():
    registry = JobRegistry(max_jobs=1, num_threads=1)
    yield registry
    registry.clear()


def spec(**changes) -> TrainSpec:
    return TrainSpec(**{"corpus": "copy", "model": preset("nano"), "train": QUICK, **changes})


def test_job_runs_to_the_end_and_reports_everything(registry):
    job = registry.start(spec(name="bg"))
    assert job.wait(120)
    snap = job.snapshot()
    assert snap.status == "finished" and snap.done and snap.progress == 1.0
    assert snap.step == snap.max_steps == 30 and snap.run_id == "bg"
    steps = [row for row in snap.metrics if row["type"] == "step"]
    evals = [row for row in snap.metrics if row["type"] == "eval"]
    assert [row["step"] for row in steps] == list(range(1, 31)) and [e["step"] for e in evals] == [0, 10, 20, 30]
    assert snap.best_val_loss == min(e["val_loss"] for e in evals)
    assert snap.tokens_per_s > 0 and snap.eta == 0
    on_disk = [r for r in runs.read_metrics("bg") if r["type"] in ("step", "eval")]
    assert [(r["type"], r["step"]) for r in on_disk] == [(r["type"], r["step"]) for r in snap.metrics]
    assert registry.get(job.id) is job and registry.active() == []


def test_stop_ends_the_job_and_keeps_a_resumable_run(registry):
    job = registry.start(spec(train=QUICK.replace(max_steps=100_000), name="stoppable"))
    wait_for(lambda: job.snapshot().step >= 3)
    job.stop()
    assert job.status in ("stopping", "stopped")
    assert job.wait(60)
    snap = job.snapshot()
    assert snap.status == "stopped" and snap.step < 100_000
    assert runs.open_run("stoppable").training_state()[0].step == snap.step


def test_second_job_is_refused_while_one_runs(registry):
    first = registry.start(spec(train=QUICK.replace(max_steps=100_000)))
    with pytest.raises(JobRefused, match=r"1 training job\(s\) already running \(the limit is 1\)"):
        registry.start(spec())
    first.stop()
    assert first.wait(60)
    second = registry.start(spec(train=QUICK.replace(max_steps=2)))  # a finished job frees the slot
    assert second.wait(60) and second.status == "finished"


def test_memory_cap_refuses_with_a_reason():
    registry = JobRegistry(max_memory_bytes=50 * 2**20)
    big = spec(model=preset("gpt2"), tokenizer="gpt2")
    with pytest.raises(JobRefused, match=r"needs about \d+\.\d GiB .* above the 50\.0 MiB one job may use here; choose a smaller"):
        registry.start(big)
    assert registry.jobs() == []


def test_unknown_resume_is_refused_before_starting(registry):
    with pytest.raises(JobRefused, match="no run 'ghost'"):
        registry.start(TrainSpec(resume="ghost"))


def test_failures_are_reported_not_raised(registry):
    job = registry.start(spec(corpus="no-such-corpus"))
    assert job.wait(30)
    snap = job.snapshot()
    assert snap.status == "failed" and "unknown corpus 'no-such-corpus'" in snap.message
    assert snap.error_detail  # the traceback, for a "details" expander


def test_block_size_too_long_for_text_fails_with_the_fix(registry):
    job = registry.start(spec(corpus_text="tiny text " * 20, corpus="mine"))
    assert job.wait(30)
    assert job.status == "failed" and "Use block_size ≤" in job.snapshot().message


def test_clear_stops_everything(registry):
    job = registry.start(spec(train=QUICK.replace(max_steps=100_000)))
    wait_for(lambda: job.snapshot().step >= 1)
    registry.clear()
    assert job.done and registry.jobs() == []


def test_training_runs_on_a_daemon_thread(registry, monkeypatch):
    from toygpt import jobs

    seen = []
    real = jobs.run_training

    def recording(*args, **kwargs):
        seen.append((threading.current_thread().name, threading.current_thread().daemon))
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "run_training", recording)
    job = registry.start(spec(train=QUICK.replace(max_steps=2)))
    assert job.wait(60) and job.status == "finished"
    assert seen == [(f"toygpt-train-{job.id}", True)]


@pytest.mark.parametrize(
    ("changes", "message"),
    [(dict(tags=("",)), "tag ''"), (dict(tags=("x" * 41,)), "at most 40"), (dict(init_from="a", resume="b"), "not both"),
     (dict(corpus_text="  "), "corpus_text is empty"), (dict(model="small"), "GPTConfig")],
)  # fmt: skip
def test_bad_specs_name_the_fix(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainSpec(**changes)


def test_a_refused_config_leaves_no_run_behind():
    from toygpt.pipeline import run_training

    with pytest.raises(ValueError, match="block_size=64 is longer than the model's block_size=32"):
        run_training(spec(train=QUICK.replace(block_size=64)))
    assert runs.list_runs(include_demo=False) == []
