"""Progress: the stages of an experiment turned into progress events for a page, and Stop."""

from __future__ import annotations

import threading

from toygpt.lab.setup import ExperimentStopped, ProgressFn
from toygpt.pipeline import curve_rows
from toygpt.train import Event


class Reporter:
    """Reports an experiment's progress through ``callback`` and honours ``stop``.

    Events: ``{"type": "progress", "fraction": 0..1, "message": str}`` and, for live curves,
    ``{"type": "metric", "variant": label, "step": n, "train_loss" | "val_loss": x}``.
    An experiment announces its stages with weights (``begin("post-LN", weight=2)``); within a
    stage ``at(0.5)`` means half of that stage is done.
    """

    def __init__(self, callback: ProgressFn | None, stop: threading.Event | None, total_weight: float) -> None:
        self.callback = callback or (lambda event: None)
        self.stop = stop or threading.Event()
        self.total = max(float(total_weight), 1e-9)
        self.done, self.weight, self.label = 0.0, 0.0, ""

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise ExperimentStopped("stopped on request; nothing was saved")

    def begin(self, label: str, weight: float = 1.0) -> None:
        self.check_stop()
        self.done += self.weight
        self.weight, self.label = float(weight), label
        self.at(0.0)

    def at(self, within: float, message: str | None = None) -> None:
        fraction = min(1.0, (self.done + self.weight * min(max(within, 0.0), 1.0)) / self.total)
        self.callback({"type": "progress", "fraction": fraction, "message": message or self.label})

    def trainer_event(self, variant: str, event: Event) -> None:
        """Forward a ``Trainer`` event: steps move the bar, steps and evals feed the live curves."""
        if event.get("type") == "step":
            self.at(event.get("progress", 0.0), f"{self.label}: step {event['step']}")
        for row in curve_rows([event]):
            self.callback({"type": "metric", "variant": variant, **row})
