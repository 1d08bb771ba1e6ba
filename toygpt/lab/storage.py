"""Saving a fresh result as a run tagged ``lab:<experiment>`` (numbers in ``lab.json``) and
reopening saved results."""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from toygpt.checkpoint import CheckpointError, read_json, write_json_atomic
from toygpt.lab.registry import EXPERIMENTS, experiment_of, reading
from toygpt.lab.setup import LabError, plain
from toygpt.lab.variants import Artifacts
from toygpt.runs import RESULT_ONLY_TAG, RunInfo, create_run, list_runs, open_run
from toygpt.status import Status
from toygpt.train import Event

LAB_FILE = "lab.json"  # the numbers of a saved experiment, beside the run's usual files
TAG_PREFIX = "lab:"
FORMAT_VERSION = 1


def result_to_dict(result: Any) -> dict[str, Any]:
    """The saved part of a result (everything but ``artifacts``), JSON-friendly."""
    return {f.name: plain(getattr(result, f.name)) for f in fields(result) if f.name != "artifacts"}


def save_result(result: Any) -> str:
    """Keep a fresh result as a new run tagged ``lab:<experiment>``: the run's weights are the
    experiment's model (e.g. the changed copy for single-example learning), ``lab.json`` holds
    the numbers and the reading. Returns the run id."""
    artifacts: Artifacts | None = getattr(result, "artifacts", None)
    if artifacts is None:
        raise LabError("this result has no model attached (a reopened result is already saved)")
    spec = experiment_of(result)
    run = create_run(
        name=f"lab {spec.name} {time.strftime('%Y%m%d-%H%M%S')}", corpus=artifacts.corpus,
        tokenizer_spec=artifacts.tokenizer_spec, tokenizer=artifacts.tokenizer, model=artifacts.model,
        train_config=artifacts.train_config, tags=(TAG_PREFIX + spec.name,) + (() if spec.keeps_model else (RESULT_ONLY_TAG,)),
        corpus_text=artifacts.corpus_text,
        init_from=artifacts.init_from,
    )  # fmt: skip
    text = reading(result)
    write_json_atomic(run.path / LAB_FILE, {"format_version": FORMAT_VERSION, "experiment": spec.name,
                                            "result": result_to_dict(result), "reading": text})  # fmt: skip
    for event in artifacts.events:
        if event.get("type") in ("step", "eval", "start"):
            run.on_event(event)
    run.update_info(status=Status.FINISHED, message=text[:300], step=int(artifacts.events[-1].get("step", 0)) if artifacts.events else 0,
                    best_val_loss=_primary_loss(artifacts.events))  # fmt: skip
    return run.id


def _primary_loss(events: list[Event]) -> float | None:
    losses = [e["val_loss"] for e in events if e.get("type") == "eval" and isinstance(e.get("val_loss"), float)]
    return min(losses) if losses else None


def is_lab_run(info: RunInfo, experiment: str | None = None) -> bool:
    tags = [t for t in info.tags if t.startswith(TAG_PREFIX)]
    return bool(tags) and (experiment is None or TAG_PREFIX + experiment in tags)


def lab_runs(experiment: str | None = None) -> list[RunInfo]:
    """Saved lab results (newest first), of one experiment or all."""
    return [info for info in list_runs(include_demo=False) if is_lab_run(info, experiment) and (Path(info.path) / LAB_FILE).exists()]


def load_result(run_id: str) -> Any:
    """Reopen a saved result. Raises ``LabError`` (or ``RunError``) for anything unusable: a
    missing or damaged lab.json, an unknown experiment, numbers that do not draw."""
    run = open_run(run_id)
    try:
        saved = read_json(run.path / LAB_FILE)
    except CheckpointError as exc:
        raise LabError(f"run {run_id} has no readable lab results: {exc}") from None
    if not isinstance(saved, dict) or saved.get("experiment") not in EXPERIMENTS or not isinstance(saved.get("result"), dict):
        raise LabError(f"{LAB_FILE} of run {run.id} is not a lab result (no known experiment in it)")
    spec = EXPERIMENTS[saved["experiment"]]
    data = saved["result"]
    expected = {f.name for f in fields(spec.result_type)} - {"artifacts"}
    if set(data) != expected:
        raise LabError(f"{LAB_FILE} of run {run.id}: its fields {sorted(data)} do not match a {spec.name} result")
    try:
        result = spec.result_type(**data)
        if result.experiment != spec.name:
            raise ValueError(f"experiment {result.experiment!r} inside a {spec.name} file")
        spec.reading(result), spec.figures(result)  # numbers that cannot be read or drawn are refused here
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError) as exc:
        raise LabError(f"{LAB_FILE} of run {run.id} holds numbers that do not fit a {spec.name} result ({type(exc).__name__}: {exc})") from None
    return result
