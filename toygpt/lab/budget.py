"""Budgets: what an experiment will cost, said before it starts (``setup.Budget``): seconds per
training step of a shape, timed here."""

from __future__ import annotations

import time

from toygpt.estimates import measure_step_seconds
from toygpt.model import GPTConfig
from toygpt.recurrent import LSTMConfig
from toygpt.train import TrainConfig

EVAL_SHARE = 0.25  # evaluations add about this much to a lab training's time
PROBE_THREADS = 1  # the dashboard runs lab jobs on one torch thread: time steps the same way
PROBE_TTL_S = 600.0  # a timing is reused this long, then measured again (the machine's load changes)
_probes: dict[tuple, tuple[float, float]] = {}  # (config, batch, block) -> (when, seconds per step)


def step_seconds(model_config: GPTConfig | LSTMConfig, batch_size: int, block_size: int) -> float:
    """Seconds of one training step of this model here: three real steps timed by
    ``toygpt.estimates.measure_step_seconds`` (on ``PROBE_THREADS`` threads, as the job will run),
    reused for ``PROBE_TTL_S``. Small models spend most of a step in Python and tiny kernels, so
    a FLOP count under-estimated them several-fold; a busy machine is slower still."""
    config = model_config.replace(block_size=max(block_size, 1))
    key = (config, batch_size)
    now = time.monotonic()
    if key not in _probes or now - _probes[key][0] > PROBE_TTL_S:
        train = TrainConfig(batch_size=batch_size, max_steps=1)  # the precision lab trainings use
        _probes[key] = (now, measure_step_seconds(config, train, num_threads=PROBE_THREADS))
    return _probes[key][1]


def training_seconds(model_config: GPTConfig | LSTMConfig, batch_size: int, block_size: int, steps: int) -> float:
    return steps * step_seconds(model_config, batch_size, block_size) * (1 + EVAL_SHARE)
