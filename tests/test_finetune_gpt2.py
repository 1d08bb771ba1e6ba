"""Fine-tuning GPT-2 itself: a GPT-2-shaped folder (transformers' save_pretrained, random
weights, tiny config) added to the pretrained cache trains for a few steps with only its last
block (+ ln_f) learning; the memory it needs is said before it starts and a run over the cap is
refused with the number."""

from __future__ import annotations

import argparse
import io

import pytest
import torch

from toygpt.cli import train as train_cli
from toygpt.estimates import estimate
from toygpt.jobs import JobRefused, JobRegistry
from toygpt.model import GPT, GPTConfig, preset
from toygpt.pipeline import TrainSpec, memory_parts, run_training
from toygpt.pretrained import add_pretrained, files_in_folder, load_pretrained
from toygpt.runs import open_run
from toygpt.train import TrainConfig, freeze_all_but_last_blocks, trainable_parameters

transformers = pytest.importorskip("transformers")

FINE_TUNE = TrainConfig(max_steps=3, batch_size=2, block_size=16, train_last_blocks=1, learning_rate=1e-2,
                        eval_interval=3, eval_batches=1, max_snapshots=0, checkpoint_interval=0,
                        precision="fp32", warmup_steps=0)  # fmt: skip


@pytest.fixture
def tiny_gpt2(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("TOYGPT_PRETRAINED_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=32, vocab_size=50257)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "tiny-gpt2")
    add_pretrained(files_in_folder(tmp_path / "tiny-gpt2"), origin=str(tmp_path / "tiny-gpt2"))
    return "pretrained:tiny-gpt2"


def test_only_the_last_block_and_ln_f_learn(tiny_gpt2):
    before, _ = load_pretrained("tiny-gpt2")
    end = run_training(TrainSpec(corpus="copy", init_from=tiny_gpt2, train=FINE_TUNE, name="ft"))
    assert end["status"] == "finished" and end["step"] == 3
    run = open_run("ft")
    assert run.info()["init_from"] == tiny_gpt2 and run.info()["tokenizer"] == "gpt2"
    after = run.load_model("latest").model.state_dict()
    changed = {name for name, tensor in before.state_dict().items() if not torch.equal(tensor, after[name])}
    assert changed and all(name.startswith(("transformer.h.1.", "transformer.ln_f.")) for name in changed)
    assert "transformer.h.1.mlp.c_fc.weight" in changed  # the last block did learn
    _, optimizer_state = run.training_state()
    assert {name.rsplit(".", 1)[0].rsplit(".", 1)[0] for name in optimizer_state} <= {
        name.rsplit(".", 1)[0] for name, _ in before.named_parameters()
        if name.startswith(("transformer.h.1.", "transformer.ln_f."))}  # AdamW state only for what learns
    resumed = run_training(TrainSpec(corpus="copy", resume="ft", train=FINE_TUNE.replace(max_steps=4)))
    assert resumed["status"] == "finished" and resumed["step"] == 4  # the same parameters learn again


def test_the_fine_tuned_gpt2_goes_back_to_transformers_with_the_same_logits(tiny_gpt2, tmp_path):
    from toygpt.run_archive import export_run_hf

    run_training(TrainSpec(corpus="copy", init_from=tiny_gpt2, train=FINE_TUNE, name="ft"))
    folder = export_run_hf("ft", tmp_path / "ft-hf", "latest")
    theirs = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    ours = open_run("ft").load_model("latest").model
    ids = transformers.GPT2TokenizerFast.from_pretrained(folder)("copy that", return_tensors="pt").input_ids
    with torch.no_grad():
        assert (ours(ids)[0] - theirs(ids).logits).abs().max().item() <= 1e-5


def test_trainable_count_and_memory_estimate_known_answers():
    config = preset("gpt2")  # GPT-2 124M's shape
    model = GPT(GPTConfig(**{**config.to_dict(), "n_layer": 3, "block_size": 64}), seed=0)
    learns = freeze_all_but_last_blocks(model, 2)
    assert learns == trainable_parameters(model.config, 2) == sum(
        p.numel() for n, p in model.named_parameters() if n.startswith(("transformer.h.1.", "transformer.h.2.", "transformer.ln_f.")))
    assert trainable_parameters(config, 1) == 12 * 768 * 768 + 13 * 768 + 2 * 768 == 7_089_408  # one block + ln_f
    est = estimate(config, TrainConfig(block_size=128, batch_size=4, train_last_blocks=1))
    assert est["memory_bytes"]["weights"] == 4 * 124_439_808
    assert est["memory_bytes"]["gradients"] == 4 * 7_089_408 and est["memory_bytes"]["adam"] == 8 * 7_089_408
    full = estimate(config, TrainConfig(block_size=128, batch_size=4))
    assert est["total_memory_bytes"] < full["total_memory_bytes"] / 2
    with pytest.raises(ValueError, match="train_last_blocks=13 but the model has 12 blocks"):
        trainable_parameters(config, 13)


def test_a_fine_tune_over_the_memory_cap_is_refused_with_the_number(tiny_gpt2):
    spec = TrainSpec(corpus="copy", init_from=tiny_gpt2, train=FINE_TUNE)
    need = sum(memory_parts(spec).values())
    with pytest.raises(JobRefused, match=r"needs about .* above the 1\.0 KiB one job may use.*fewer of the last blocks"):
        JobRegistry(max_memory_bytes=1024).start(spec)
    assert memory_parts(spec)["gradients"] == 4 * trainable_parameters(load_pretrained("tiny-gpt2")[0].config, 1)
    assert need > 4 * 50257 * 16  # at least the frozen embedding's weights


def cli_args(batch: int = 2) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    argv = ["train", "--init-from", "pretrained:tiny-gpt2", "--corpus", "copy", "--train-last-blocks", "1",
            "--block-size", "16", "--batch-size", str(batch), "--max-steps", "2", "--eval-interval", "2",
            "--eval-batches", "1", "--max-snapshots", "0", "--precision", "fp32", "--quiet", "--name", "cli-ft"]  # fmt: skip
    return parser.parse_args(argv)


def test_cli_says_the_memory_first_and_refuses_over_what_is_available(tiny_gpt2, monkeypatch, capsys):
    out = io.StringIO()
    assert train_cli.main(cli_args(), out) == 0
    first = out.getvalue().splitlines()[0]
    assert first.startswith("memory needed: about ") and "gradients" in first and "adam" in first
    assert open_run("cli-ft").info()["train_config"]["train_last_blocks"] == 1
    monkeypatch.setenv("TOYGPT_MEMORY_BUDGET", "128MiB")  # toygpt.limits: the server's/machine's budget
    out = io.StringIO()
    assert train_cli.main(cli_args(batch=64), out) == 1  # 64 × 16 × 50,257 logits alone are ~600 MiB
    said = out.getvalue().splitlines()[0].removeprefix("memory needed: about ").split(" (")[0]
    assert f"fine-tuning pretrained:tiny-gpt2 needs about {said}, above the 64.0 MiB" in capsys.readouterr().err
