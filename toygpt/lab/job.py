"""An experiment on a background thread (``LabJob``), and its live curves."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from toygpt.jobs import BackgroundJob
from toygpt.lab.registry import EXPERIMENTS, reading, run_experiment
from toygpt.lab.setup import ExperimentStopped, LabError
from toygpt.lab.storage import save_result
from toygpt.status import Status, is_active


class LabJob(BackgroundJob):
    """One experiment on a daemon thread, a ``toygpt.jobs.BackgroundJob`` like ``TrainJob``, so
    the same ``JobRegistry`` runs it under the same one-job-at-a-time cap. The thread never
    touches Streamlit; on success the result is saved as a run (``snapshot()["run_id"]``)."""

    kind = "lab"

    def __init__(self, name: str, params: Any, num_threads: int | None = None, save: bool = True) -> None:
        if name not in EXPERIMENTS:
            raise LabError(f"unknown experiment {name!r}; choose one of {list(EXPERIMENTS)}")
        super().__init__(num_threads)
        self.name, self.params, self.save = name, params, save
        self.spec = None  # TrainJob has a TrainSpec here; a lab job has none
        self._fraction, self._stage, self._started = 0.0, "", time.perf_counter()
        self._metrics: list[dict[str, Any]] = []
        self.result: Any = None

    def start(self) -> LabJob:
        self._started = time.perf_counter()
        super().start()
        return self

    def work(self) -> tuple[str, str]:
        try:
            result = run_experiment(self.name, self.params, self._on_progress, self._stop)
        except ExperimentStopped as exc:
            return Status.STOPPED, str(exc)
        run_id = save_result(result) if self.save else None
        with self._lock:
            self.result, self._run_id, self._fraction = result, run_id, 1.0
        return Status.FINISHED, reading(result)

    def _on_progress(self, event: dict[str, Any]) -> None:
        with self._lock:
            if event["type"] == "progress":
                self._fraction, self._stage = float(event["fraction"]), str(event["message"])
            elif event["type"] == "metric":
                self._metrics.append(dict(event))

    def snapshot(self) -> dict[str, Any]:
        """What a page draws, as plain values; the keys of ``TrainJob.snapshot`` plus
        ``kind="lab"``, ``experiment``, ``stage`` and per-variant ``metrics``."""
        with self._lock:
            elapsed = time.perf_counter() - self._started
            fraction = self._fraction
            eta = elapsed * (1 - fraction) / fraction if 0.02 < fraction < 1 else None
            return {
                "kind": "lab", "experiment": self.name, "title": EXPERIMENTS[self.name].title,
                "job_id": self.id, "run_id": self._run_id, "status": self._status, "message": self._message,
                "error_detail": self._detail, "stage": self._stage, "progress": fraction, "eta": eta,
                "elapsed": elapsed, "metrics": [dict(m) for m in self._metrics],
                "done": not is_active(self._status),
                "step": 0, "max_steps": None, "max_seconds": None, "loss": None, "val_loss": None,
                "best_val_loss": None, "tokens_per_s": None, "last_sample": None, "samples": [], "start": {},
                "logs": None, "corpus": getattr(self.params, "corpus", None), "tokenizer": None,
            }  # fmt: skip


def live_curves(metrics: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A running job's metric events grouped by variant, as rows for ``loss_curves_figure``."""
    curves: dict[str, list[dict[str, Any]]] = {}
    for metric in metrics:
        row = {k: v for k, v in metric.items() if k in ("step", "train_loss", "val_loss")}
        curves.setdefault(str(metric.get("variant", "")), []).append(row)
    return curves
