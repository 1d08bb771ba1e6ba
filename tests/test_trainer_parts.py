"""The trainer's bookkeeping, now small functions beside the loop: what is due between steps,
the pace and ETA, why a run stops."""

from __future__ import annotations

import doctest

import pytest

import toygpt.trainer
from toygpt.distributed import PLAIN
from toygpt.status import Status
from toygpt.train import TrainConfig
from toygpt.trainer import Pace, TrainState, eta, stop_reason, work_due


def test_docstring_examples_hold():
    result = doctest.testmod(toygpt.trainer)
    assert result.attempted >= 1 and result.failed == 0


def test_work_due_at_each_interval_and_never_twice_at_a_resumed_sessions_first_step():
    config = TrainConfig(eval_interval=4, sample_interval=6, checkpoint_interval=8, max_snapshots=2)
    assert work_due(config, TrainState(step=0), 0) == ["evaluate", "snapshot"]
    assert work_due(config, TrainState(step=0, snapshots=[0]), 0) == ["evaluate"]
    assert work_due(config, TrainState(step=6), 0) == ["sample"]
    assert work_due(config, TrainState(step=24), 0) == ["evaluate", "sample", "save"]
    assert work_due(config, TrainState(step=24), 24) == []  # the session that saved step 24 did it
    assert work_due(config.replace(max_snapshots=0), TrainState(step=50), 0) == []


def test_pace_is_the_median_of_recent_steps_and_eta_the_earlier_end():
    pace = Pace(window=3)
    for seconds in (9.0, 0.1, 0.2, 0.3):  # the slow first step falls out of the window
        pace.record(seconds)
    assert pace.seconds_per_step() == pytest.approx(0.2)
    steps = TrainConfig(max_steps=100)
    assert eta(steps, TrainState(step=90, elapsed=5.0), 0.2) == pytest.approx(2.0)
    both = steps.replace(max_seconds=6.0)
    assert eta(both, TrainState(step=90, elapsed=5.0), 0.2) == pytest.approx(1.0)  # the clock ends first


def test_stop_reasons():
    config = TrainConfig(max_steps=10, max_seconds=60.0)
    assert stop_reason(config, 10, 1.0, False, PLAIN) == (Status.FINISHED, "reached max_steps=10")
    assert stop_reason(config, 3, 61.0, False, PLAIN) == (Status.FINISHED, "used the time budget of 60 s")
    assert stop_reason(config, 3, 61.0, True, PLAIN)[0] == Status.STOPPED  # Stop wins over the clock
    assert stop_reason(config, 3, 1.0, False, PLAIN) is None
