"""torch.compile by default where a C++ compiler exists, a clean fallback where it fails, fused
AdamW, and a model trained compiled that saves, loads and inspects like any other.

The suite runs with ``TOYGPT_COMPILE=0`` (conftest): the tests here that compile for real unset
it, and keep Inductor's cache in one folder under the system's temp dir (as Inductor itself
does by default), so only the first run on a machine pays the full compile (~1-2 min on 2 busy
cores; later runs: seconds).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest
import torch

from toygpt import compilation, runs
from toygpt.checkpoint import load_checkpoint
from toygpt.compilation import compile_choice, last_compile_seconds, record_compile_seconds
from toygpt.inspection import run_with_cache
from toygpt.model import GPT, GPTConfig, preset
from toygpt.pipeline import TrainSpec, run_training
from toygpt.recurrent import LSTMConfig, LSTMLanguageModel
from toygpt.train import TrainConfig, make_optimizer, parameter_groups
from toygpt.trainer import train

CPU = torch.device("cpu")
QUICK = dict(eval_interval=10**6, eval_batches=1, checkpoint_interval=0, max_snapshots=0, precision="fp32")


TEST_COMPILE_CACHE = Path(tempfile.gettempdir()) / "toygpt-tests-torch-compile"


def nano_model(vocab_size: int = 32) -> GPT:
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16), seed=0)


def test_auto_compiles_a_gpt_on_cpu_where_a_compiler_is_found_and_it_pays(monkeypatch):
    monkeypatch.delenv(compilation.COMPILE_ENV, raising=False)
    monkeypatch.setattr(compilation, "cpp_compiler", lambda: "/usr/bin/g++")
    monkeypatch.setattr(compilation, "compile_pays_on_this_cpu", lambda: False)
    chosen, reason = compile_choice("auto", CPU, nano_model())
    assert not chosen and "without fast bf16" in reason and "compile=True" in reason
    assert compile_choice(True, CPU, nano_model())[0] is True  # asking still compiles
    monkeypatch.setattr(compilation, "compile_pays_on_this_cpu", lambda: True)
    assert compile_choice("auto", CPU, nano_model()) == (True, "torch.compile with g++")
    assert compile_choice("auto", CPU, nano_model().config)[0] is True  # a config is judged as its model
    assert compile_choice("auto", CPU, nano_model(), data_parallel=True)[0] is False
    monkeypatch.setattr(compilation, "cpp_compiler", lambda: None)
    chosen, reason = compile_choice("auto", CPU, nano_model())
    assert not chosen and "no C++ compiler" in reason
    lstm = LSTMLanguageModel(LSTMConfig(vocab_size=8, block_size=8, n_layer=1, n_hidden=8))
    assert compile_choice("auto", CPU, lstm)[0] is False  # only GPTs are compiled by "auto"
    assert compile_choice("auto", torch.device("mps"), nano_model())[0] is False


def test_explicit_setting_and_environment(monkeypatch):
    monkeypatch.setattr(compilation, "cpp_compiler", lambda: None)
    assert compile_choice(True, CPU, nano_model())[0] is True  # asked for: tried, falls back if it fails
    monkeypatch.setenv(compilation.COMPILE_ENV, "1")
    assert compile_choice("auto", CPU, nano_model())[0] is True
    assert compile_choice(False, CPU, nano_model())[0] is False  # an explicit False is never overridden
    monkeypatch.setenv(compilation.COMPILE_ENV, "0")
    assert compile_choice("auto", CPU, nano_model()) == (False, "eager (TOYGPT_COMPILE=0)")
    monkeypatch.setenv(compilation.COMPILE_ENV, "yes")
    with pytest.raises(ValueError, match="TOYGPT_COMPILE='yes'; set it to 1"):
        compile_choice("auto", CPU, nano_model())


def test_config_default_is_auto_and_old_configs_still_load():
    assert TrainConfig().compile == "auto"
    assert TrainConfig.from_dict({**TrainConfig().to_dict(), "compile": False}).compile is False
    with pytest.raises(ValueError, match="compile='yes'; choose True, False or 'auto'"):
        TrainConfig(compile="yes")


def test_no_compiler_trains_eagerly_and_says_why(monkeypatch):
    monkeypatch.delenv(compilation.COMPILE_ENV, raising=False)
    monkeypatch.setattr(compilation, "cpp_compiler", lambda: None)
    events = []
    data = _data()
    end = train(nano_model(data.vocab_size), data, TrainConfig(max_steps=2, **QUICK), on_event=events.append)
    start = events[0]
    assert end["status"] == "finished" and start["compiled"] is False
    assert "no C++ compiler" in start["compile_reason"]
    assert not any(e["type"] in ("preparing", "prepared") for e in events)


def test_a_failing_default_compile_falls_back_to_eager_with_the_reason(monkeypatch):
    monkeypatch.delenv(compilation.COMPILE_ENV, raising=False)
    monkeypatch.setattr(compilation, "cpp_compiler", lambda: "/usr/bin/g++")
    monkeypatch.setattr(compilation, "compile_pays_on_this_cpu", lambda: True)

    def broken_compile(module, **kwargs):
        def forward(*args, **kw):
            raise RuntimeError("InductorError: g++ exited with status 1")

        return forward

    monkeypatch.setattr(torch, "compile", broken_compile)
    events = []
    data = _data()
    end = train(nano_model(data.vocab_size), data, TrainConfig(max_steps=3, **QUICK), on_event=events.append)
    assert end["status"] == "finished" and end["step"] == 3
    logs = [e["message"] for e in events if e["type"] == "log"]
    assert any("torch.compile failed (RuntimeError: InductorError: g++ exited" in m and "training eagerly" in m for m in logs)
    said = [e for e in events if e["type"] in ("preparing", "prepared")]
    assert [e["type"] for e in said] == ["preparing", "prepared"] and said[1]["compiled"] is False


def test_fused_adamw_takes_the_same_step_as_foreach_in_fp32():
    """The same gradients into both (random, seeded: backprop would add its own rounding, and the
    key biases' gradients are pure rounding noise that Adam's normalisation blows up)."""
    config = TrainConfig(learning_rate=1e-2)
    models = [nano_model() for _ in range(2)]
    fused = make_optimizer(models[0], config, CPU)
    assert fused.defaults["fused"] is True
    foreach = torch.optim.AdamW(parameter_groups(models[1], config.weight_decay), lr=config.learning_rate,
                                betas=config.betas, foreach=True)  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
            a.grad = torch.randn(a.shape, generator=generator)
            b.grad = a.grad.clone()
        fused.step()
        foreach.step()
    before = nano_model()
    for (name, a), b, b0 in zip(models[0].named_parameters(), models[1].parameters(), before.parameters(), strict=True):
        assert (a - b0).abs().max() > 1e-3, f"{name} did not move"
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_compile_times_are_remembered_and_a_damaged_record_is_ignored(monkeypatch, tmp_path):
    monkeypatch.setenv(compilation.INDUCTOR_CACHE_ENV, str(tmp_path))
    assert last_compile_seconds("abc") is None
    record_compile_seconds("abc", 12.345)
    assert last_compile_seconds("abc") == 12.35
    (tmp_path / compilation.TIMES_FILE).write_text("{not json", encoding="utf-8")
    assert last_compile_seconds("abc") is None
    record_compile_seconds("abc", 3.0)
    assert json.loads((tmp_path / compilation.TIMES_FILE).read_text()) == {"abc": 3.0}


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory):
    """One real compiled training (the default config, "auto", where compiling pays: a CPU with
    fast bf16, faked here so the test compiles on any CPU) into a run folder."""
    if compilation.cpp_compiler() is None:
        pytest.skip("no C++ compiler here: torch.compile cannot build CPU kernels")
    patch = pytest.MonkeyPatch()
    patch.delenv(compilation.COMPILE_ENV, raising=False)
    patch.setattr(compilation, "compile_pays_on_this_cpu", lambda: True)
    patch.setenv(compilation.INDUCTOR_CACHE_ENV, str(TEST_COMPILE_CACHE))
    patch.setenv("TOYGPT_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
    patch.setenv("TOYGPT_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    events: list[dict] = []
    try:
        config = TrainConfig(max_steps=6, eval_interval=3, eval_batches=1, log_interval=1, checkpoint_interval=0,
                             max_snapshots=0, precision="fp32")  # fmt: skip
        started = time.perf_counter()
        end = run_training(TrainSpec(corpus="copy", model=preset("nano"), train=config), on_event=events.append)
        end["wall_seconds"] = time.perf_counter() - started
        yield events, end, runs.runs_dir()
    finally:
        patch.undo()


def test_the_default_config_compiles_here_and_says_it_is_preparing(compiled_run):
    events, end, _ = compiled_run
    start = next(e for e in events if e["type"] == "start")
    assert start["compiled"] is True and start["compile_reason"].startswith("torch.compile with")
    kinds = [e["type"] for e in events]
    assert kinds.index("start") < kinds.index("preparing") < kinds.index("prepared") < kinds.index("end")
    assert "preparing… compiling the model" in next(e for e in events if e["type"] == "preparing")["message"]
    prepared = next(e for e in events if e["type"] == "prepared")
    assert prepared["step"] == 0 and prepared["seconds"] > 0
    assert not any("torch.compile failed" in e.get("message", "") for e in events)
    assert end["status"] == "finished" and end["step"] == 6
    assert end["elapsed"] < end["wall_seconds"] - prepared["seconds"] + 0.1  # preparing is not the run's clock
    later = [e for e in events if e["type"] == "step" and e["step"] > 1]  # step 1 is all the trainer has seen
    assert later and all(e["ms_per_step"] < 1000 * prepared["seconds"] / 2 for e in later)  # compiling is not the pace


def test_a_compiled_trained_checkpoint_loads_and_inspects(compiled_run, monkeypatch):
    events, end, runs_dir = compiled_run
    monkeypatch.setenv("TOYGPT_RUNS_DIR", str(runs_dir))
    (folder,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    loaded = load_checkpoint(folder)
    names = list(loaded.model.state_dict())
    assert names and not any("_orig_mod" in n for n in names)
    ids = torch.arange(8).unsqueeze(0) % loaded.config.vocab_size
    logits, cache = run_with_cache(loaded.model, ids, ["blocks.0.attn.hook_pattern", "blocks.1.hook_resid_post"])
    plain, _ = loaded.model(ids)
    torch.testing.assert_close(logits, plain)
    pattern = cache["blocks.0.attn.hook_pattern"]
    torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))


def _data():
    from toygpt import data as corpora
    from toygpt.tokenizers import CharTokenizer

    text = corpora.load_corpus("copy")
    return corpora.prepare(text, CharTokenizer.from_text(text))


def test_the_lab_trains_eagerly_its_runs_are_too_short_to_win_back_a_compile():
    from toygpt.lab.registry import EXPERIMENTS
    from toygpt.lab.setup import TrainingSetup

    training = [spec.params_type() for spec in EXPERIMENTS.values() if issubclass(spec.params_type, TrainingSetup)]
    assert len(training) >= 4  # norm-position, positions, weight-tying, recurrence, ...
    for params in training:
        assert params.train_config().compile is False and params.train_config(steps=50).compile is False


def test_a_training_job_says_preparing_while_it_compiles_then_the_step():
    from toygpt.jobs import TrainJob
    from toygpt.trainer import Pace

    job = TrainJob(TrainSpec(corpus="copy", model=preset("nano"), train=TrainConfig(max_steps=10)))
    job._on_event({"type": "start", "step": 0})
    job._on_event({"type": "preparing", "step": 0, "message": "preparing… compiling the model for this CPU (took 4 s last time)"})
    assert job.snapshot().stage.startswith("preparing… compiling the model")
    job._on_event({"type": "prepared", "step": 0, "seconds": 4.2, "compiled": True, "message": "compiled in 4.2 s"})
    pace = Pace()
    pace.record(4.2, counted=False)
    assert pace.seconds_per_step() == 4.2  # only the compiling step so far: it stands in
    pace.record(0.05)
    assert pace.seconds_per_step() == 0.05  # then the real pace, without it
    job._on_event({"type": "step", "step": 1, "progress": 0.1, "elapsed": 4.3, "eta": 1.0, "loss": 4.0})
    assert job.snapshot().stage == "step 1 of 10"
