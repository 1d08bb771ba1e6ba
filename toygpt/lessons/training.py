"""What the Training and Runs pages compute: which runs a new job may start from, how fast a
run will go before it starts, a run's row in the runs table, its loss curve.

No streamlit here: the pages draw what these return. Every rule a page would otherwise decide
on its own (which runs can be resumed, where an estimate's pace comes from, what a row shows
while its run is still training) lives here, where a test can call it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from toygpt.estimates import recent_step_seconds
from toygpt.formatting import clock
from toygpt.jobs import TrainStatus
from toygpt.limits import MemoryBudgetError
from toygpt.model import GPTConfig, total_parameters
from toygpt.runs import RunError, RunInfo, open_run, read_metrics, status_now
from toygpt.status import Status
from toygpt.tokenizers import CharTokenizer, parse_tokenizer_name
from toygpt.train import TrainConfig

PROBE_MAX_PARAMS = 30_000_000  # above this a 3-step timing probe takes too long for a page: guessed instead


# --------------------------------------------------------------------------------------------
# Starting a job
# --------------------------------------------------------------------------------------------


def startable_runs(infos: Iterable[RunInfo], training: set[str], writable: bool) -> list[str]:
    """Ids of the runs a new job can start from: readable, not being trained right now, and,
    when the job writes into the run (``writable``: a resume), not read-only (the shipped demo)."""
    return [i.id for i in infos
            if i.id not in training and i.status != Status.UNREADABLE and not (writable and i.read_only)]  # fmt: skip


def vocab_size_of(spec: str, text: str) -> int:
    """The vocabulary a tokenizer named ``spec`` will have on ``text``: fixed by the name
    (``bpe-512``: 512), or, for ``char``, the distinct characters of the text."""
    fixed = parse_tokenizer_name(spec).vocab_size  # None for char: it depends on the text
    return CharTokenizer.from_text(text).vocab_size if fixed is None else fixed


@dataclass(frozen=True)
class Pace:
    """Seconds per training step for an estimate, and where that figure comes from (None: the
    model is too big to time here, so the estimate falls back to a FLOP-count guess)."""

    seconds: float | None
    source: str = ""


def step_pace(
    model_config: GPTConfig, config: TrainConfig, resume: str | None,
    probe: Callable[[GPTConfig, TrainConfig], float], threads: int | None,
) -> Pace:  # fmt: skip
    """The pace an estimate uses: a resumed run's own recent steps; else ``probe`` (a few steps
    of this shape timed here, on the ``threads`` a job gets); else None for models over
    ``PROBE_MAX_PARAMS`` or whose probe would not fit in memory."""
    if resume:
        try:
            own = recent_step_seconds(read_metrics(resume))
        except (RunError, OSError):
            own = None
        if own:
            return Pace(own, f"{resume}'s own pace over its last logged steps ({1 / own:,.1f} steps/s)")
    if total_parameters(model_config) > PROBE_MAX_PARAMS:
        return Pace(None)
    try:
        seconds = probe(model_config, config.replace(max_steps=1, max_seconds=None))
    except MemoryBudgetError:  # the probe itself would not fit: the memory estimate says why
        return Pace(None)
    return Pace(seconds, f"3 training steps of this model timed here just now, on the {threads or 'default'} "
                         f"thread{'s' if threads != 1 else ''} a job gets ({1 / seconds:,.1f} steps/s)")  # fmt: skip


def steps_per_second(metrics: Sequence[Mapping[str, Any]]) -> float | None:
    """The measured pace of the latest logged step (the trainer's median of its recent steps)."""
    ms = next((row.get("ms_per_step") for row in reversed(metrics) if row.get("type") == "step"), None)
    return 1000 / ms if isinstance(ms, int | float) and ms > 0 else None


# --------------------------------------------------------------------------------------------
# The runs table and the loss curves
# --------------------------------------------------------------------------------------------


def shape_text(config: Mapping[str, Any]) -> str:
    """``"2L × 2H × 64, context 64"``, or ``"?"`` for a config that lacks one of them."""
    try:
        return f"{config['n_layer']}L × {config['n_head']}H × {config['n_embd']}, context {config['block_size']}"
    except KeyError:
        return "?"


def parameters_of(config: Mapping[str, Any]) -> int | None:
    try:
        return total_parameters(GPTConfig.from_dict(dict(config)))
    except (ValueError, TypeError):
        return None


def training_time(info: RunInfo) -> float | None:
    """Seconds the run has trained, over all its sessions (None when not recorded)."""
    try:
        elapsed = open_run(info.id).info().get("elapsed")
    except (ValueError, OSError):
        return None
    return float(elapsed) if isinstance(elapsed, int | float) and math.isfinite(elapsed) else None


def run_rows(infos: Iterable[RunInfo], live: Mapping[str, TrainStatus], as_of: str) -> list[dict[str, Any]]:
    """One row per run for the runs table; numbers stay numbers (None when missing). A run a
    job trains now (``live``: run id → that job's snapshot; its run.json lags, saved at
    checkpoints) shows the job's step, best val loss and time ``as_of`` this redraw, and says so."""
    busy = set(live)
    rows = []
    for i in infos:
        snap = live.get(i.id)
        status = status_now(i, busy)
        rows.append({
            "run": i.id, "status": f"{status} (as of {as_of}; live on the Training page)" if snap else status,
            "corpus": i.corpus, "tokenizer": i.tokenizer, "model": shape_text(i.model_config),
            "parameters": parameters_of(i.model_config), "steps": snap.step if snap else i.steps,
            "best val loss": snap.best_val_loss if snap else i.best_val_loss,
            "training time": clock(snap.elapsed if snap else training_time(i)), "created": i.created,
        })  # fmt: skip
    return rows


def eval_rows(run_id: str) -> list[dict[str, Any]]:
    """A run's validation measurements (an "end" row repeats the last *batch* loss as train_loss)."""
    return [row for row in read_metrics(run_id) if row.get("type") == "eval"]


def runs_with_curves(ids: Iterable[str], wanted: int) -> list[str]:
    """The first ``wanted`` of ``ids`` that have a loss curve to draw (a lab result may have none)."""
    found = []
    for run_id in ids:
        try:
            if eval_rows(run_id):
                found.append(run_id)
        except (RunError, OSError):
            continue
        if len(found) == wanted:
            break
    return found


def neighbour(run_id: str, ids: Sequence[str]) -> str | None:
    """The run listed after ``run_id`` in ``ids`` (else before it): what to select once it is
    deleted, so the selection never names a run that no longer exists.

    >>> neighbour("b", ["a", "b", "c"]), neighbour("c", ["a", "b", "c"]), neighbour("a", ["a"])
    ('c', 'b', None)
    """
    if run_id not in ids or len(ids) < 2:
        return None
    at = list(ids).index(run_id)
    return ids[at + 1] if at + 1 < len(ids) else ids[at - 1]
