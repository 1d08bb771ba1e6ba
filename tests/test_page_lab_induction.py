"""AppTest: lab "induction heads form" at its tiny setting; the reading quotes the charts' numbers."""

from __future__ import annotations

from tests.test_page_lab import texts, trace


def test_induction_runs_and_its_reading_matches_the_charts(tiny_lab):
    at, snap, (losses, scores, patterns), reading = tiny_lab("induction-heads")
    assert f"saved as run **{snap.run_id}**" in texts(at.success)
    repeated = trace(losses, "repeated half")["y"]
    first = trace(losses, "first half (unpredictable)")["y"]
    best = trace(scores, "best head at each step")["y"]
    steps = trace(scores, "best head at each step")["x"]
    if "did not appear" in reading:
        assert f"within {steps[-1]} steps" in reading
        assert f"reached {best[-1]:.2f}" in reading
        assert f"{repeated[-1]:.2f} nats/token against {first[-1]:.2f}" in reading
        assert max(best) < 0.5
    else:
        at_step = next(i for i, b in enumerate(best) if b >= 0.5)
        assert f"and step {steps[at_step]}" in reading and f"to {best[at_step]:.2f}" in reading
    assert len(patterns["data"]) == len(lab_pattern_titles(patterns))


def lab_pattern_titles(fig: dict) -> list[str]:
    return [a["text"] for a in fig["layout"]["annotations"] if a["text"].startswith("step ")]
