"""One typed job contract: every background job reports a ``JobStatus`` (a training job a
``TrainStatus``, a lab experiment a ``LabStatus``), the registry holds ``BackgroundJob``s, no job
fakes another's fields, and the Training and Lab pages draw their jobs with one panel."""

from __future__ import annotations

import ast
import math
import time
import typing
from dataclasses import fields
from pathlib import Path

from toygpt import lab
from toygpt.jobs import BackgroundJob, JobRegistry, JobStatus, TrainStatus
from toygpt.model import preset
from toygpt.pipeline import TrainSpec, curve_rows
from toygpt.status import Status
from toygpt.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent


def test_training_and_lab_jobs_report_one_status_type():
    registry = JobRegistry(max_jobs=2, num_threads=1)
    try:
        train = registry.start(TrainSpec(corpus="copy", model=preset("nano"), name="contract",
                                         train=TrainConfig(max_steps=4, eval_interval=2, eval_batches=1, log_interval=1)))  # fmt: skip
        assert train.wait(120)
        experiment = registry.start_job(lab.LabJob("positions", lab.tiny_params("positions", steps=4), save=False))
        assert experiment.wait(120)
        statuses = [job.snapshot() for job in registry.jobs()]
    finally:
        registry.clear()
    assert [type(s) for s in statuses] == [TrainStatus, lab.LabStatus]
    assert all(isinstance(s, JobStatus) and s.status is Status.FINISHED and s.done for s in statuses)
    trained, measured = statuses
    assert trained.kind == "train" and trained.run_id == "contract" and trained.step == 4
    assert trained.curves == {"contract": curve_rows(trained.metrics)}  # the chart is the trainer's own events
    assert measured.kind == "lab" and measured.title == "Positional encodings"
    assert set(measured.curves) == {"learned", "sinusoidal", "none"}


def test_a_lab_status_has_no_training_fields():
    """LabJob used to fake twelve of TrainJob's keys (step, loss, samples, ...) as None."""
    common = {f.name for f in fields(JobStatus)}
    assert {f.name for f in fields(lab.LabStatus)} - common == {"experiment"}
    assert {"step", "loss", "best_val_loss", "samples", "tokens_per_s"} <= {f.name for f in fields(TrainStatus)} - common


def test_the_registry_is_typed_over_the_base_job():
    hints = typing.get_type_hints(JobRegistry.start_job)
    assert hints["job"] is BackgroundJob and hints["return"] is BackgroundJob
    assert typing.get_type_hints(JobRegistry.get)["return"] == BackgroundJob | None


def test_curve_rows_keep_finite_losses_in_step_order():
    events = [{"type": "eval", "step": 0, "val_loss": 4.1744444444}, {"type": "step", "step": 1, "loss": 4.0},
              {"type": "step", "step": 2, "loss": math.nan}, {"type": "sample", "step": 2, "text": "x"},
              {"type": "eval", "step": 2, "val_loss": math.inf}]  # fmt: skip
    assert curve_rows(events) == [{"step": 0, "val_loss": 4.17444}, {"step": 1, "train_loss": 4.0}]


def _page(name: str) -> ast.Module:
    return ast.parse((ROOT / "pages" / name).read_text(encoding="utf-8"))


def test_the_training_and_lab_pages_use_the_one_job_panel():
    for name in ("train.py", "lab.py"):
        tree = _page(name)
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert {"job_panel", "pinned_job", "pin_job"} <= calls, name
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert not defined & {"pin", "unpin", "live_job", "job_box", "draw_job", "curve_rows", "describe_job"}, name
        fragments = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                     and any("fragment" in ast.unparse(d) for d in n.decorator_list)]  # fmt: skip
        assert fragments == [], f"{name} draws its own live job fragment: {fragments}"


def test_no_page_branches_on_a_jobs_kind():
    for name in ("train.py", "lab.py", "_shared.py"):
        source = (ROOT / "pages" / name).read_text(encoding="utf-8")
        assert 'get("kind")' not in source and '["kind"]' not in source and "isinstance(j" not in source, name


def test_a_finished_jobs_clock_stops():
    job = lab.LabJob("positions", lab.tiny_params("positions", steps=2), save=False).start()
    assert job.wait(120)
    first = job.snapshot().elapsed
    time.sleep(0.05)
    assert job.snapshot().elapsed == first > 0
