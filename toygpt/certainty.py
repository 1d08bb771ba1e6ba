"""How sure a lab reading is: a gap between two variants, weighed against the runs' own noise.

A validation loss measured on a few batches wobbles from one evaluation to the next, so "A's
loss is 0.06 lower than B's" may be a finding or a coin toss. Before a reading says which
variant won, it compares the gap with the noise of the same runs: the spread (largest minus
smallest) of each run's last ``NOISE_EVALS`` validation losses. That spread also holds whatever
the run still improved over those evaluations, so it over-states the noise a little: a verdict
errs towards "too close to call", never towards a finding that is not there.

The evaluations of one run reuse the same few validation batches, so their spread misses how
much the loss depends on *which* batches were drawn. That part is estimated from the training
batches, each a fresh draw: the standard deviation of the last ``NOISE_TRAIN`` training-batch
losses, divided by √(validation batches) (the standard error of a mean over that many batches).
The noise is the larger of the two estimates, over both runs.

A gap larger than ``CALL_RATIO`` times that noise is called; anything else, or runs with
fewer than ``MIN_EVALS`` evaluations (no spread to speak of), is "too close to call at this
budget". (The standard fix, two seeds per variant, doubles the budget; the page's setup allows
it by running again with another seed.)

>>> rows = lambda *v: [{"step": i, "val_loss": x} for i, x in enumerate(v)]
>>> settled = rows(3.0, 2.6, 2.50, 2.52, 2.49, 2.51)   # last four: spread 0.03
>>> compare_runs(settled, rows(3.0, 2.9, 2.80, 2.81, 2.79, 2.80)).called   # 0.29 apart
True
>>> compare_runs(settled, rows(3.0, 2.6, 2.55, 2.51, 2.53, 2.50)).called   # 0.01 apart
False
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from toygpt.formatting import counted

NOISE_EVALS = 4  # a run's noise: the spread of this many of its last validation losses
NOISE_TRAIN = 8  # ... and the spread of this many of its last training-batch losses
MIN_EVALS = 3  # fewer evaluations than this give no spread worth the name
CALL_RATIO = 2.0  # a gap must exceed this many times the noise to be called


def val_losses(rows: Sequence[dict[str, Any]]) -> list[float]:
    """The finite validation losses of a run's curve rows (``{"step", "val_loss"}``), in order."""
    values = [row.get("val_loss") for row in rows]
    return [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]


def run_noise(rows: Sequence[dict[str, Any]]) -> float | None:
    """The spread of the last ``NOISE_EVALS`` validation losses (nats), or None with fewer than
    ``MIN_EVALS`` of them.

    >>> run_noise([{"val_loss": v} for v in (4.0, 3.0, 2.5, 2.45, 2.5, 2.4)])
    0.10000000000000009
    """
    last = val_losses(rows)[-NOISE_EVALS:]
    return max(last) - min(last) if len(last) >= MIN_EVALS else None


def batch_noise(rows: Sequence[dict[str, Any]], eval_batches: int | None) -> float | None:
    """How much a validation loss over ``eval_batches`` batches moves with the batches drawn:
    the std of the last ``NOISE_TRAIN`` training-batch losses over √eval_batches (nats), or None.

    >>> round(batch_noise([{"train_loss": v} for v in (3.0, 3.2, 3.0, 3.2)], 4), 3)
    0.058
    """
    values = [row.get("train_loss") for row in rows]
    last = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)][-NOISE_TRAIN:]
    if not eval_batches or len(last) < MIN_EVALS:
        return None
    return statistics.stdev(last) / math.sqrt(eval_batches)


@dataclass(frozen=True)
class Verdict:
    """A gap between two final losses and the noise it is weighed against (nats)."""

    gap: float
    noise: float | None  # the larger of the runs' noise estimates; None: too few evaluations
    evals: int  # evaluations per run behind the noise (the fewer of the two)
    source: str = "evals"  # "evals": the spread of the last evaluations; "batches": the batch draw

    @property
    def called(self) -> bool:
        return self.noise is not None and self.gap > CALL_RATIO * self.noise

    def sentence(self) -> str:
        """How sure the comparison is, in words (a full sentence, with a leading space)."""
        if self.noise is None:
            return (f" Each run was measured only {counted(self.evals, 'time')} on held-out "
                    "text, too few to tell that gap from noise: too close to call at this budget.")
        spread = (f"the spread of its last {self.evals} validation losses, {self.noise:.3f}" if self.source == "evals"
                  else f"how much a validation loss on so few batches moves with the batches drawn, ±{self.noise:.3f}")
        if self.called:
            return (f" The gap is {self.gap / max(self.noise, 1e-12):.1f}× the noisier run's own wobble "
                    f"({spread}), so it stands at this budget.")
        return (f" That gap is within {CALL_RATIO:g}× the noisier run's own wobble ({spread}): "
                "too close to call at this budget.")


def compare_runs(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], eval_batches: int | None = None) -> Verdict:
    """The verdict on two runs' final validation losses (the last of each curve); with
    ``eval_batches``, the batch-draw noise (``batch_noise``) counts too."""
    va, vb = val_losses(a), val_losses(b)
    if not va or not vb:
        return Verdict(math.nan, None, min(len(va), len(vb)))
    spreads = [run_noise(a), run_noise(b)]
    evals = min(len(va), len(vb), NOISE_EVALS)
    if None in spreads:
        return Verdict(abs(va[-1] - vb[-1]), None, evals)
    spread = max(n for n in spreads if n is not None)
    draws = [n for n in (batch_noise(a, eval_batches), batch_noise(b, eval_batches)) if n is not None]
    if draws and max(draws) > spread:
        return Verdict(abs(va[-1] - vb[-1]), max(draws), evals, "batches")
    return Verdict(abs(va[-1] - vb[-1]), spread, evals)


def standard_error(values: Sequence[float]) -> float | None:
    """The noise of a mean over independent measurements (e.g. one number per validation window):
    sample standard deviation / √n, or None for fewer than two. A gap between two such means, or
    between a mean and a threshold, is called when it exceeds ``CALL_RATIO`` standard errors.

    >>> round(standard_error([1.0, 2.0, 3.0, 4.0]), 4)
    0.6455
    """
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def single_measurement(batches: int | None) -> str:
    """What to say when a result keeps one loss per variant and no curve: its noise is unknown."""
    on = f" (on {batches} validation batches)" if batches else ""
    return (f" Each of these losses is a single measurement{on}, so this run cannot say how much of "
            "a small gap is noise: read it as too close to call unless a second seed agrees.")


QUICK_LOOK = ("Quick look: a tiny setting for trying the page, not for conclusions (a few steps on a "
              "tiny model; run the full setting to test the claim). ")


def is_quick_look(params: dict[str, Any], tiny: dict[str, Any]) -> bool:
    """Whether saved ``params`` are the experiment's quick-look ``tiny`` settings."""
    def same(a: Any, b: Any) -> bool:
        return list(a) == list(b) if isinstance(a, list | tuple) and isinstance(b, list | tuple) else a == b

    return bool(tiny) and all(key in params and same(params[key], value) for key, value in tiny.items())
