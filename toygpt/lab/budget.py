"""Budgets: what an experiment will cost, said before it starts."""

from __future__ import annotations

from dataclasses import dataclass

from toygpt.model import GPTConfig
from toygpt.train import TrainConfig, estimate

# Seconds per training step beyond what the FLOP count predicts: Python and small-op overhead,
# which dominates for the nano preset (measured on the 2-core dev machine; see budget texts).
STEP_OVERHEAD_S = 0.004
LAYER_OVERHEAD_S = 0.0015
EVAL_SHARE = 0.25  # evaluations add about this much to a lab training's time


@dataclass(frozen=True)
class Budget:
    """An experiment's cost before it runs: ``seconds`` (an estimate for 2 CPU cores) and a
    sentence saying what will be trained."""

    seconds: float
    text: str


def step_seconds(model_config: GPTConfig, batch_size: int, block_size: int) -> float:
    """Estimated seconds of one training step on a 2-core CPU: FLOPs at the rate
    ``toygpt.train.estimate`` assumes, plus a per-step and per-layer overhead (small models
    spend most of their time in Python and tiny kernels, not in FLOPs)."""
    config = TrainConfig(batch_size=batch_size, block_size=block_size, max_steps=1)
    flop_seconds = estimate(model_config.replace(block_size=max(block_size, 1)), config)["seconds_per_step"]
    return flop_seconds + STEP_OVERHEAD_S + LAYER_OVERHEAD_S * model_config.n_layer


def training_seconds(model_config: GPTConfig, batch_size: int, block_size: int, steps: int) -> float:
    return steps * step_seconds(model_config, batch_size, block_size) * (1 + EVAL_SHARE)
