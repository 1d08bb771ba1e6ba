"""Out to Hugging Face: ``runs export-hf`` writes a folder that ``transformers`` loads with the
same logits (≤ 1e-5), carrying its tokenizer; variants GPT-2's format cannot express are refused
with the reason, and a failed export leaves nothing behind."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import torch

from toygpt import run_archive, runs
from toygpt.cli.runs import export_hf_command
from toygpt.hf_format import TOYGPT_TOKENIZER_FILE, export_hf
from toygpt.model import GPT, GPTConfig
from toygpt.tokenizers import ByteTokenizer, CharTokenizer, get_tokenizer, load_tokenizer
from toygpt.train import TrainConfig

transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-5


def varied(config: GPTConfig, seed: int = 0) -> GPT:
    """Every parameter O(0.1–1), so a mix-up between any two tensors shows in the logits."""
    model = GPT(config, seed=seed).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return model


def make_run(model: GPT, tokenizer, spec: str = "char") -> str:
    run = runs.create_run(name=f"export {spec}", corpus="copy", tokenizer_spec=spec, tokenizer=tokenizer,
                          model=model, train_config=TrainConfig(max_steps=1))  # fmt: skip
    run.update_info(status="finished")
    return run.id


def logits_both_ways(model: GPT, folder, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    theirs = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(ids)[0], theirs(ids).logits


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_a_char_run_exports_to_transformers_with_the_same_logits(tmp_path, tie):
    tokenizer = CharTokenizer.from_text("hello world, a small corpus!")
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16,
                       tie_embeddings=tie)  # fmt: skip
    model = varied(config)
    run_id = make_run(model, tokenizer)
    out = io.StringIO()
    assert export_hf_command(_args(run_id, tmp_path / "hf"), out) == 0
    folder = tmp_path / "hf"
    assert "GPT2LMHeadModel.from_pretrained" in out.getvalue()
    ids = torch.tensor([tokenizer.encode("hello world")])
    ours, theirs = logits_both_ways(model, folder, ids)
    assert ours.std() > 0.3 and (ours - theirs).abs().max().item() <= TOLERANCE
    config_json = json.loads((folder / "config.json").read_text())
    assert config_json["model_type"] == "gpt2" and config_json["architectures"] == ["GPT2LMHeadModel"]
    assert config_json["toygpt"]["run"] == run_id and config_json["toygpt"]["tokenizer"] == "char"
    assert config_json["eos_token_id"] is None  # a char vocabulary has no end-of-text token
    # the tokenizer travels as toygpt's JSON with a README saying how to encode
    assert load_tokenizer(folder / TOYGPT_TOKENIZER_FILE).encode("hello") == tokenizer.encode("hello")
    readme = (folder / "README.md").read_text()
    assert f"load_tokenizer(FOLDER + \"/{TOYGPT_TOKENIZER_FILE}\")" in readme and "index in \"chars\"" in readme
    assert not (folder / "tokenizer.json").exists()  # that name is Hugging Face's own format


def test_a_gpt2_tokenizer_run_loads_with_gpt2_tokenizer_fast(tmp_path):
    gpt2 = get_tokenizer("gpt2")  # from the pinned package: offline
    config = GPTConfig(vocab_size=gpt2.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    model = varied(config, seed=3)
    folder = export_hf(model, gpt2, tmp_path / "hf", {"run": "made-here"})
    hf_tokenizer = transformers.GPT2TokenizerFast.from_pretrained(folder)
    text = "Hello world! 日本語 🙂 <|endoftext|> code: def f(x): return x"
    assert hf_tokenizer(text).input_ids == gpt2.encode(text, allow_special=True)
    ids = torch.tensor([gpt2.encode("hello world")])
    ours, theirs = logits_both_ways(model, folder, ids)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert json.loads((folder / "config.json").read_text())["eos_token_id"] == 50256


def test_the_download_zip_holds_the_same_folder(tmp_path):
    tokenizer = ByteTokenizer()
    model = varied(GPTConfig(vocab_size=256, block_size=8, n_layer=1, n_head=1, n_embd=8))
    run_id = make_run(model, tokenizer, "byte")
    data = run_archive.export_run_hf_zip(run_id)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = sorted(archive.namelist())
        archive.extractall(tmp_path)
    assert names == sorted(f"{run_id}-hf/{n}" for n in
                           ("config.json", "model.safetensors", TOYGPT_TOKENIZER_FILE, "README.md"))  # fmt: skip
    ours, theirs = logits_both_ways(model, tmp_path / f"{run_id}-hf", torch.tensor([[1, 2, 3, 250]]))
    assert (ours - theirs).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize(
    "changes,reason",
    [(dict(norm_position="post"), "GPT-2 normalises before each sub-layer"),
     (dict(pos_encoding="sinusoidal"), "learned position table (wpe)"),
     (dict(pos_encoding="none"), "pos_encoding='none'"),
     (dict(pos_encoding="rope"), "pos_encoding='rope'"), (dict(pos_encoding="alibi"), "pos_encoding='alibi'"),
     (dict(bias=False), "GPT-2 has biases")],
)  # fmt: skip
def test_variants_gpt2_cannot_express_are_refused_with_the_reason(tmp_path, capsys, changes, reason):
    tokenizer = ByteTokenizer()
    model = GPT(GPTConfig(vocab_size=256, block_size=8, n_layer=1, n_head=2, n_embd=8, **changes))
    run_id = make_run(model, tokenizer, "byte")
    assert export_hf_command(_args(run_id, tmp_path / "hf"), io.StringIO()) == 1
    err = capsys.readouterr().err
    assert "GPT-2's format cannot express this model" in err and reason in err
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a hidden staging folder


def test_a_non_empty_folder_is_never_touched(tmp_path, capsys):
    model = varied(GPTConfig(vocab_size=256, block_size=8, n_layer=1, n_head=1, n_embd=8))
    run_id = make_run(model, ByteTokenizer(), "byte")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "mine.txt").write_text("keep me")
    assert export_hf_command(_args(run_id, tmp_path / "hf"), io.StringIO()) == 1
    assert "not an empty folder" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["hf"] and [p.name for p in (tmp_path / "hf").iterdir()] == ["mine.txt"]


def test_a_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    import toygpt.hf_format as hf_format

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hf_format, "save_file", disk_full)
    model = varied(GPTConfig(vocab_size=256, block_size=8, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(OSError, match="No space"):
        export_hf(model, ByteTokenizer(), tmp_path / "hf")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_run_is_a_clear_error(tmp_path, capsys):
    assert export_hf_command(_args("no-such-run", tmp_path / "hf"), io.StringIO()) == 1
    assert "no run 'no-such-run'" in capsys.readouterr().err


def _args(run_id, folder, weights="best"):
    import argparse

    return argparse.Namespace(run=run_id, folder=folder, weights=weights)
