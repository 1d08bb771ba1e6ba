"""AppTest: the Concepts lab, each experiment run from its widgets at the tiny setting.

Every test runs offline in its own runs/ and data/ folders (conftest). Jobs run on the global
job registry, cleared around each test. ``run_every`` fragments never fire in AppTest, so a test
waits for the job and then calls ``at.run()``, as the fragment's "job ended → rerun" would. The
check that matters: the reading under the charts quotes the numbers the charts draw.
"""

from __future__ import annotations

import json
import math
import time

import pytest
from streamlit.testing.v1 import AppTest

from pages._shared import job_registry, model_choices
from toygpt import data as corpora
from toygpt import lab
from toygpt.model import GPT, GPTConfig, preset
from toygpt.pipeline import TrainSpec
from toygpt.runs import create_run, open_run
from toygpt.tokenizers import CharTokenizer
from toygpt.train import TrainConfig


@pytest.fixture(autouse=True)
def without_demo(monkeypatch, tmp_path):
    """These tests make their own runs; the shipped demo would otherwise be the default model."""
    monkeypatch.setenv("TOYGPT_DEMO_DIR", str(tmp_path / "no-demo"))

WAIT_S = 180  # generous: the two shared cores may be busy with other test runs


@pytest.fixture(autouse=True)
def offline_and_clean(monkeypatch, tmp_path):
    """No network (one torch thread comes from conftest),
    and no job left running before or after."""
    monkeypatch.setenv("TOYGPT_OFFLINE", "1")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    job_registry().clear()
    yield
    job_registry().clear()


def source_run() -> str:
    """A finished char-level run on the built-in toy-english corpus (for experiments 5 and 6)."""
    tokenizer = CharTokenizer.from_text(corpora.load_corpus("toy-english"))
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32)
    run = create_run(name="lab source", corpus="toy-english", tokenizer_spec="char", tokenizer=tokenizer,
                     model=GPT(config, seed=0), train_config=TrainConfig(max_steps=1))  # fmt: skip
    run.update_info(status="finished")
    return run.id


def open_lab(experiment: str | None = None) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.run()
    at.switch_page("pages/lab.py").run()
    assert not at.exception
    if experiment is not None:
        at.segmented_control(key="lab_experiment").set_value(experiment).run()
        assert not at.exception
    return at


def run_tiny(at: AppTest, experiment: str) -> lab.LabStatus:
    """Switch on the tiny setting, press Run, wait for the job, redraw; the job's snapshot."""
    key = experiment.replace("-", "_")
    at.toggle(key=f"lab_{key}_tiny").set_value(True).run()
    assert "Budget" in texts(at.caption)
    at.button(key=f"lab_{key}_run").click().run()
    assert not at.exception
    job = job_registry().get(at.query_params["lab_job"])
    assert job is not None, "Run should pin the new job's id in the URL"
    assert job.wait(WAIT_S), "the experiment did not end in time"
    at.run()  # what the fragment's st.rerun(scope="app") does when the job ends
    assert not at.exception
    snap = job.snapshot()
    assert snap.status == "finished", snap.message + snap.error_detail
    return snap


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def figures(at: AppTest, experiment: str) -> list[dict]:
    """The result charts (the live chart is gone once the job is done)."""
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == len(lab.figures(lab.load_result(lab.lab_runs(experiment)[0].id)))
    return charts


def trace(fig: dict, name: str) -> dict:
    return next(t for t in fig["data"] if t.get("name") == name)


def reading_of(at: AppTest) -> str:
    text = next(m.value for m in at.markdown if m.value.startswith("**What this run showed.**"))
    return text.removeprefix("**What this run showed.** ")


# --------------------------------------------------------------------------------------------
# The page and each experiment
# --------------------------------------------------------------------------------------------


def test_renders_every_experiment_with_claim_and_budget():
    at = open_lab()
    for name, spec in lab.EXPERIMENTS.items():
        at.segmented_control(key="lab_experiment").set_value(name).run()
        assert not at.exception, name
        assert spec.claim in texts(at.markdown)
        assert "No results yet" in texts(at.caption)
    at.segmented_control(key="lab_experiment").set_value("attention-range").run()
    assert at.button(key="lab_attention_range_run").disabled  # no trained run to look inside yet


def test_norm_position_runs_and_its_reading_matches_the_curves():
    at = open_lab("norm-position")
    snap = run_tiny(at, "norm-position")
    assert f"saved as run **{snap.run_id}**" in texts(at.success)
    done = next(line for line in texts(at.success).splitlines() if "finished** in" in line)
    time.sleep(1.2)  # case 2 (issue 13): the "Done in" clock kept counting on later reruns
    at.run()
    assert done in texts(at.success)
    curves, norms, sweep = figures(at, "norm-position")
    reading = reading_of(at)
    for variant in ("pre-LN", "post-LN"):
        assert f"{trace(curves, f'{variant} · val')['y'][-1]:.2f}" in reading
    ratio = trace(norms, "post-LN · at init")["y"][0] / trace(norms, "post-LN · at init")["y"][-1]
    assert f"{ratio:.2f}×" in reading
    assert f"{sweep['data'][0]['x'][-1]:g}" in reading  # the learning rate where the sweep stopped
    assert_log_axes_labelled_plainly([curves, norms, sweep])


def assert_log_axes_labelled_plainly(charts: list[dict]) -> None:
    """Case 7 (issue 13): log axes carried every minor tick label ("5 4 3 2 100 9 8 7 6 5").
    Each log axis now has its own ticks at 1, 2, 5 × 10^k (or 3 plain ones on a narrow range)."""
    logs = [axis for fig in charts for name, axis in fig["layout"].items()
            if name.startswith(("xaxis", "yaxis")) and axis.get("type") == "log"]  # fmt: skip
    assert logs, "expected a log-scale chart (the gradient norms, the sweep)"
    for axis in logs:
        assert axis.get("tickmode") == "array" and 1 <= len(axis["tickvals"]) <= 12, axis


def test_residual_scaling_reading_matches_the_stream_sizes():
    at = open_lab("residual-scaling")
    run_tiny(at, "residual-scaling")
    stds, losses = figures(at, "residual-scaling")
    reading = reading_of(at)
    deep = max(lab.tiny_params("residual-scaling").depths)
    for name in ("scaled", "unscaled"):
        assert f"{trace(stds, f'{deep} layers · {name}')['y'][-1]:.3f}" in reading
        assert f"{trace(losses, name)['y'][-1]:.2f}" in reading


def test_positions_reading_matches_the_curves_and_accuracy():
    at = open_lab("positions")
    run_tiny(at, "positions")
    curves, accuracy, similarity = figures(at, "positions")
    reading = reading_of(at)
    for variant in ("learned", "sinusoidal", "none"):
        assert f"{variant} {trace(curves, f'{variant} · val')['y'][-1]:.2f}" in reading
    assert {t["name"] for t in accuracy["data"]} == {"learned", "sinusoidal", "none"}
    assert len([t for t in similarity["data"] if t["type"] == "heatmap"]) == 4  # 2 encodings × before/after
    assert "sinusoidal" in reading.split("At initialisation the position vectors were")[1]


def test_tokenization_reading_matches_the_bars():
    at = open_lab("tokenization")
    run_tiny(at, "tokenization")
    (panels,) = figures(at, "tokenization")
    reading = reading_of(at)
    per_char = trace(panels, "tokens per character")
    for name, value in zip(per_char["x"], per_char["y"], strict=True):
        assert f"{name} {value:.2f}" in reading
    bits = trace(panels, "val bits per byte (lower is better)")
    for name, value in zip(bits["x"], bits["y"], strict=True):
        assert f"{name} {value:.3f}" in reading
    assert at.dataframe[0].value["tokenizer"].tolist() == per_char["x"]


def test_single_example_runs_on_a_copy_and_reading_matches():
    source = source_run()
    at = open_lab("single-example")
    assert "cannot read this sentence" in texts(at.error)  # the default has capitals toy-english lacks
    assert at.button(key="lab_single_example_run").disabled
    at.text_input(key="lab_single_example_sentence").set_value("the cat sees a dog .").run()
    assert not at.error
    before = (open_run(source).path / "model.safetensors").read_bytes()
    snap = run_tiny(at, "single-example")
    probs, steps = figures(at, "single-example")
    reading = reading_of(at)
    losses = trace(steps, "loss on the sentence")["y"]
    assert f"{losses[0]:.3f} → {losses[-1]:.3f}" in reading
    for name in ("before", "after"):
        values = trace(probs, name)["y"]
        assert f"{sum(values) / len(values):.3f}" in reading
    assert (open_run(source).path / "model.safetensors").read_bytes() == before
    assert open_run(snap.run_id).info()["init_from"] == source
    assert "Sample after" in texts(at.caption)
    assert snap.run_id in model_choices()  # the changed copy is a model to use in the sidebar


def test_by_product_lab_runs_stay_out_of_the_model_pickers():
    source = source_run()
    kept = lab.save_result(lab.residual_scaling.run(lab.tiny_params("residual-scaling")))
    at = open_lab("attention-range")
    assert list(model_choices()) == [source]  # the sidebar's picker
    assert at.selectbox(key="lab_attention_range_run_id").options == [source]
    at.segmented_control(key="lab_experiment").set_value("residual-scaling").run()
    assert at.selectbox(key="lab_residual_scaling_result").options == [kept]  # still reopened here


def test_attention_range_reading_matches_the_charts():
    source_run()
    at = open_lab("attention-range")
    run_tiny(at, "attention-range")
    distance, _, memory, loss = figures(at, "attention-range")
    reading = reading_of(at)
    flat = [v for row in distance["data"][0]["z"] for v in row]
    assert f"between {min(flat):.2f} and {max(flat):.2f} tokens" in reading
    losses = loss["data"][0]["y"]
    tail = losses[-(len(losses) // 4) :]
    assert f"{losses[0]:.2f} nats at position 0" in reading
    assert f"{sum(tail) / len(tail):.2f} on average over the last {len(tail)} positions" in reading
    assert f"{int(memory['data'][0]['y'][-1]):,} cached key/value numbers" in reading


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_extrapolation_reading_matches_the_curves_by_position_and_the_length_bars():
    at = open_lab("extrapolation")
    run_tiny(at, "extrapolation")
    by_position, lengths, _ = figures(at, "extrapolation")
    reading = reading_of(at)
    T = lab.tiny_params("extrapolation").block_size
    assert any(shape.get("x0") == T - 0.5 for shape in by_position["layout"]["shapes"])  # the training length, marked
    learned = trace(by_position, "learned")["y"]
    assert len(learned) == T and "learned cannot be read past T at all" in reading  # not silently cropped
    for name in ("sinusoidal", "rope", "alibi", "none"):
        y = trace(by_position, name)["y"]
        assert len(y) == 4 * T
        assert f"{name} {mean(y[T // 2 : T]):.2f} → {mean(y[T:]):.2f}" in reading
        bars = trace(lengths, name)["y"]
        assert f"{name} " + " / ".join(f"{v:.2f}" for v in bars) in reading
    assert f"learned {trace(lengths, 'learned')['y'][0]:.2f} / n/a / n/a" in reading
    assert "standard errors over" in reading and ("kept" in reading or "lost" in reading or "too close to call" in reading)


def test_recurrence_reading_matches_the_curves_speed_and_positions():
    at = open_lab("recurrence")
    run_tiny(at, "recurrence")
    steps, clock, speed, position = figures(at, "recurrence")
    reading = reading_of(at)
    for name in ("transformer", "LSTM"):
        assert f"{name} {trace(steps, f'{name} · val')['y'][-1]:.2f}" in reading
        assert trace(clock, name)["y"][-1] == trace(steps, f"{name} · val")["y"][-1]  # one number, two charts
        assert f"{name} {trace(position, name)['y'][0]:.2f} at position 0" in reading
    rates = dict(zip(speed["data"][0]["x"], speed["data"][0]["y"], strict=True))
    assert f"transformer {rates['transformer']:,.0f} tokens/s, LSTM {rates['LSTM']:,.0f} tokens/s" in reading
    assert "too close to call" in reading or "stands at this budget" in reading
    assert "LSTM is lab-only" in texts(at.caption)
    assert len(at.code) >= 2  # a sample from each


def test_weight_tying_reading_matches_the_parameters_losses_and_similarities():
    at = open_lab("weight-tying")
    run_tiny(at, "weight-tying")
    curves, cosines, sizes = figures(at, "weight-tying")
    reading = reading_of(at)
    counts = dict(zip(sizes["data"][0]["x"], sizes["data"][0]["y"], strict=True))
    assert f"the tied model has {counts['tied']:,}, the untied {counts['untied']:,}" in reading
    assert f"Tying saved {counts['untied'] - counts['tied']:,} parameters" in reading
    for name in ("tied", "untied"):
        assert f"{name} {trace(curves, f'{name} · val')['y'][-1]:.2f}" in reading
    assert f"ended at {mean(trace(cosines, 'after training')['y']):.3f}" in reading
    assert f"began unrelated (mean cosine {mean(trace(cosines, 'at initialisation')['y']):.3f})" in reading
    assert "too close to call" in reading or "stands at this budget" in reading


# --------------------------------------------------------------------------------------------
# Jobs: one at a time, Stop, and saved results that reopen (or are refused)
# --------------------------------------------------------------------------------------------


def test_a_second_job_is_refused_with_who_is_running():
    other = job_registry().start_job(lab.LabJob("positions", lab.tiny_params("positions", steps=5000)))
    at = open_lab("norm-position")
    at.toggle(key="lab_norm_position_tiny").set_value(True).run()
    # another tab's experiment is shown here (with its link), and Run waits for it
    assert "Positional encodings" in texts(at.subheader) and at.button(key="lab_norm_position_run").disabled
    other.stop()
    assert other.wait(WAIT_S)
    trainer = job_registry().start(TrainSpec(corpus="copy", model=preset("nano"), train=TrainConfig(max_steps=5000)))
    at.run()  # a training job holds the one slot: Run is refused, saying who is running
    at.button(key="lab_norm_position_run").click().run()
    assert not at.exception
    assert "already running" in texts(at.error) and "Training now" in texts(at.info)
    assert trainer.status == "running" and len(job_registry().active()) == 1


def test_stop_ends_a_long_experiment_and_saves_nothing():
    at = open_lab("positions")
    at.selectbox(key="lab_positions_preset").set_value("nano")
    at.number_input(key="lab_positions_steps").set_value(5000).run()
    at.button(key="lab_positions_run").click().run()
    assert not at.exception
    assert at.button(key="lab_positions_run").disabled  # ours is running: no second press
    at.button(key="lab_stop").click().run()
    job = job_registry().get(at.query_params["lab_job"])
    assert job.wait(WAIT_S)
    at.run()
    assert not at.exception
    assert job.status == "stopped" and "nothing was saved" in texts(at.info)
    assert lab.lab_runs() == []
    at.button(key="lab_dismiss").click().run()
    assert "lab_job" not in at.query_params


def test_a_saved_result_reopens_and_a_damaged_one_is_explained():
    good = lab.save_result(lab.positions.run(lab.tiny_params("positions")))
    bad = lab.save_result(lab.positions.run(lab.tiny_params("positions", seed=1)))
    (open_run(bad).path / lab.LAB_FILE).write_text('{"experiment": "positions", "result": {"steps": "many"}}')
    at = open_lab("positions")
    results = at.selectbox(key="lab_positions_result")
    assert set(results.options) == {good, bad}
    results.set_value(good).run()
    assert reading_of(at) == lab.reading(lab.load_result(good))
    at.selectbox(key="lab_positions_result").set_value(bad).run()
    assert not at.exception
    assert "cannot be shown" in texts(at.error)


def test_bad_text_and_impossible_settings_are_explained():
    at = open_lab("tokenization")
    at.selectbox(key="lab_tokenization_source").set_value("__upload__").run()
    assert at.button(key="lab_tokenization_run").disabled
    at.file_uploader(key="lab_tokenization_upload").set_value(("latin1.txt", "café\n".encode("latin-1") * 50, "text/plain")).run()
    assert not at.exception and "not UTF-8" in texts(at.error)
    (uploader,) = at.get("file_uploader")
    assert uploader.proto.max_upload_size_mb == 20  # the page's limit, not the server's 600 MB
    at.file_uploader(key="lab_tokenization_upload").set_value(("big.txt", b"ab " * 6_700_000, "text/plain")).run()
    assert "20,000,000" in texts(at.error) and "max_bytes" not in texts(at.error)
    at.selectbox(key="lab_tokenization_source").set_value("__paste__").run()
    at.text_area(key="lab_tokenization_text").set_value("x" * 150_000).run()
    assert "only the first 100,000 are used" in texts(at.warning)
    at.multiselect(key="lab_tokenization_tokenizers").set_value([]).run()
    assert "choose 1 to 8 tokenizers" in texts(at.error) and at.button(key="lab_tokenization_run").disabled
    at.segmented_control(key="lab_experiment").set_value("residual-scaling").run()
    at.multiselect(key="lab_residual_scaling_depths").set_value([]).run()
    assert "1 to 6 layer counts" in texts(at.error)
    at.selectbox(key="lab_residual_scaling_corpus").set_value("shakespeare").run()
    assert "not on this machine yet" in texts(at.warning)  # case 8: the same download-or-upload
    assert at.file_uploader(key="lab_residual_scaling_corpus_missing_file") is not None
    assert at.button(key="lab_residual_scaling_corpus_missing_download") is not None
    assert not at.exception and job_registry().jobs() == []


def test_an_unknown_job_in_the_link_is_explained():
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.query_params["lab_job"] = "0123456789"
    at.run()
    at.switch_page("pages/lab.py").run()
    assert not at.exception
    assert "not known to this server" in texts(at.info) and "lab_job" not in at.query_params


def test_budget_is_stated_before_the_run():
    at = open_lab("norm-position")
    budget = next(c.value for c in at.caption if "Budget" in str(c.value))
    assert lab.norm_position.NormPositionParams().budget().text in budget
    assert math.isfinite(lab.norm_position.NormPositionParams().budget().seconds)


def test_the_training_page_works_while_a_lab_job_holds_the_slot():
    job = job_registry().start_job(lab.LabJob("positions", lab.tiny_params("positions", steps=5000)))
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    at.button(key="train_start").click().run()
    assert not at.exception
    assert "already running" in texts(at.error)
    assert "The Concepts lab is running **Positional encodings**" in texts(at.info)
    assert job.status == "running"


def test_any_tab_can_take_a_running_experiments_link_and_stop_it():
    """Case 8 (issue 13): Stop worked only in the tab that started the job, and another tab was
    told "only that page can stop it" without the link that brings Stop back."""
    job = job_registry().start_job(lab.LabJob("positions", lab.tiny_params("positions", steps=5000)))
    at = open_lab()  # a tab without the link
    assert f"?lab_job={job.id}" in texts(at.caption) and "lab_stop" not in [b.key for b in at.button]
    at.button(key="lab_adopt").click().run()
    assert at.query_params["lab_job"] == job.id
    at.button(key="lab_stop").click().run()
    assert job.wait(WAIT_S) and job.snapshot().status == "stopped"
