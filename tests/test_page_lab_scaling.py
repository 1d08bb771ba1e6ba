"""AppTest: lab "scaling on a CPU" at its tiny setting; the reading quotes the charts' numbers."""

from __future__ import annotations

from tests.test_page_lab import texts, trace


def test_scaling_runs_and_its_reading_matches_the_charts(tiny_lab):
    def offline_corpus(at) -> None:  # shakespeare is not cached offline
        at.selectbox(key="lab_scaling_corpus").set_value("toy-english").run()

    at, snap, (curves, optimal, bought), reading = tiny_lab("scaling", before=offline_corpus)
    assert f"saved as run **{snap.run_id}**" in texts(at.success)
    assert reading.startswith("Quick look")
    frontier = trace(curves, "frontier")
    assert f"From {frontier['x'][0]:.2g} to {frontier['x'][-1]:.2g} FLOPs" in reading
    assert f"fell from {frontier['y'][0]:.3f} to {frontier['y'][-1]:.3f}" in reading
    gains = bought["data"][0]["y"]
    assert f"bought {gains[0]:.3f} nats" in reading and f"and {gains[-1]:.3f} nats" in reading
    best_sizes = optimal["data"][0]["text"]
    assert best_sizes[0] in reading and best_sizes[-1] in reading
    fit = [t for t in curves["data"] if t.get("name", "").startswith("fit: α = ")]
    if fit:
        assert f"α = {fit[0]['name'].removeprefix('fit: α = ')}" in reading
    else:
        assert "could not be fitted" in reading
