"""Training one variant of a paired comparison, the corpora it trains on, the source run an
experiment reads, and the model a fresh result carries with it (``Artifacts``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from toygpt import data as corpora
from toygpt.lab.reporter import Reporter
from toygpt.lab.setup import ExperimentStopped, LabError
from toygpt.model import GPT, GPTConfig, preset
from toygpt.pipeline import curve_rows
from toygpt.runs import Run, open_run
from toygpt.status import Status
from toygpt.tokenizers import CharTokenizer, Tokenizer, tokenizer_from_dict
from toygpt.train import Event, TrainConfig
from toygpt.trainer import Trainer


@dataclass(frozen=True)
class CharCorpus:
    """A corpus prepared for character-level training."""

    name: str
    text: str
    tokenizer: CharTokenizer
    data: corpora.TokenData


def char_corpus(name: str, seed: int = 0) -> CharCorpus:
    """Corpus ``name`` (built-in, or downloaded on first use) with a char tokenizer, split 90/10."""
    text = corpora.load_corpus(name, seed)
    tokenizer = CharTokenizer.from_text(text)
    return CharCorpus(name, text, tokenizer, corpora.prepare(text, tokenizer))


@dataclass
class VariantRun:
    """One trained variant: its model, the curve rows for charts and the trainer's raw events."""

    label: str
    model: GPT
    rows: list[dict[str, Any]]
    events: list[Event]
    end: Event

    @property
    def start_loss(self) -> float | None:
        first = next((row["val_loss"] for row in self.rows if "val_loss" in row), None)
        return first

    @property
    def final_loss(self) -> float | None:
        value = self.end.get("val_loss")
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def train_variant(label: str, model: GPT, data: corpora.TokenData, config: TrainConfig, reporter: Reporter) -> VariantRun:
    """Train ``model`` in place with ``config``; Stop raises ``ExperimentStopped``."""
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        reporter.trainer_event(label, event)

    end = Trainer(model, data, config, on_event=on_event, stop_event=reporter.stop).run()
    if end["status"] == Status.STOPPED:
        raise ExperimentStopped("stopped on request; nothing was saved")
    return VariantRun(label, model.eval(), curve_rows(events), events, end)


@torch.no_grad()
def val_windows(data: corpora.TokenData, block_size: int, count: int, seed: int) -> torch.Tensor:
    """``count`` random windows of ``block_size + 1`` validation tokens, (count, block_size + 1)."""
    x, y = data.get_batch("val", count, block_size, torch.Generator().manual_seed(seed))
    return torch.cat([x, y[:, -1:]], dim=1)



def source_config(run_id: str) -> GPTConfig:
    """The model shape of run ``run_id`` (for budgets); the small preset when it cannot be read."""
    try:
        return open_run(run_id).model_config()
    except (ValueError, OSError, KeyError):  # RunError/CheckpointError are ValueErrors
        return preset("small")


def load_source(run_id: str) -> tuple[Run, GPT, Tokenizer]:
    """A fresh copy of a run's best weights (read from disk, never a shared cached model)."""
    run = open_run(run_id)
    loaded = run.load_model("best")
    if loaded.tokenizer is None:
        raise LabError(f"run {run_id} has no tokenizer.json, so text cannot be encoded for it")
    return run, loaded.model.eval(), tokenizer_from_dict(loaded.tokenizer)



@dataclass(frozen=True)
class Artifacts:
    """What a fresh result carries besides its numbers (not saved in lab.json): the model to keep
    as the run's weights, its tokenizer, and how it was trained."""

    model: GPT
    tokenizer: Tokenizer
    corpus: str
    tokenizer_spec: str
    train_config: TrainConfig
    events: list[Event]
    corpus_text: str | None = None
    init_from: str | None = None


def with_artifacts(result: Any, run: VariantRun, corpus: CharCorpus, config: TrainConfig) -> Any:
    return replace(result, artifacts=Artifacts(run.model, corpus.tokenizer, corpus.name, "char", config, run.events))
