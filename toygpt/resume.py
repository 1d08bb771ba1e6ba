"""Resume: how a run continues (``plan_resume``: cheap, for a page or the CLI to say what
will happen) and everything it continues from, in one call (``resume``: the writer, weights,
data, counters and optimizer state the trainer takes).

A resumed run continues exactly: its step counter, learning-rate schedule and batches (a
function of the step: ``toygpt.train.step_seed``) carry on, so a run stopped and resumed ends
with the weights of a run never stopped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from toygpt.data import TokenData
from toygpt.model import GPT, GPTConfig
from toygpt.runs import Run, RunError, RunWriter, open_run
from toygpt.train import TrainConfig
from toygpt.trainer import Tensors, TrainState


def resume_config(run: Run, more_steps: int) -> Any:
    """The ``TrainConfig`` that resumes ``run`` for ``more_steps`` more steps: its own settings
    with a new end (its step counter, schedule and batches continue; the learning-rate schedule
    stretches to the new end; no time budget)."""
    if isinstance(more_steps, bool) or not isinstance(more_steps, int) or more_steps < 1:
        raise RunError(f"more_steps={more_steps!r}: resume adds a whole number of steps, at least 1")
    return run.train_config().replace(max_steps=_saved_step(run) + more_steps, max_seconds=None)


def _saved_step(run: Run) -> int:
    step = run.info().get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else 0


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResumePlan:
    """How a run would continue, read from run.json and config.json alone (no weights): what
    the Training page says before it starts, and the settings the CLI hands its job."""

    run_id: str
    step: int  # where training continues from: the latest save
    saved_config: TrainConfig  # the settings the run was trained with
    config: TrainConfig  # the settings it continues with
    model_config: GPTConfig


def plan_resume(run_id: str, more_steps: int | None = None, **changes: Any) -> ResumePlan:
    """How run ``run_id`` continues: its own settings, for ``more_steps`` more steps with no
    time budget (``resume_config``: the Training page's rule) and/or with ``changes`` applied
    on top (the CLI's flags: ``max_steps=1000`` continues to step 1,000). The demo is read-only:
    ``RunError`` says to fine-tune it instead; an unknown change is a ``ValueError``."""
    run = _resumable(run_id)
    saved = run.train_config()
    config = resume_config(run, more_steps) if more_steps is not None else saved
    config = TrainConfig.from_dict({**config.to_dict(), **changes})  # an unknown key is named
    return ResumePlan(run.id, _saved_step(run), saved, config, run.model_config())


def _resumable(run_id: str) -> Run:
    run = open_run(run_id)
    if run.read_only:
        raise RunError(f"{run.id} is read-only; fine-tune it with init_from={run.id!r} instead")
    return run


@dataclass(frozen=True)
class Resume:
    """Everything a resumed run continues from (made by ``resume``): hand ``model``, ``data``,
    ``plan.config``, ``state`` and ``optimizer_state`` to ``toygpt.trainer.Trainer``, with
    ``run`` as its saver."""

    plan: ResumePlan
    run: RunWriter | None  # where the continued run writes (None: a process that only reads)
    model: GPT  # the latest weights (float32, as saved)
    tokenizer: Any
    data: TokenData  # the run's corpus, tokenized and split as before
    state: TrainState  # the trainer's counters at plan.step
    optimizer_state: Tensors  # AdamW's moments, named by parameter


def resume(
    run_id: str,
    config: TrainConfig | None = None,
    *,
    write: bool = True,
    check: Callable[[GPTConfig, TrainConfig, str], None] | None = None,
) -> Resume:
    """Everything run ``run_id`` continues from, in one call, with ``config`` (None: the run's
    own settings; ``plan_resume`` makes others).

    In order: a save a crash cut short is finished or dropped (``RunWriter.recover``); the
    corpus and tokenizer are read; ``check(model_config, config, corpus_text)`` runs before
    anything big is loaded (the job checks its memory budget there); then the counters, AdamW's
    state and the latest weights (a torn save, weights and optimizer state from different
    steps, is a ``RunError``); the corpus is tokenized. Last, log rows written after that save
    are dropped (the continued run logs them again) and run.json records ``config``.
    ``write=False`` (the other processes of a data-parallel run) only reads.
    """
    from toygpt import data as corpora

    run = _resumable(run_id)
    writer = RunWriter(run.path) if write else None
    if writer is not None:
        writer.recover()
    plan = plan_resume(run_id)
    plan = plan if config is None else replace(plan, config=config)
    text, tokenizer = run.corpus_text(), run.tokenizer()
    if check is not None:
        check(plan.model_config, plan.config, text)
    state, optimizer_state = run.training_state()
    model = run.load_model("latest").model
    token_data = corpora.prepare(text, tokenizer)
    if writer is not None:
        writer.truncate_after(state.step)
        writer.update_info(train_config=plan.config.to_dict())
    return Resume(plan, writer, model, tokenizer, token_data, state, optimizer_state)
