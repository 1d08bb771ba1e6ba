"""Lab "scaling on a CPU": the power-law fit on known laws, the frontier, the compute grid, the
reading against its numbers, a tiny run saved and reopened."""

from __future__ import annotations

import math

import numpy as np
import pytest

from toygpt import lab
from toygpt.lab import scaling
from toygpt.lab.scaling import (
    ScalingParams,
    ScalingResult,
    bootstrap_alpha,
    eval_steps,
    fit_power_law,
    frontier_of,
    power_law,
)
from toygpt.model import flops_per_token


@pytest.mark.parametrize("alpha, l_inf", [(0.35, 1.2), (0.08, 2.0), (0.6, 0.5)])
def test_fit_recovers_alpha_within_5_percent_from_noisy_points_of_a_known_law(alpha, l_inf):
    rng = np.random.default_rng(0)
    compute = np.geomspace(1e9, 1e14, 14)
    loss = power_law(compute, l_inf, 3.0, alpha, 1e9) * (1 + 0.003 * rng.standard_normal(len(compute)))
    fit = fit_power_law(compute, loss)
    assert fit is not None
    assert fit["alpha"] == pytest.approx(alpha, rel=0.05)
    low, high, used = bootstrap_alpha(compute, loss, resamples=200)
    assert low <= alpha <= high and used >= 150


def test_fit_refuses_too_few_points():
    assert fit_power_law([1e9, 2e9, 4e9], [3.0, 2.8, 2.7]) is None
    assert fit_power_law([1e9, 1e9, 1e9, 1e9], [3.0, 2.8, 2.7, 2.6]) is None


def test_frontier_is_the_lowest_loss_at_each_budget():
    points = [{"size": "a", "budget": 2, "val_loss": 3.0}, {"size": "b", "budget": 2, "val_loss": 3.2},
              {"size": "a", "budget": 1, "val_loss": 2.8}, {"size": "b", "budget": 1, "val_loss": 2.6},
              {"size": "b", "budget": 0, "val_loss": 2.4}]  # fmt: skip
    assert [p["size"] for p in frontier_of(points, [2, 1, 0])] == ["a", "b", "b"]


def test_evaluations_sit_at_halvings_of_the_largest_budget():
    params = ScalingParams(corpus="toy-english", max_compute=1e10, doublings=5, block_size=16, batch_size=4)
    steps = eval_steps(params, "1x32x2", 40)
    per_step = flops_per_token(params.config("1x32x2", 40)) * 64
    for step, k in steps.items():
        assert step == math.ceil(1e10 / 2**k / per_step) and step >= scaling.MIN_STEPS
    assert max(steps) == params.steps("1x32x2", 40)


def test_bad_parameters_are_refused():
    with pytest.raises(lab.LabError, match="layers x width x heads"):
        ScalingParams(sizes=("big", "small"))
    with pytest.raises(lab.LabError, match="2 to 10 sizes"):
        ScalingParams(sizes=("1x32x2",))
    with pytest.raises(lab.LabError, match="FLOPs"):
        ScalingParams(max_compute=float("nan"))
    assert ScalingParams().budget().seconds < 5.5 * 60  # the default fits about 5 minutes


def fake_result(losses: list[float], se: float = 0.01) -> ScalingResult:
    compute = [1e9 * 2**i for i in range(len(losses))]
    frontier = [{"size": "1x32x2" if i < 3 else "2x48x2", "compute": c, "val_loss": v, "val_se": se, "step": 10, "budget": 0}
                for i, (c, v) in enumerate(zip(compute, losses, strict=True))]  # fmt: skip
    fit = fit_power_law(compute, losses)
    fit.update(zip(("alpha_low", "alpha_high", "resamples"), bootstrap_alpha(compute, losses, 100), strict=True))
    return ScalingResult(params=ScalingParams().to_dict(), sizes=[{"size": "1x32x2", "parameters": 100, "flops_per_token": 1, "steps": 1},
                         {"size": "2x48x2", "parameters": 400, "flops_per_token": 1, "steps": 1}],
                         points=frontier, frontier=frontier, fit=fit, elapsed=1.0)  # fmt: skip


def test_reading_quotes_the_gains_per_doubling_and_the_fit():
    losses = list(power_law(np.array([2.0**i for i in range(8)]), 1.5, 1.5, 0.5))
    result = fake_result(losses)
    text = scaling.reading(result)
    small, large = losses[0] - losses[1], losses[-2] - losses[-1]
    assert f"bought {small:.3f} nats" in text and f"and {large:.3f} nats" in text
    assert f"diminishing returns, {small / large:.1f}× less per doubling" in text
    assert f"α = {result.fit['alpha']:.3f}" in text and "95% bootstrap interval" in text
    assert "grew from 1x32x2 (100 parameters)" in text and "to 2x48x2 (400)" in text


def test_reading_says_too_close_to_call_when_the_gains_are_within_noise():
    text = scaling.reading(fake_result([3.0, 2.95, 2.90, 2.86, 2.83, 2.80], se=0.05))
    assert "too close to call" in text


def test_tiny_run_saves_and_reopens_with_its_numbers():
    params = lab.tiny_params("scaling")
    result = lab.run_experiment("scaling", params)
    assert [s["size"] for s in result.sizes] == list(params.sizes)
    for point in result.points:
        size = next(s for s in result.sizes if s["size"] == point["size"])
        assert point["compute"] == pytest.approx(size["flops_per_token"] * point["step"] * params.batch_size * params.block_size, rel=1e-5)
    for point in result.frontier:  # the frontier is the lowest loss of its budget
        assert point["val_loss"] == min(p["val_loss"] for p in result.points if p["budget"] == point["budget"])
    again = lab.load_result(lab.save_result(result))
    assert lab.reading(again) == lab.reading(result)
    assert lab.reading(again).startswith("Quick look")
    assert len(lab.figures(again)) == 3
