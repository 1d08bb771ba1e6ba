"""Unit tests for toygpt.lab: the experiments' measuring functions on known answers, paired runs
that really share seed and data order, single-example learning that never touches its source
run, saved results that reopen as they were, and hostile lab.json files refused."""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from dataclasses import replace

import pytest
import torch

from toygpt import data as corpora
from toygpt import lab
from toygpt.jobs import JobRefused, JobRegistry
from toygpt.model import GPT, GPTConfig, preset
from toygpt.pipeline import TrainSpec
from toygpt.runs import create_run, open_run
from toygpt.tokenizers import ByteTokenizer, CharTokenizer
from toygpt.train import TrainConfig


@pytest.fixture
def source_run() -> str:
    """A small char-level run on toy-english (its corpus is built in, so val loss works)."""
    text = corpora.load_corpus("toy-english")
    tokenizer = CharTokenizer.from_text(text)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32), seed=0)
    run = create_run(name="lab source", corpus="toy-english", tokenizer_spec="char", tokenizer=tokenizer,
                     model=model, train_config=TrainConfig(max_steps=1))  # fmt: skip
    run.update_info(status="finished")
    return run.id


def folder_digest(path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------
# Known answers
# --------------------------------------------------------------------------------------------


def test_bits_per_byte_known_cases():
    assert lab.tokenization.bits_per_byte(math.log(256), tokens=10, n_bytes=10) == pytest.approx(8.0)  # uniform bytes
    # 4 bytes per token: a token's 2 nats spread over its 4 bytes is 0.5 nats = 0.7213 bits per byte
    assert lab.tokenization.bits_per_byte(2.0, tokens=25, n_bytes=100) == pytest.approx(0.5 / math.log(2))
    with pytest.raises(lab.LabError, match="at least one token"):
        lab.tokenization.bits_per_byte(1.0, tokens=0, n_bytes=10)


def test_val_bytes_counts_bytes_not_characters():
    text = "héllo wörld " * 200  # é and ö are two UTF-8 bytes each
    tokenizer = ByteTokenizer()
    token_data = corpora.prepare(text, tokenizer, cache=False)
    assert lab.tokenization.val_bytes(tokenizer, token_data) == len(token_data.val)  # one byte per byte token
    char = CharTokenizer.from_text(text)
    char_data = corpora.prepare(text, char, cache=False)
    decoded = char.decode(char_data.val.tolist())
    assert lab.tokenization.val_bytes(char, char_data) == len(decoded.encode("utf-8")) > len(decoded)


def test_unigram_loss_of_a_fair_coin_and_a_constant():
    assert lab.norm_position.unigram_loss(corpora.TokenData(torch.tensor([0, 1] * 50), 2)) == pytest.approx(math.log(2))
    assert lab.norm_position.unigram_loss(corpora.TokenData(torch.tensor([3] * 50), 5)) == pytest.approx(0.0)


def test_scored_positions_answers_and_words():
    assert lab.positions.scored_positions("abc>cba") == [(4, 0), (5, 1), (6, 2)]
    assert lab.positions.scored_positions("12+3=15") == [(5, 0), (6, 1)]
    assert lab.positions.scored_positions("the fox .") == [(0, 0), (1, 1), (2, 2), (4, 0), (5, 1), (6, 2), (8, 0)]


class Oracle:
    """A stand-in model whose logits put all weight on a fixed next token for each input
    position: the true next token (``shift=0``) or a wrong one (``shift=1``)."""

    def __init__(self, vocab: int, shift: int) -> None:
        self.vocab, self.shift = vocab, shift

    def eval(self):
        return self

    def __call__(self, idx):
        logits = torch.zeros(*idx.shape, self.vocab)
        for b in range(idx.shape[0]):
            for t in range(idx.shape[1] - 1):
                logits[b, t, (int(idx[b, t + 1]) + self.shift) % self.vocab] = 1.0
        return logits, None


def test_order_accuracy_reads_the_prediction_of_the_previous_position():
    tokenizer = CharTokenizer.from_text("\nab>ba xy")
    lines = ["ab>ba", "xy ab"]
    right = lab.positions.order_accuracy(Oracle(tokenizer.vocab_size, 0), tokenizer, lines)
    wrong = lab.positions.order_accuracy(Oracle(tokenizer.vocab_size, 1), tokenizer, lines)
    assert right == (1.0, [1.0, 1.0], [3, 3])  # "ba" (the answer), then the words "xy" and "ab"
    assert wrong[0] == 0.0


def test_weight_by_distance_shares_sum_to_one_and_find_the_previous_token():
    T = 5
    previous = torch.zeros(1, 1, T, T)
    previous[0, 0, 0, 0] = 1.0
    for i in range(1, T):
        previous[0, 0, i, i - 1] = 1.0  # every query looks exactly one token back
    shares = lab.attention_range.weight_by_distance(previous)
    assert shares.sum(-1).item() == pytest.approx(1.0)
    assert shares[0, 1].item() == pytest.approx((T - 1) / T) and shares[0, 0].item() == pytest.approx(1 / T)


def test_kv_numbers_grow_with_position_while_an_rnn_state_does_not():
    assert lab.attention_range.kv_numbers(n_layer=4, n_embd=128, position=0) == 2 * 4 * 128
    assert lab.attention_range.kv_numbers(4, 128, 63) == 64 * lab.attention_range.kv_numbers(4, 128, 0)


def test_gradient_norms_by_layer_leave_the_weights_alone(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    x = torch.randint(0, 32, (2, 16), generator=torch.Generator().manual_seed(0))
    norms = lab.norm_position.gradient_norms_by_layer(tiny_model, (x, x))
    assert len(norms) == 2 and all(n > 0 for n in norms)
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    assert all(p.grad is None for p in tiny_model.parameters())


def test_paired_models_start_from_the_same_weights():
    pre = GPT(preset("nano", vocab_size=30, norm_position="pre"), seed=7).state_dict()
    post = GPT(preset("nano", vocab_size=30, norm_position="post"), seed=7).state_dict()
    shared = set(pre) & set(post)
    assert len(shared) > 10 and all(torch.equal(pre[k], post[k]) for k in shared)


# --------------------------------------------------------------------------------------------
# Experiments
# --------------------------------------------------------------------------------------------


def test_paired_runs_share_seed_and_data_order(monkeypatch):
    """pre-LN and post-LN see exactly the same batches, in the same order."""
    seen: list[tuple[str, torch.Tensor]] = []
    original = corpora.TokenData.get_batch

    def recording(self, split, batch_size, block_size, generator, device=None):
        x, y = original(self, split, batch_size, block_size, generator, device)
        seen.append((split, x.clone()))
        return x, y

    monkeypatch.setattr(corpora.TokenData, "get_batch", recording)
    params = lab.tiny_params("norm-position", lr_sweep=False, steps=12)
    result = lab.norm_position.run(params)
    shared, runs = seen[0], seen[1:]  # one batch for the gradient norms, then each variant's own calls
    half = len(runs) // 2
    assert shared[0] == "val" and len(runs) % 2 == 0
    assert sum(split == "train" for split, _ in runs[:half]) >= params.steps
    assert all(a[0] == b[0] and torch.equal(a[1], b[1]) for a, b in zip(runs[:half], runs[half:], strict=True))
    assert set(result.curves) == {"pre-LN", "post-LN"} and result.steps == 12


def test_norm_position_reading_quotes_its_numbers():
    result = lab.norm_position.run(lab.tiny_params("norm-position"))
    text = lab.reading(result)
    for variant in ("pre-LN", "post-LN"):
        assert f"{result.final_val[variant]:.2f}" in text
    assert result.sweep and f"{result.sweep[-1]['lr']:g}" in text
    ratio = result.grad_norms["post-LN"]["init"][0] / result.grad_norms["post-LN"]["init"][-1]
    assert f"{ratio:.2f}×" in text
    assert len(lab.figures(result)) == 3


def test_single_example_learning_leaves_the_source_run_unchanged(source_run):
    folder = open_run(source_run).path
    before = folder_digest(folder)
    params = lab.single_example.SingleExampleParams(run_id=source_run, sentence="the cat sees a dog .", steps=8,
                                     learning_rate=1e-2, sample_tokens=10, eval_batches=2)  # fmt: skip
    result = lab.single_example.run(params)
    saved = lab.save_result(result)
    assert folder_digest(folder) == before  # not a byte of the source changed
    assert sum(result.probs_after) > sum(result.probs_before)
    assert result.example_losses[-1] < result.example_losses[0]
    assert result.val_before is not None and result.val_after is not None
    source = open_run(source_run).load_model("latest").model.state_dict()
    changed = open_run(saved).load_model("latest").model.state_dict()
    assert any(not torch.equal(source[k], changed[k]) for k in source)
    assert open_run(saved).info()["init_from"] == source_run


def test_single_example_refuses_characters_the_model_never_saw(source_run):
    params = lab.single_example.SingleExampleParams(run_id=source_run, sentence="Zürich ☃", steps=1)
    with pytest.raises(lab.LabError, match="cannot encode"):
        lab.single_example.run(params)


def test_every_experiment_saves_and_reopens_as_a_tagged_run(source_run):
    extra = {"single-example": dict(run_id=source_run, sentence="the dog runs ."),
             "attention-range": dict(run_id=source_run)}  # fmt: skip
    for name in lab.EXPERIMENTS:
        result = lab.run_experiment(name, lab.tiny_params(name, **extra.get(name, {})))
        run_id = lab.save_result(result)
        reopened = lab.load_result(run_id)
        assert reopened == result and reopened.artifacts is None
        assert lab.reading(reopened) == lab.reading(result)
        info = open_run(run_id).info()
        assert f"lab:{name}" in info["tags"] and info["status"] == "finished"
        # single-example learning and the induction lab leave a model worth picking; the others' weights are a by-product
        assert (lab.RESULT_ONLY_TAG in info["tags"]) == (name not in ("single-example", "induction-heads"))
        assert [i.id for i in lab.lab_runs(name)] == [run_id]
    assert len(lab.lab_runs()) == len(lab.EXPERIMENTS)


def test_tokenization_counts_and_bits_per_byte_agree():
    params = lab.tiny_params("tokenization", text="the cat sees a dog . " * 300, tokenizers=("char", "byte"))
    result = lab.tokenization.run(params)
    char, byte = result.rows
    assert char["tokens"] == byte["tokens"] == len(params.text)  # ASCII: a char is a byte
    assert char["embedding_params"] == char["vocab_size"] * 64 and byte["embedding_params"] == 256 * 64
    for row in result.rows:  # bits per byte from nats per token, tokens and bytes (1 byte per token here)
        assert row["bits_per_byte"] == pytest.approx(row["val_nats_per_token"] / math.log(2), rel=1e-4)
    assert result.params["text_chars"] == len(params.text) and "text" not in result.params


def test_tokenization_says_when_bpe_runs_out_of_merges():
    params = lab.tiny_params("tokenization", text="ab ab ab abc " * 400, tokenizers=("bpe-400",), train_seconds=0.0)
    (row,) = lab.tokenization.run(params).rows
    assert row["vocab_size"] < 400
    assert f"bpe-400 stopped at {row['vocab_size']} tokens" in lab.reading(lab.tokenization.run(params))


def test_tokenization_includes_gpt2_offline_with_an_empty_cache(monkeypatch, tmp_path):
    from toygpt.tokenizers import get_tokenizer

    monkeypatch.setenv("TOYGPT_OFFLINE", "1")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    assert "gpt2" in lab.EXPERIMENTS["tokenization"].tiny["tokenizers"]  # the quick look shows it too
    params = lab.tiny_params("tokenization", tokenizers=("char", "gpt2"), train_seconds=0.0)
    result = lab.tokenization.run(params)
    text = corpora_text(params)
    row = result.rows[1]
    assert row["tokenizer"] == "gpt2" and row["error"] is None and row["vocab_size"] == 50257
    assert row["tokens"] == len(get_tokenizer("gpt2").encode(text)) < len(text)  # fewer tokens than chars
    assert "gpt2" in lab.reading(result) and "Left out" not in lab.reading(result)


def test_tokenization_without_gpt2s_files_leaves_it_out_with_the_reason(monkeypatch, tmp_path):
    from toygpt.tokenizers import tiktoken_

    monkeypatch.setenv("TOYGPT_OFFLINE", "1")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    monkeypatch.setattr(tiktoken_, "packaged_path", lambda url: None)  # as if the package were missing
    monkeypatch.setattr(tiktoken_, "_loaded", {})
    monkeypatch.setattr(tiktoken_, "_failures", {})
    params = lab.tiny_params("tokenization", tokenizers=("char", "gpt2"), train_seconds=0.0)
    result = lab.tokenization.run(params)
    assert result.rows[1]["tokenizer"] == "gpt2" and "downloaded on first use" in result.rows[1]["error"]
    assert "Left out: gpt2" in lab.reading(result)


def corpora_text(params) -> str:
    from toygpt import data

    return data.load_corpus(params.corpus)[: lab.tokenization.MAX_TOKENIZE_CHARS]


def test_positions_compare_three_encodings_and_sinusoids_never_change():
    result = lab.positions.run(lab.tiny_params("positions"))
    assert set(result.final_val) == set(result.accuracy) == {"learned", "sinusoidal", "none"}
    assert set(result.similarity) == {"learned", "sinusoidal"}  # "none" has no position vectors
    assert lab.positions.similarity_change(result.similarity["sinusoidal"]) == 0.0
    assert lab.positions.similarity_change(result.similarity["learned"]) > 0.0
    assert "0.000 (sinusoidal)" in lab.reading(result)
    # unscaled ±1 sinusoids next to std-0.02 token embeddings; learned positions start at the same 0.02
    # sinusoids (±1) next to tokens scaled by sqrt(n_embd) from std 0.02: a few times louder, not 30×
    assert 1.5 < result.init_size_ratio["sinusoidal"] < 10 and 0.8 < result.init_size_ratio["learned"] < 1.25


def test_residual_scaling_shrinks_the_deep_stream_at_init():
    result = lab.residual_scaling.run(lab.tiny_params("residual-scaling", depths=(1, 8)))
    deep = -1
    assert result.final_std["unscaled"][deep] > result.final_std["scaled"][deep]
    assert f"{result.final_std['unscaled'][deep]:.3f}" in lab.reading(result)


# --------------------------------------------------------------------------------------------
# Bad input, Stop, and the job registry
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: lab.norm_position.NormPositionParams(preset="gpt2"), "choose one of"),
        (lambda: lab.norm_position.NormPositionParams(steps=0), "steps=0"),
        (lambda: lab.norm_position.NormPositionParams(sweep_lrs=()), "1 to 8 learning rates"),
        (lambda: lab.residual_scaling.ResidualScalingParams(depths=()), "1 to 6 layer counts"),
        (lambda: lab.positions.PositionParams(corpus="shakespeare"), "order matters"),
        (lambda: lab.tokenization.TokenizationParams(tokenizers=("bpe-10",)), "bpe-N with N from 257"),
        (lambda: lab.tokenization.TokenizationParams(text="   "), "empty"),
        (lambda: lab.single_example.SingleExampleParams(sentence=""), "type a sentence"),
        (lambda: lab.single_example.SingleExampleParams(optimizer="lbfgs"), "adam"),
        (lambda: lab.attention_range.AttentionRangeParams(windows=0), "windows=0"),
        (lambda: lab.extrapolation.ExtrapolationParams(encodings=("learned", "xpos")), "'xpos' is not known"),
        (lambda: lab.extrapolation.ExtrapolationParams(encodings=()), "one or more"),
        (lambda: lab.extrapolation.ExtrapolationParams(block_size=4), "block_size=4"),
        (lambda: lab.recurrence.RecurrenceParams(lstm_layers=0), "lstm_layers=0"),
        (lambda: lab.weight_tying.WeightTyingParams(preset="medium"), "choose one of"),
    ],
)
def test_bad_parameters_are_refused_with_the_fix(make, message):
    with pytest.raises(lab.LabError, match=re.escape(message)):
        make()


def test_sweep_learning_rates_are_sorted_rising():
    assert lab.norm_position.NormPositionParams(sweep_lrs=(0.1, 0.01)).sweep_lrs == (0.01, 0.1)


def test_budgets_are_stated_and_a_quick_look_costs_less(monkeypatch):
    # Budgets time real steps here (case 6 of issue 13), so how long the defaults take is the
    # machine's business (bench/, not a unit test): a fixed pace keeps this test about words.
    from toygpt.lab import budget as budgets

    monkeypatch.setattr(budgets, "_probes", {})
    monkeypatch.setattr(budgets, "measure_step_seconds", lambda config, train, **kw: 0.01 * config.n_layer)
    for name, spec in lab.EXPERIMENTS.items():
        defaults = spec.params_type()
        budget = defaults.budget()
        assert budget.text.endswith(".") and budget.seconds > 0, name
        assert spec.params_type(**spec.tiny).budget().seconds < budget.seconds


def test_stop_before_start_raises_and_saves_nothing():
    stop = threading.Event()
    stop.set()
    with pytest.raises(lab.ExperimentStopped):
        lab.positions.run(lab.tiny_params("positions"), stop=stop)
    assert lab.lab_runs() == []


def test_progress_rises_to_the_end_and_feeds_live_curves():
    events: list[dict] = []
    lab.positions.run(lab.tiny_params("positions"), progress=events.append)
    fractions = [e["fraction"] for e in events if e["type"] == "progress"]
    assert fractions == sorted(fractions) and 0.9 < fractions[-1] <= 1.0
    curves = lab.live_curves([e for e in events if e["type"] == "metric"])
    assert set(curves) == {"learned", "sinusoidal", "none"}
    assert all(any("val_loss" in row for row in rows) for rows in curves.values())


def test_lab_job_shares_the_registry_cap_with_training():
    registry = JobRegistry(max_jobs=1)
    job = registry.start_job(lab.LabJob("positions", lab.tiny_params("positions", steps=5000)))
    try:
        with pytest.raises(JobRefused, match="already running"):
            registry.start(TrainSpec(corpus="copy", model=preset("nano"), train=TrainConfig(max_steps=5)))
        with pytest.raises(JobRefused):
            registry.start_job(lab.LabJob("positions", lab.tiny_params("positions")))
        assert registry.active() == [job] and job.snapshot().kind == "lab"
    finally:
        job.stop()
        assert job.wait(60)
    assert job.status == "stopped" and job.snapshot().run_id is None and lab.lab_runs() == []


def test_lab_job_finishes_and_saves(source_run):
    job = lab.LabJob("attention-range", lab.tiny_params("attention-range", run_id=source_run)).start()
    assert job.wait(60)
    snap = job.snapshot()
    assert snap.status == "finished" and snap.progress == 1.0 and snap.done
    assert lab.load_result(snap.run_id).source_run == source_run
    assert snap.message == lab.reading(job.result)


def test_lab_job_failure_is_reported_not_raised():
    job = lab.LabJob("attention-range", lab.attention_range.AttentionRangeParams(run_id="no-such-run")).start()
    assert job.wait(30)
    assert job.status == "failed" and "no-such-run" in job.snapshot().message


# --------------------------------------------------------------------------------------------
# Hostile or damaged saved results
# --------------------------------------------------------------------------------------------


@pytest.fixture
def saved_attention(source_run) -> str:
    return lab.save_result(lab.attention_range.run(lab.tiny_params("attention-range", run_id=source_run)))


def rewrite(run_id: str, change) -> None:
    path = open_run(run_id).path / lab.LAB_FILE
    saved = json.loads(path.read_text())
    path.write_text(change(saved) if callable(change) else change)


@pytest.mark.parametrize(
    "change, message",
    [
        ("{not json", "no readable lab results"),
        (lambda s: json.dumps({**s, "experiment": "os.system"}), "not a lab result"),
        (lambda s: json.dumps({**s, "result": {**s["result"], "extra": 1}}), "do not match"),
        (lambda s: json.dumps({**s, "result": {**s["result"], "experiment": "positions"}}), "do not fit"),
        (lambda s: json.dumps({**s, "result": {**s["result"], "loss_by_position": []}}), "do not fit"),
        (lambda s: json.dumps({**s, "result": {**s["result"], "distance": "a string"}}), "do not fit"),
    ],
)
def test_damaged_lab_files_are_refused_with_the_reason(saved_attention, change, message):
    rewrite(saved_attention, change)
    with pytest.raises(lab.LabError, match=message):
        lab.load_result(saved_attention)


def test_a_result_without_its_model_cannot_be_saved_twice(saved_attention):
    with pytest.raises(lab.LabError, match="already saved"):
        lab.save_result(lab.load_result(saved_attention))


def test_a_lab_run_exports_and_imports_with_its_results(saved_attention):
    from toygpt.run_archive import export_zip, import_zip

    copy = import_zip(export_zip(saved_attention), name="lab copy")
    assert lab.load_result(copy) == lab.load_result(saved_attention)
    assert {i.id for i in lab.lab_runs("attention-range")} == {saved_attention, copy}


# --------------------------------------------------------------------------------------------
# Issue 13, case 5: every reading says how sure it is
# --------------------------------------------------------------------------------------------


def curve(*losses: float) -> list[dict]:
    return [{"step": 10 * i, "val_loss": v} for i, v in enumerate(losses)]


def test_certainty_module_doctests():
    import doctest

    from toygpt import certainty

    assert doctest.testmod(certainty).failed == 0


def test_a_gap_inside_the_runs_own_noise_is_too_close_to_call_and_a_wide_one_stands():
    result = lab.run_experiment("norm-position", lab.tiny_params("norm-position", lr_sweep=False))
    wobbly = curve(4.0, 3.0, 2.70, 2.60, 2.75, 2.66)  # spread of the last four: 0.15
    close = replace(result, curves={"pre-LN": wobbly, "post-LN": curve(4.0, 3.0, 2.8, 2.7, 2.72, 2.73)},
                    final_val={"pre-LN": 2.66, "post-LN": 2.73})  # 0.07 apart: inside 2 × 0.15
    text = lab.reading(close)
    assert "post-LN's validation loss was 0.07 higher" in text
    assert "too close to call at this budget" in text and "0.150" in text
    wide = replace(close, curves={"pre-LN": curve(4.0, 2.0, 1.52, 1.50, 1.51, 1.50), "post-LN": wobbly},
                   final_val={"pre-LN": 1.50, "post-LN": 2.66})  # fmt: skip
    assert "so it stands at this budget" in lab.reading(wide)
    few = replace(close, curves={"pre-LN": curve(4.0, 2.66), "post-LN": curve(4.0, 2.73)})
    assert "too few to tell that gap from noise" in lab.reading(few)


def test_the_batches_drawn_count_as_noise_too():
    """Evaluations reuse the same few batches: steady val losses can still hide a batch-draw
    wobble, which the training batches (fresh draws) show."""
    from toygpt.certainty import compare_runs

    steady_a, steady_b = curve(3.0, 2.5, 2.40, 2.40, 2.40, 2.40), curve(3.0, 2.5, 2.45, 2.45, 2.45, 2.45)
    assert compare_runs(steady_a, steady_b, eval_batches=2).called  # no train rows: spread only
    noisy = [{"step": i, "train_loss": 2.4 + (0.1 if i % 2 else -0.1)} for i in range(8)]  # std ≈ 0.107
    verdict = compare_runs(steady_a + noisy, steady_b + noisy, eval_batches=2)
    assert not verdict.called and verdict.source == "batches"  # 0.05 < 2 × 0.107/√2
    assert "moves with the batches drawn" in verdict.sentence()


def test_a_quick_look_says_so_and_a_sweep_too_short_to_learn_draws_no_conclusion():
    """The reported case: "both diverged at learning rate 0.01" after 10 steps per training."""
    result = lab.run_experiment("norm-position", lab.tiny_params("norm-position"))
    text = lab.reading(result)
    assert text.startswith("Quick look: a tiny setting for trying the page, not for conclusions")
    sweep = [dict(row, diverged=True) for row in result.sweep if row["lr"] == result.sweep[0]["lr"]]
    stuck = replace(result, sweep=sweep)  # even the gentlest rate "failed" at 10 steps
    text = lab.reading(stuck)
    assert "The learning-rate sweep cannot tell here" in text and "both diverged" not in text
    full = replace(result, params={**result.params, "steps": 500})  # not the quick-look setting
    assert not lab.reading(full).startswith("Quick look")


def test_a_budget_comes_from_steps_timed_here(monkeypatch):
    """Case 6 (issue 13): "~1.9 min" from constants, 67 s in fact. Budgets now time real steps."""
    from toygpt.lab import budget

    timed = []
    monkeypatch.setattr(budget, "_probes", {})
    monkeypatch.setattr(budget, "measure_step_seconds", lambda config, train, **kw: timed.append(config) or 0.1)
    params = lab.norm_position.NormPositionParams(preset="nano", corpus="copy", steps=200, lr_sweep=False)
    spent = params.budget()
    assert spent.seconds == pytest.approx(2 * 200 * 0.1 * (1 + budget.EVAL_SHARE))
    assert "timed here just now" in spent.text
    assert len(timed) == 1 and timed[0].n_layer == 2  # one probe of the nano shape, reused
    params.budget()
    assert len(timed) == 1


# --------------------------------------------------------------------------------------------
# How sure a reading is; extrapolation, recurrence and weight tying
# --------------------------------------------------------------------------------------------


def test_standard_error_of_a_mean_over_windows():
    from toygpt.certainty import standard_error

    assert standard_error([1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(5 / 3 / 4))
    assert standard_error([2.0, 2.0, 2.0]) == 0.0 and standard_error([1.0]) is None


def test_extrapolation_verdicts_from_the_rise_and_its_standard_error():
    v = lab.extrapolation.verdict
    assert v(0.0, 0.01) == "kept" and v(0.5, 0.01) == "lost"
    assert v(0.09, 0.01) == "too close to call"  # 0.09 ± 0.02 straddles the 0.1-nat margin
    assert v(0.0, None) == "too close to call"


def test_a_causal_model_read_at_4T_gives_the_same_first_T_losses_as_read_at_T():
    """Why one pass over 4T tokens gives the losses at lengths T and 2T too."""
    windows = torch.randint(0, 30, (3, 4 * 8 + 1), generator=torch.Generator().manual_seed(0))
    for encoding in ("sinusoidal", "rope", "alibi", "none"):
        model = GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=16, pos_encoding=encoding), seed=0)
        long, short = lab.extrapolation.window_losses(model, windows), lab.extrapolation.window_losses(model, windows[:, :9])
        assert long.shape == (3, 32) and torch.allclose(long[:, :8], short, atol=1e-5), encoding


def test_extrapolation_reads_past_T_except_learned_which_says_why():
    result = lab.extrapolation.run(lab.tiny_params("extrapolation"))
    T = result.block_size
    assert set(result.loss_by_position) == set(lab.extrapolation.ENCODINGS)
    assert len(result.loss_by_position["learned"]) == T and result.beyond["learned"] is None
    assert "learned positions stop at block_size" in result.refused["learned"] and len(result.refused) == 1
    for name in ("sinusoidal", "rope", "alibi", "none"):
        curve = result.loss_by_position[name]
        assert len(curve) == 4 * T and result.rise_se[name] > 0
        assert result.loss_at_length[name][str(T)] == pytest.approx(sum(curve[:T]) / T, rel=1e-4)
        assert result.beyond[name] == pytest.approx(sum(curve[T:]) / (3 * T), rel=1e-4)
    assert result.loss_at_length["learned"][str(2 * T)] is None


def test_lstm_parameter_count_is_within_ten_percent_of_each_preset():
    from toygpt.model import PRESETS, total_parameters
    from toygpt.recurrent import LSTMLanguageModel, lstm_matching, lstm_parameters

    for name in PRESETS:
        for vocab in (65, 50257):
            gpt = preset(name, vocab_size=vocab)
            for layers in (1, 2, 3):
                config = lstm_matching(gpt, layers)
                assert abs(lstm_parameters(config) - total_parameters(gpt)) <= 0.10 * total_parameters(gpt), (name, vocab, layers)
    small = lstm_matching(preset("small", vocab_size=65))
    assert LSTMLanguageModel(small, seed=0).num_parameters() == lstm_parameters(small)  # the formula is the model
    untied = small.replace(tie_embeddings=False)
    assert LSTMLanguageModel(untied).num_parameters() == lstm_parameters(untied) == lstm_parameters(small) + 65 * small.n_hidden


def test_lstm_is_causal_and_its_carried_state_equals_reading_everything_again():
    from toygpt.recurrent import LSTMConfig, LSTMLanguageModel

    model = LSTMLanguageModel(LSTMConfig(vocab_size=20, block_size=8, n_layer=2, n_hidden=16), seed=0).eval()
    idx = torch.randint(0, 20, (2, 12), generator=torch.Generator().manual_seed(1))
    full, _ = model(idx)  # any length: 12 > block_size
    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 20
    assert torch.equal(model(changed)[0][:, :7], full[:, :7])  # a later token never changes earlier logits
    head, state = model.step(idx[:, :5])
    tail, _ = model.step(idx[:, 5:], state)
    assert torch.allclose(torch.cat([head, tail], 1), full, atol=1e-6)
    assert model.generate(idx[:, :3], 5, seed=0).shape == (2, 8)
    with pytest.raises(ValueError, match="token ids"):
        model(torch.tensor([[20]]))


def test_the_lstm_trains_with_the_shared_trainer():
    from toygpt.recurrent import LSTMLanguageModel, lstm_matching
    from toygpt.trainer import Trainer

    text = corpora.load_corpus("toy-english")
    tokenizer = CharTokenizer.from_text(text)
    model = LSTMLanguageModel(lstm_matching(preset("nano", vocab_size=tokenizer.vocab_size)), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    events = []
    config = TrainConfig(max_steps=40, batch_size=8, eval_interval=20, eval_batches=2, precision="fp32",
                         checkpoint_interval=0, max_snapshots=0, log_interval=10)  # fmt: skip
    end = Trainer(model, corpora.prepare(text, tokenizer), config, on_event=events.append).run()
    evals = [e["val_loss"] for e in events if e["type"] == "eval"]
    assert end["status"] == "finished" and end["step"] == 40 and len(evals) == 3
    assert evals[-1] < evals[0] - 0.2  # it learned something (ln 28 ≈ 3.33 at the start)
    assert events[0]["params"] == model.num_parameters()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training  # handed back in eval mode, as a GPT is


def test_the_lstm_trains_under_bf16_autocast_too():
    """precision="auto" picks bf16 on CPUs with AVX-512 BF16 / AMX; the LSTM must train there too."""
    from toygpt.recurrent import LSTMConfig, LSTMLanguageModel
    from toygpt.trainer import Trainer

    data = corpora.TokenData(torch.arange(400) % 7, 7)
    model = LSTMLanguageModel(LSTMConfig(vocab_size=7, block_size=8, n_hidden=16), seed=0)
    config = TrainConfig(max_steps=3, batch_size=2, eval_interval=3, eval_batches=1, precision="bf16",
                         checkpoint_interval=0, max_snapshots=0)  # fmt: skip
    end = Trainer(model, data, config).run()
    assert end["status"] == "finished" and math.isfinite(end["val_loss"])


def test_recurrence_compares_a_transformer_and_an_lstm_of_its_size():
    result = lab.recurrence.run(lab.tiny_params("recurrence"))
    t, lstm = result.parameters["transformer"], result.parameters["LSTM"]
    assert abs(lstm - t) <= 0.10 * t
    assert all(v > 0 for v in result.tokens_per_s.values())
    assert {len(v) for v in result.loss_by_position.values()} == {result.block_size}
    assert all(isinstance(s, str) for s in result.samples.values())
    assert [r["val_loss"] for r in result.clock["LSTM"]] == [r["val_loss"] for r in result.curves["LSTM"] if "val_loss" in r]


def test_weight_tying_saves_the_head_and_measures_row_similarity():
    result = lab.weight_tying.run(lab.tiny_params("weight-tying"))
    assert result.parameters["untied"] - result.parameters["tied"] == result.vocab_size * result.n_embd
    assert len(result.matched_after) == len(result.matched_before) == len(result.token_labels) == result.vocab_size
    assert all(-1.0 <= c <= 1.0 for c in result.matched_after)
    tied = GPT(preset("nano", vocab_size=10), seed=0)  # a tied model's two matrices are one: cosine 1 everywhere
    assert lab.weight_tying.row_cosines(tied.lm_head.weight, tied.transformer.wte.weight).diagonal().min() > 0.9999
