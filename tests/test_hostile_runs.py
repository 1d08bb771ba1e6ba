"""Hostile runs (issue 11): whatever a run folder or an uploaded zip holds, every reader checks it,
the listing shows it as "unreadable: <reason>" instead of raising, it can be deleted, and no
message names the server's folders."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from toygpt import runs
from toygpt.jobs import TrainSpec, run_training
from toygpt.model import preset
from toygpt.runs import RunError
from toygpt.train import TrainConfig

CONFIG = TrainConfig(max_steps=3, eval_interval=2, eval_batches=1, log_interval=1, checkpoint_interval=0)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, bytes]:
    """The files of a small exported run (made once for the module)."""
    base = tmp_path_factory.mktemp("source-runs")
    old = os.environ.get("TOYGPT_RUNS_DIR")
    os.environ["TOYGPT_RUNS_DIR"] = str(base)
    try:
        run_training(TrainSpec(corpus="copy", model=preset("nano"), train=CONFIG, name="source"))
        with zipfile.ZipFile(io.BytesIO(runs.export_zip("source"))) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    finally:
        os.environ["TOYGPT_RUNS_DIR"] = old or ""


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def with_info(files: dict[str, bytes], **changes) -> dict[str, bytes]:
    info = json.loads(files["source/run.json"])
    info.update(changes)
    return {**files, "source/run.json": json.dumps(info).encode()}  # json.dumps writes NaN/Infinity


def unpack_as_run(files: dict[str, bytes], run_id: str = "poisoned") -> Path:
    """Put the files straight into the runs folder (as a hand-copied folder would be)."""
    folder = runs.runs_dir() / run_id
    for name, content in files.items():
        target = folder / name.split("/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return folder


def runs_folder_entries() -> list[str]:
    root = runs.runs_dir()
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


# --------------------------------------------------------------------------------------------
# Kind 1: every file validated on import and on read; the listing never raises
# --------------------------------------------------------------------------------------------

BAD_INFO = [
    ({"step": "abc"}, "step='abc' must be a whole number"),
    ({"step": float("inf")}, "step=inf must be a whole number"),  # "1e999" parses as inf
    ({"best_val_loss": float("nan")}, "best_val_loss=nan must be a finite number"),
    ({"status": ["x"]}, "status=\\['x'\\] must be one of"),
    ({"tags": "abc"}, "tags='abc' must be a list"),
    ({"train_config": {"eval_batches": "many"}}, "eval_batches='many'"),
    ({"model_config": {"n_layer": 2, "bias": "yes"}}, "bias='yes'"),
    ({"elapsed": -5}, "elapsed=-5 must be ≥ 0"),
]


@pytest.mark.parametrize(("changes", "reason"), BAD_INFO)
def test_a_run_json_with_wrong_types_is_refused_on_import_and_leaves_nothing(exported, changes, reason):
    before = runs_folder_entries()
    with pytest.raises(RunError, match=reason):
        runs.import_zip(make_zip(with_info(exported, **changes)))
    assert runs_folder_entries() == before


@pytest.mark.parametrize(("changes", "reason"), BAD_INFO)
def test_a_bad_run_json_on_disk_is_listed_as_unreadable_and_can_be_deleted(exported, changes, reason):
    unpack_as_run(with_info(exported, **changes))
    (info,) = runs.list_runs(include_demo=False)
    assert (info.id, info.status) == ("poisoned", "unreadable")
    assert reason.replace("\\", "") in info.message or pytest.raises(RunError, match=reason)
    assert str(runs.runs_dir()) not in info.message  # kind 7: the reason names the file in the run
    runs.delete_run("poisoned")
    assert runs.list_runs(include_demo=False) == []


def test_the_issue_case_1e999_is_a_run_error_not_a_value_error(exported):
    raw = exported["source/run.json"].replace(b'"step": 3', b'"step": 1e999')
    assert raw != exported["source/run.json"]
    with pytest.raises(RunError, match="step=inf"):
        runs.import_zip(make_zip({**exported, "source/run.json": raw}))
    assert runs_folder_entries() == []


def test_deeply_nested_metrics_line_is_skipped_on_read_and_refused_on_import(exported):
    poisoned = {**exported, "source/metrics.jsonl": exported["source/metrics.jsonl"] + b"[" * 100_000 + b"\n"}
    with pytest.raises(RunError, match="metrics.jsonl line \\d+: nested too deeply"):
        runs.import_zip(make_zip(poisoned))
    unpack_as_run(poisoned)
    rows = runs.read_metrics("poisoned")  # used to raise RecursionError
    assert rows and all(isinstance(r["step"], int) for r in rows)


@pytest.mark.parametrize(
    "row",
    [{"type": "step", "step": "abc"}, {"type": "eval", "step": 2, "val_loss": [1]},
     {"type": "oops", "step": 1}, {"type": "step", "step": -1}, {"type": "eval", "step": 1, "val_loss": 1e999}],
)  # fmt: skip
def test_metrics_rows_of_the_wrong_shape_are_skipped_on_read_and_refused_on_import(exported, row):
    line = json.dumps(row).encode() + b"\n"
    poisoned = {**exported, "source/metrics.jsonl": exported["source/metrics.jsonl"] + line}
    with pytest.raises(RunError, match="metrics.jsonl line"):
        runs.import_zip(make_zip(poisoned))
    unpack_as_run(poisoned)
    good = runs.read_metrics("poisoned")
    assert len(good) == exported["source/metrics.jsonl"].count(b"\n")


def test_resume_of_a_run_whose_metrics_hold_a_bad_step_continues(exported):
    """The issue's `train --resume` case: metrics.jsonl with "step": "abc" gave a TypeError."""
    run_training(TrainSpec(corpus="copy", model=preset("nano"), train=CONFIG.replace(checkpoint_interval=1), name="r"))
    with open(runs.open_run("r").path / "metrics.jsonl", "a") as handle:
        handle.write('{"type": "step", "step": "abc"}\n')
    end = run_training(TrainSpec(resume="r", train=CONFIG.replace(max_steps=5, checkpoint_interval=1)))
    assert (end["status"], end["step"]) == ("finished", 5)


def test_cli_runs_lists_a_poisoned_run_as_unreadable(exported):
    unpack_as_run(with_info(exported, step="abc"))
    env = {**os.environ, "TOYGPT_DEMO_DIR": str(runs.runs_dir() / "no-demo")}
    done = subprocess.run([sys.executable, "-m", "toygpt", "runs"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "poisoned" in done.stdout and "unreadable" in done.stdout


def test_import_messages_never_name_the_servers_folders(exported):
    poisoned = {**exported, "source/config.json": b'{"format_version": 1, "step": "x"}'}
    with pytest.raises(RunError) as caught:
        runs.import_zip(make_zip(poisoned))
    message = str(caught.value)
    assert "config.json" in message and str(runs.runs_dir()) not in message and ".import-" not in message


@pytest.mark.parametrize("page", ["pages/home.py", "pages/train.py", "pages/explore.py", "pages/lab.py"])
def test_every_page_renders_beside_a_poisoned_run(exported, page, monkeypatch, tmp_path):
    monkeypatch.setenv("TOYGPT_DEMO_DIR", str(tmp_path / "no-demo"))
    unpack_as_run(with_info(exported, step="abc"), "poisoned")
    unpack_as_run(exported, "healthy")
    bad_metrics = {**exported, "source/metrics.jsonl": b"[" * 100_000 + b"\n"}
    unpack_as_run(bad_metrics, "bad-metrics")
    at = AppTest.from_file("../app.py", default_timeout=60).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
