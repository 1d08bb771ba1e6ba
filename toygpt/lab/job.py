"""An experiment on a background thread (``LabJob``), and its live curves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from toygpt.jobs import BackgroundJob, JobStatus
from toygpt.lab.registry import EXPERIMENTS, reading, run_experiment
from toygpt.lab.setup import ExperimentStopped, LabError
from toygpt.lab.storage import save_result
from toygpt.status import Status
from toygpt.stopping import StopRequested


@dataclass(frozen=True, kw_only=True)
class LabStatus(JobStatus):
    """A lab job's status: the common fields (its curves are one per variant) and which experiment."""

    experiment: str


class LabJob(BackgroundJob):
    """One experiment on a daemon thread, a ``toygpt.jobs.BackgroundJob`` like ``TrainJob``, so
    the same ``JobRegistry`` runs it under the same one-job-at-a-time cap. The thread never
    touches Streamlit; on success the result is saved as a run (``snapshot().run_id``)."""

    kind = "lab"

    def __init__(self, name: str, params: Any, num_threads: int | None = None, save: bool = True) -> None:
        if name not in EXPERIMENTS:
            raise LabError(f"unknown experiment {name!r}; choose one of {list(EXPERIMENTS)}")
        super().__init__(num_threads)
        self.name, self.params, self.save = name, params, save
        self._fraction, self._stage = 0.0, ""
        self._metrics: list[dict[str, Any]] = []
        self.result: Any = None

    def work(self) -> tuple[str, str]:
        try:
            result = run_experiment(self.name, self.params, self._on_progress, self._stop)
        except ExperimentStopped as exc:
            return Status.STOPPED, str(exc)
        except StopRequested:  # Stop reached a long loop inside (evaluation, data preparation)
            return Status.STOPPED, "stopped on request; nothing was saved"
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

    def snapshot(self) -> LabStatus:
        """What a page draws, as plain values (copied under the lock)."""
        with self._lock:
            elapsed = self._elapsed()
            fraction = self._fraction
            title = EXPERIMENTS[self.name].title
            return LabStatus(
                **self._common(), title=title, summary=f"The Concepts lab is running **{title}**",
                experiment=self.name, stage=self._stage, progress=fraction, elapsed=elapsed,
                eta=elapsed * (1 - fraction) / fraction if 0.02 < fraction < 1 else None,
                curves=live_curves(self._metrics),
            )  # fmt: skip


def live_curves(metrics: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A running job's metric events grouped by variant, as rows for ``loss_curves_figure``."""
    curves: dict[str, list[dict[str, Any]]] = {}
    for metric in metrics:
        row = {k: v for k, v in metric.items() if k in ("step", "train_loss", "val_loss")}
        curves.setdefault(str(metric.get("variant", "")), []).append(row)
    return curves
