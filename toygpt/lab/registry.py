"""The lab's catalogue: a dict of the experiments, built from their modules, and running one by name."""

from __future__ import annotations

import threading
from typing import Any

import plotly.graph_objects as go

from toygpt.certainty import QUICK_LOOK, is_quick_look
from toygpt.lab import (
    attention_range,
    extrapolation,
    induction,
    norm_position,
    positions,
    recurrence,
    residual_scaling,
    scaling,
    single_example,
    tokenization,
    weight_tying,
)
from toygpt.lab.setup import ExperimentSpec, LabError, ProgressFn

MODULES = (norm_position, residual_scaling, positions, tokenization, single_example, attention_range,
           extrapolation, recurrence, weight_tying, induction, scaling)  # fmt: skip
EXPERIMENTS: dict[str, ExperimentSpec] = {module.EXPERIMENT.name: module.EXPERIMENT for module in MODULES}


def experiment_of(result: Any) -> ExperimentSpec:
    name = getattr(result, "experiment", None)
    if name not in EXPERIMENTS:
        raise LabError(f"not a lab result: {type(result).__name__}")
    return EXPERIMENTS[name]


def reading(result: Any) -> str:
    """The result in words, computed from its numbers (never canned text); a quick look says
    first that it is one (``toygpt.certainty``)."""
    spec = experiment_of(result)
    quick = is_quick_look(getattr(result, "params", {}) or {}, spec.tiny)
    return (QUICK_LOOK if quick else "") + spec.reading(result)


def figures(result: Any) -> list[go.Figure]:
    """The result's charts (plotly figures), in the order the page shows them."""
    return experiment_of(result).figures(result)


def tiny_params(name: str, **changes: Any) -> Any:
    """Parameters for experiment ``name`` that finish in seconds (for tests and a quick look)."""
    spec = EXPERIMENTS[name]
    return spec.params_type(**{**spec.tiny, **changes})


def run_experiment(name: str, params: Any, progress: ProgressFn | None = None, stop: threading.Event | None = None) -> Any:
    if name not in EXPERIMENTS:
        raise LabError(f"unknown experiment {name!r}; choose one of {list(EXPERIMENTS)}")
    spec = EXPERIMENTS[name]
    if not isinstance(params, spec.params_type):
        raise LabError(f"{name} takes {spec.params_type.__name__}, got {type(params).__name__}")
    return spec.run(params, progress, stop)
