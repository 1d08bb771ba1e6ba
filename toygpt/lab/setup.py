"""What every experiment of the lab shares: its errors and limits, the base of its parameters
(``ExperimentParams``: a JSON dict, and a ``Budget`` said in one shape), the training setup of
the experiments that train, numbers that survive JSON and read well, and ``ExperimentSpec``:
what each experiment module gives the registry."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import plotly.graph_objects as go
import torch

from toygpt import data as corpora
from toygpt.formatting import about
from toygpt.model import GPTConfig, preset
from toygpt.train import TrainConfig

# The lab trains eagerly (compile=False): its trainings are short and each variant is a new graph,
# so torch.compile's start-up (seconds with a warm cache, a minute or more cold) is never won back
# on a CPU where the compiled step is barely faster (bench/train_speed.py; notes in issue 17).
LAB_COMPILE = False
TRAIN_PRESETS = ("nano", "small")  # larger presets take far longer than the lab's ~2-minute budget
MAX_STEPS = 5000

# A page's progress callback: ``{"type": "progress" | "metric", ...}`` (see ``Reporter``).
ProgressFn = Callable[[dict[str, Any]], None]


class LabError(ValueError):
    """An experiment cannot run or a saved result cannot be read; the message says what to do."""


class ExperimentStopped(RuntimeError):
    """The user pressed Stop: nothing is saved."""


def check_whole(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LabError(f"{name}={value!r} must be a whole number from {low} to {high}")


def check_number(name: str, value: Any, low: float, high: float, hint: str = "") -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or not low <= value <= high:
        raise LabError(f"{name}={value!r} must be a number from {low:g} to {high:g}{hint}")


def corpus_names() -> list[str]:
    return list(corpora.BUILTIN) + list(corpora.DOWNLOADS)


@dataclass(frozen=True)
class Budget:
    """An experiment's cost before it runs: ``seconds`` (from training steps timed on this
    machine, ``toygpt.lab.budget``) and a sentence saying what will be trained."""

    seconds: float
    text: str


class ExperimentParams(ABC):
    """The base of every experiment's parameters (each a frozen dataclass of its own fields).

    ``to_dict`` is the fields as JSON (what a saved result records); ``budget`` says the cost
    in one shape, "<what runs>: <about how long><timing>.", from the experiment's ``cost()``:
    (seconds, what runs). ``timing`` says where the seconds come from, when there is more to say.
    """

    timing = ""  # e.g. ", from training steps of this model timed here just now"

    @abstractmethod
    def cost(self) -> tuple[float, str]:
        """(seconds, a description of what will run): each experiment counts its own."""

    def budget(self) -> Budget:
        seconds, what = self.cost()
        return Budget(seconds, f"{what}: {about(seconds)}{self.timing}.")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class TrainingSetup(ExperimentParams):
    """What every training experiment shares: model size, corpus, steps, learning rate, seed."""

    timing = ", from training steps of this model timed here just now"

    preset: str = "small"
    corpus: str = "toy-english"
    steps: int = 300
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    batch_size: int = 12
    eval_batches: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.preset not in TRAIN_PRESETS:
            raise LabError(f"preset={self.preset!r}; choose one of {TRAIN_PRESETS} (the lab's budget is ~2 minutes)")
        if self.corpus not in corpus_names():
            raise LabError(f"corpus={self.corpus!r}; choose one of {corpus_names()}")
        check_whole("steps", self.steps, 1, MAX_STEPS)
        check_number("learning_rate", self.learning_rate, 1e-6, 1.0, "; try 3e-3")
        check_whole("warmup_steps", self.warmup_steps, 0, MAX_STEPS)
        check_whole("batch_size", self.batch_size, 1, 256)
        check_whole("eval_batches", self.eval_batches, 1, 200)
        check_whole("seed", self.seed, 0, 2**31 - 1)

    def model_config(self, vocab_size: int = 65, **changes: Any) -> GPTConfig:
        return preset(self.preset, vocab_size=vocab_size, **changes)

    def train_config(self, **changes: Any) -> TrainConfig:
        """The lab's training recipe: no checkpoints, snapshots or samples; ~10 evaluations and
        ~60 logged steps per training, whatever the length (so curves have the same detail)."""
        steps = changes.pop("steps", self.steps)
        base = dict(
            batch_size=self.batch_size, max_steps=steps, learning_rate=self.learning_rate,
            warmup_steps=self.warmup_steps, eval_interval=max(1, steps // 10), eval_batches=self.eval_batches,
            log_interval=max(1, steps // 60), checkpoint_interval=0, max_snapshots=0, seed=self.seed,
            compile=LAB_COMPILE,
        )  # fmt: skip
        return TrainConfig(**{**base, **changes})


def rounded(value: float, digits: int = 6) -> float | None:
    """A float with ``digits`` significant digits, or None for NaN/inf (JSON has neither)."""
    value = float(value)
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


def plain(value: Any) -> Any:
    """Tensors, tuples and floats → JSON-friendly lists and rounded floats, recursively."""
    if isinstance(value, torch.Tensor):
        return plain(value.detach().float().cpu().tolist())
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return rounded(value)
    return value


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def shown_gap(a: float, b: float, digits: int = 2) -> float:
    """|a − b| of the numbers as shown, so "1.51 vs 1.55" reads as a gap of 0.04, never 0.05."""
    return abs(round(a, digits) - round(b, digits))


@dataclass(frozen=True)
class ExperimentSpec:
    """One experiment of the lab: its claim, its parameters and the functions that run it."""

    name: str
    title: str
    claim: str
    params_type: type
    result_type: type
    run: Callable[..., Any]
    reading: Callable[[Any], str]
    figures: Callable[[Any], list[go.Figure]]
    tiny: dict[str, Any]  # parameter changes that make it finish in a few seconds
    keeps_model: bool = False  # its saved run's weights are a model worth using (not a by-product)
