"""How sure a reading is: a gap between two numbers compared with the run's own noise.

A gap is called only when it is more than ``CLEAR_FACTOR`` times the noise; otherwise the
reading says "too close to call at this budget". Two measures of noise, both from the run itself:

- ``eval_spread``: how much a training's validation loss still moved over its last few
  evaluations (max − min), for comparing the final losses of two trainings;
- ``standard_error``: the standard error of a mean over independent windows, for a mean of
  per-window numbers (a loss at some positions, a difference between two models on the same
  windows).

    >>> how_sure(0.30, 0.05, "the spread of the last 3 evaluations")
    'That is 6.0× the noise (0.050, the spread of the last 3 evaluations): clear at this budget.'
    >>> how_sure(0.04, 0.05, "the spread of the last 3 evaluations")
    'That is within 2× the noise (0.050, the spread of the last 3 evaluations): too close to call at this budget.'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

CLEAR_FACTOR = 2.0  # a gap counts as real when it is more than this many times the noise
LAST_EVALS = 3  # evaluations whose spread measures a training's noise


def eval_spread(rows: Sequence[dict[str, Any]], last: int = LAST_EVALS) -> float | None:
    """Max − min of the last ``last`` validation losses in a training's curve rows (None when it
    has fewer than two): how much the number a reading quotes still moves between evaluations.

    >>> eval_spread([{"step": 0, "val_loss": 3.0}, {"step": 5, "val_loss": 2.1}, {"step": 10, "val_loss": 2.0},
    ...              {"step": 15, "val_loss": 2.05}])
    0.1
    """
    values = [float(r["val_loss"]) for r in rows if isinstance(r.get("val_loss"), int | float)][-last:]
    values = [v for v in values if math.isfinite(v)]
    return round(max(values) - min(values), 12) if len(values) >= 2 else None


def pooled_spread(curves: Iterable[Sequence[dict[str, Any]]], last: int = LAST_EVALS) -> float | None:
    """The largest ``eval_spread`` among several trainings (the noisiest one sets the bar)."""
    spreads = [s for s in (eval_spread(rows, last) for rows in curves) if s is not None]
    return max(spreads) if spreads else None


def standard_error(values: Sequence[float]) -> float | None:
    """Standard error of the mean of ``values`` (sample std / √n); None for fewer than two.

    >>> round(standard_error([1.0, 2.0, 3.0, 4.0]), 4)
    0.6455
    """
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def is_clear(gap: float, noise: float | None) -> bool:
    """True when ``|gap|`` is more than ``CLEAR_FACTOR`` × ``noise`` (no noise measured: False)."""
    return noise is not None and math.isfinite(noise) and abs(gap) > CLEAR_FACTOR * noise


def how_sure(gap: float, noise: float | None, what: str, digits: int = 3) -> str:
    """One sentence: ``gap`` against ``noise`` (described by ``what``), clear or too close to call."""
    if noise is None or not math.isfinite(noise):
        return "The run measured no noise to compare with (too few evaluations): too close to call at this budget."
    shown = f"{noise:.{digits}f}, {what}"
    if is_clear(gap, noise):
        ratio = abs(gap) / noise if noise > 0 else math.inf
        times = f"{ratio:.1f}×" if math.isfinite(ratio) else "far above"
        return f"That is {times} the noise ({shown}): clear at this budget."
    return f"That is within {CLEAR_FACTOR:g}× the noise ({shown}): too close to call at this budget."
