"""Jobs in their own process (``JobRegistry(worker=WorkerSettings())``, what the dashboard uses):
the same status as a job on a thread, Stop (twice) saves the run, a killed worker is a failure
with a message, the server going away stops and saves its worker, lab experiments run the same
way, and the job crosses the process boundary as JSON (never pickle)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.polling import wait_for
from toygpt import lab, runs
from toygpt.job_process import WorkerSettings, signal_name
from toygpt.jobs import JobRegistry
from toygpt.lab.job import params_from_dict, params_to_dict
from toygpt.model import preset
from toygpt.pipeline import TrainSpec
from toygpt.status import Status
from toygpt.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
QUICK = TrainConfig(max_steps=30, eval_interval=10, eval_batches=2, log_interval=1, checkpoint_interval=0)
LONG = QUICK.replace(max_steps=100_000, eval_interval=1_000)
START_S = 120  # a worker imports torch before its first step: slow on busy cores


@pytest.fixture
def registry():
    registry = JobRegistry(max_jobs=1, num_threads=1, worker=WorkerSettings(nice=5))
    yield registry
    registry.clear()


def spec(**changes) -> TrainSpec:
    return TrainSpec(**{"corpus": "copy", "model": preset("nano"), "train": QUICK, **changes})


def test_a_worker_job_reports_what_a_thread_job_reports(registry):
    job = registry.start(spec(name="in-a-process"))
    assert job.wait(START_S)
    snap = job.snapshot()
    assert snap.status == "finished" and snap.message == "reached max_steps=30" and snap.progress == 1.0
    assert snap.step == snap.max_steps == 30 and snap.run_id == "in-a-process" and snap.started
    steps = [row["step"] for row in snap.metrics if row["type"] == "step"]
    assert steps == list(range(1, 31)) and [r["step"] for r in snap.metrics if r["type"] == "eval"] == [0, 10, 20, 30]
    on_disk = [r for r in runs.read_metrics("in-a-process") if r["type"] in ("step", "eval")]
    assert [(r["type"], r["step"], r.get("loss")) for r in on_disk] == [(r["type"], r["step"], r.get("loss")) for r in snap.metrics]
    assert snap.curves == {"in-a-process": snap.curves["in-a-process"]} and snap.curves["in-a-process"]
    assert runs.open_run("in-a-process").info()["status"] == "finished"
    assert job.worker_pid is not None and job.worker_pid != os.getpid()


def test_progress_shows_while_the_worker_trains_and_it_runs_niced(registry):
    job = registry.start(spec(train=LONG, name="watched"))
    wait_for(lambda: job.snapshot().step >= 3, START_S)
    snap = job.snapshot()
    assert snap.status == "running" and not snap.done and snap.run_id == "watched"
    assert snap.loss is not None and snap.tokens_per_s > 0 and snap.stage.startswith("step ")
    assert registry.training_runs() == {"watched"}  # so the runs list says "running", not "interrupted"
    assert os.getpriority(os.PRIO_PROCESS, job.worker_pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)
    job.stop()
    assert job.wait(60)


def test_stop_pressed_twice_saves_a_resumable_run_within_seconds(registry):
    job = registry.start(spec(train=LONG, name="stoppable"))
    wait_for(lambda: job.snapshot().step >= 3, START_S)
    job.stop()
    job.stop()  # a second press changes nothing
    assert job.status in ("stopping", "stopped")
    assert job.wait(30), "Stop did not end the worker"
    snap = job.snapshot()
    assert snap.status == "stopped" and "stopped at step" in snap.message and 3 <= snap.step < 100_000
    assert runs.open_run("stoppable").training_state()[0].step == snap.step
    assert runs.open_run("stoppable").info()["status"] == "stopped"


def test_stop_while_the_worker_starts_is_not_lost(registry):
    job = registry.start(spec(train=LONG, name="early"))
    job.stop()  # before its process has even imported torch
    assert job.wait(START_S)
    assert job.status == "stopped" and job.snapshot().step < 100_000


def test_a_killed_worker_is_a_failure_with_a_message_not_a_hang(registry):
    job = registry.start(spec(train=LONG, name="killed"))
    wait_for(lambda: job.snapshot().step >= 2, START_S)
    os.kill(job.worker_pid, signal.SIGKILL)
    assert job.wait(30)
    snap = job.snapshot()
    assert snap.status == "failed" and snap.done
    assert snap.message.startswith("the job's process killed by SIGKILL (out of memory, or kill -9?)")
    assert runs.open_run("killed").info()["status"] == "failed"  # not "running" forever
    second = registry.start(spec(train=QUICK.replace(max_steps=2)))  # the slot is free again
    assert second.wait(START_S) and second.status == "finished"


def test_a_failure_inside_the_worker_keeps_the_librarys_message(registry):
    job = registry.start(spec(corpus="no-such-corpus"))
    assert job.wait(START_S)
    snap = job.snapshot()
    assert snap.status == "failed" and "unknown corpus 'no-such-corpus'" in snap.message
    assert "Traceback" in snap.error_detail


def test_the_server_going_away_stops_its_worker_and_saves_the_run(isolated_dirs):
    """A server killed (or restarted) while a worker trains: the worker sees its stdin end,
    stops after its step and saves, so the run is "stopped" (resumable), never "running" forever."""
    server = textwrap.dedent("""
        import sys, time
        from toygpt.jobs import JobRegistry
        from toygpt.pipeline import TrainSpec
        from toygpt.job_process import WorkerSettings
        from toygpt.model import preset
        from toygpt.train import TrainConfig
        registry = JobRegistry(num_threads=1, worker=WorkerSettings())
        config = TrainConfig(max_steps=100_000, eval_interval=1_000, eval_batches=2, log_interval=1, checkpoint_interval=0)
        job = registry.start(TrainSpec(corpus="copy", model=preset("nano"), train=config, name="orphan"))
        while job.snapshot().step < 3:
            time.sleep(0.05)
        print(job.worker_pid, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", server], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    try:
        worker = int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: runs.open_run("orphan").info()["status"] != "running", timeout=60)
    run = runs.open_run("orphan")
    assert run.info()["status"] == "stopped" and run.training_state()[0].step >= 3
    wait_for(lambda: not Path(f"/proc/{worker}").exists() or " Z " in Path(f"/proc/{worker}/stat").read_text(), timeout=30)


def test_a_lab_experiment_runs_in_a_worker_too():
    registry = JobRegistry(max_jobs=1, num_threads=1, worker=WorkerSettings())
    try:
        job = registry.start_job(lab.LabJob("positions", lab.tiny_params("positions", steps=4), worker=registry.worker))
        assert job.wait(START_S)
    finally:
        registry.clear()
    snap = job.snapshot()
    assert snap.status == Status.FINISHED and snap.kind == "lab" and snap.run_id and job.worker_pid
    assert set(snap.curves) == {"learned", "sinusoidal", "none"} and snap.progress == 1.0
    assert snap.message == lab.reading(job.result)  # the result, read back from the run it saved
    assert [info.id for info in lab.lab_runs("positions")] == [snap.run_id]


def test_a_lab_experiment_in_a_worker_stops_and_saves_nothing():
    job = lab.LabJob("positions", lab.tiny_params("positions", steps=5000), worker=WorkerSettings()).start()
    wait_for(lambda: job.snapshot().progress > 0, START_S)
    job.stop()
    assert job.wait(60)
    assert job.status == "stopped" and job.snapshot().run_id is None and lab.lab_runs() == []


@pytest.mark.parametrize("name", list(lab.EXPERIMENTS))
def test_every_experiments_params_cross_as_json(name):
    params = lab.tiny_params(name)
    assert params_from_dict(name, json.loads(json.dumps(params_to_dict(params)))) == params


def test_a_train_spec_crosses_as_json():
    fine_tune = TrainConfig(train_last_blocks=1, learning_rate=1.234567891e-4, betas=(0.9, 0.95))
    specs = [spec(name="a", tags=("x", "y"), corpus_text="some text " * 50, corpus="mine"), TrainSpec(resume="r1"),
             TrainSpec(init_from="pretrained:gpt2", train=fine_tune)]  # fmt: skip
    for one in specs:
        assert TrainSpec.from_dict(json.loads(json.dumps(one.to_dict()))) == one


def test_worker_settings_and_exit_words():
    with pytest.raises(ValueError, match="nice=20; choose a whole number from 0"):
        WorkerSettings(nice=20)
    assert signal_name(-9) == "killed by SIGKILL (out of memory, or kill -9?)"
    assert signal_name(-15) == "killed by SIGTERM" and signal_name(1) == "exited with code 1"


@pytest.mark.parametrize(("argv", "stdin"), [(["nonsense"], ""), (["--nice", "x"], ""), ([], "{}\n"),
                                             ([], '{"kind": "shell", "job": {}}\n'), ([], "not json\n")])  # fmt: skip
def test_the_worker_refuses_a_bad_request_with_a_usage_line(argv, stdin):
    done = subprocess.run([sys.executable, "-m", "toygpt.worker", *argv], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "usage: python -m toygpt.worker [--nice N], then one JSON line" in done.stderr
    assert json.loads(done.stdout.splitlines()[0])["type"] == "ready" and len(done.stdout.splitlines()) == 1


def test_a_spare_worker_nobody_needs_just_ends():
    done = subprocess.run([sys.executable, "-m", "toygpt.worker", "--nice", "3"], cwd=ROOT, input="",
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stderr == ""


def test_a_spare_worker_takes_the_next_job_with_the_servers_settings_of_now(tmp_path, monkeypatch):
    registry = JobRegistry(max_jobs=1, num_threads=1, worker=WorkerSettings(spare=True))
    try:
        spare = registry._spare.process.pid
        monkeypatch.setenv("TOYGPT_RUNS_DIR", str(tmp_path / "runs-set-later"))  # after the spare started
        job = registry.start(spec(name="warm"))
        assert job.worker_pid == spare
        assert job.wait(START_S) and job.status == "finished"
        assert (tmp_path / "runs-set-later" / "warm" / "run.json").is_file()
        wait_for(lambda: registry._spare is not None, START_S)  # the next one is started once this job ends
        assert registry._spare.process.pid != spare and registry._spare.waiting
    finally:
        registry.close()
    assert registry._spare is None


def test_the_app_trains_in_worker_processes():
    from pages._shared import job_registry

    registry = job_registry()
    assert registry.worker is not None and registry.worker.nice > 0 and registry.num_threads == 2


def test_a_worker_that_ignores_stop_is_killed_and_the_slot_freed():
    registry = JobRegistry(max_jobs=1, num_threads=1, worker=WorkerSettings(kill_after_s=1.0))
    try:
        job = registry.start(spec(train=LONG, name="frozen"))
        wait_for(lambda: job.snapshot().step >= 2, START_S)
        os.kill(job.worker_pid, signal.SIGSTOP)  # a worker stuck in a C call never reaches its next check
        job.stop()
        assert job.wait(30)
        snap = job.snapshot()
        assert snap.status == "stopped" and "did not end within 1 s of Stop, so it was ended" in snap.message
        assert registry.active() == []
        info = next(i for i in runs.list_runs() if i.id == "frozen")  # killed mid-step: resumes from its last save
        assert runs.status_now(info, registry.training_runs()) == "interrupted"
    finally:
        registry.clear()
