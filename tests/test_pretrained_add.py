"""Weights the learner brings: a Hugging Face GPT-2 folder (made here with transformers'
save_pretrained, random weights, tiny config) is checked, copied into the cache with its SHA-256
recorded, listed, loaded with the same logits and sampled; every kind of bad input is refused
with a clear message and leaves the cache exactly as it was."""

from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path

import pytest
import torch

from toygpt import pretrained
from toygpt.cli.pretrained import add_command, list_command
from toygpt.cli.sample import run as sample_command
from toygpt.pretrained import (
    PretrainedUnavailable,
    add_pretrained,
    files_in_folder,
    files_in_zip,
    load_pretrained,
)

transformers = pytest.importorskip("transformers")

TINY = dict(n_layer=2, n_head=2, n_embd=16, n_positions=32, vocab_size=50257)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TOYGPT_PRETRAINED_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def save_hf_model(folder: Path, seed: int = 0, **changes) -> torch.nn.Module:
    """A GPT-2-shaped model with random O(0.3) weights, saved the way the hub's folders are."""
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**TINY, **changes})).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    model.save_pretrained(folder)
    return model


@pytest.fixture
def hf_folder(tmp_path) -> tuple[Path, torch.nn.Module]:
    folder = tmp_path / "my-gpt2"
    return folder, save_hf_model(folder)


def cache_entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def cli_add(path: Path, name: str | None = None, sha256: str | None = None) -> tuple[int, str]:
    out = io.StringIO()
    return add_command(argparse.Namespace(path=path, name=name, sha256=sha256), out), out.getvalue()


def same_logits(ours: torch.nn.Module, theirs: torch.nn.Module) -> float:
    ids = torch.randint(0, 50257, (2, 32), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return (ours(ids)[0] - theirs(ids).logits).abs().max().item()


# ---- the happy path -------------------------------------------------------------------------


def test_cli_add_list_load_and_sample(cache, hf_folder, capsys):
    folder, hf_model = hf_folder
    code, said = cli_add(folder)
    assert code == 0, capsys.readouterr().err
    assert "added my-gpt2" in said and "sample --run pretrained:my-gpt2" in said
    assert cache_entries(cache) == ["my-gpt2"]  # no staging folder left over
    (info,) = pretrained.list_pretrained()
    assert info.name == "my-gpt2" and info.config.n_layer == 2 and info.tokenizer == {"type": "tiktoken", "encoding": "gpt2"}
    assert info.sha256 == __import__("hashlib").sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    out = io.StringIO()
    list_command(argparse.Namespace(), out)
    assert "my-gpt2" in out.getvalue() and info.sha256[:12] in out.getvalue()

    model, tokenizer = load_pretrained("my-gpt2")
    assert same_logits(model, hf_model) <= 1e-5
    assert tokenizer.encode("hello world") == [31373, 995]
    args = argparse.Namespace(run="pretrained:my-gpt2", prompt="Hello", max_tokens=5, temperature=1.0, top_k=None,
                              top_p=None, seed=0, stop=None, no_cache=False, stats=False)  # fmt: skip
    sampled = io.StringIO()
    assert sample_command(args, sampled) == 0 and sampled.getvalue().startswith("Hello")
    assert len(sampled.getvalue()) > len("Hello\n")


def test_a_zip_of_the_folder_and_a_path_to_its_weights_file_work_too(cache, hf_folder, tmp_path):
    folder, hf_model = hf_folder
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in folder.iterdir():
            z.write(path, f"my-gpt2/{path.name}")
    assert cli_add(archive, name="zipped")[0] == 0
    assert cli_add(folder / "model.safetensors", name="by-file")[0] == 0
    assert cache_entries(cache) == ["by-file", "zipped"]
    assert same_logits(load_pretrained("zipped")[0], hf_model) <= 1e-5


def test_export_hf_then_add_brings_a_char_run_back_with_its_tokenizer(cache, tmp_path):
    from toygpt.hf_format import export_hf
    from toygpt.model import GPT, GPTConfig
    from toygpt.tokenizers import CharTokenizer

    tokenizer = CharTokenizer.from_text("to be or not to be")
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=8), seed=3).eval()
    export_hf(model, tokenizer, tmp_path / "run-hf")
    info = add_pretrained(files_in_folder(tmp_path / "run-hf"), origin=str(tmp_path / "run-hf"))
    assert info.name == "run"  # "-hf" is dropped from the folder's name
    loaded, loaded_tokenizer = load_pretrained("run")
    assert loaded_tokenizer.encode("not to be") == tokenizer.encode("not to be")
    ids = torch.tensor([tokenizer.encode("to be or")])
    with torch.no_grad():
        assert torch.allclose(loaded(ids)[0], model(ids)[0], atol=1e-6)


# ---- bad input: refused, named, nothing left behind -----------------------------------------


@pytest.mark.parametrize(
    "changes,key",
    [(dict(model_type="llama"), "model_type='llama'"), (dict(n_inner=100), "n_inner=100"),
     (dict(activation_function="relu"), "activation_function='relu'"),
     (dict(architectures=["GPT2ForSequenceClassification"]), "architectures=")],
)  # fmt: skip
def test_a_config_toygpt_cannot_follow_is_refused_naming_the_key(cache, hf_folder, capsys, changes, key):
    folder, _ = hf_folder
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    assert cli_add(folder)[0] == 1
    assert key in capsys.readouterr().err
    assert cache_entries(cache) == []


@pytest.mark.parametrize(
    "damage,words",
    [(lambda b: b[:-100], "truncated"), (lambda b: b + b"\0" * 4096, "truncated or padded"),
     (lambda b: b[:6], "too short")],
    ids=["truncated", "oversized", "stub"],
)
def test_a_truncated_or_oversized_weights_file_is_refused(cache, hf_folder, capsys, damage, words):
    folder, _ = hf_folder
    weights = folder / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    assert cli_add(folder)[0] == 1
    assert words in capsys.readouterr().err
    assert cache_entries(cache) == []  # the staged copy was removed


def test_weights_of_another_shape_are_refused(cache, hf_folder, tmp_path, capsys):
    folder, _ = hf_folder
    save_hf_model(tmp_path / "other", n_embd=32)
    (folder / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    assert cli_add(folder)[0] == 1
    assert "config.json needs" in capsys.readouterr().err and cache_entries(cache) == []


def test_a_hash_that_does_not_match_is_refused_at_add_and_at_load(cache, hf_folder, capsys):
    folder, _ = hf_folder
    assert cli_add(folder, sha256="0" * 64)[0] == 1
    assert "does not match the expected" in capsys.readouterr().err and cache_entries(cache) == []
    assert cli_add(folder)[0] == 0
    stored = cache / "my-gpt2" / "model.safetensors"
    data = bytearray(stored.read_bytes())
    data[-1] ^= 1  # one bit of one weight changes after it was added
    stored.write_bytes(bytes(data))
    with pytest.raises(PretrainedUnavailable, match="changed since they were added"):
        load_pretrained("my-gpt2")


def zipped(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


@pytest.mark.parametrize(
    "extra,words",
    [("model/notes.txt", "does not contain"), ("../evil.json", "leaves its folder"),
     ("model/pytorch_model.bin", "pickle")],
)  # fmt: skip
def test_a_zip_with_extra_paths_is_refused(cache, hf_folder, tmp_path, capsys, extra, words):
    folder, _ = hf_folder
    members = {f"model/{p.name}": p.read_bytes() for p in folder.iterdir()} | {extra: b"x"}
    assert cli_add(zipped(tmp_path, members))[0] == 1
    assert words in capsys.readouterr().err and cache_entries(cache) == []


def test_a_zip_entry_larger_than_it_says_is_refused(cache, hf_folder, tmp_path):
    folder, _ = hf_folder
    files = files_in_zip(zipped(tmp_path, {p.name: p.read_bytes() for p in folder.iterdir()}))
    files["model.safetensors"].size -= 10  # what a crafted header would claim
    with pytest.raises(ValueError, match="expected"):
        add_pretrained(files, "liar")
    assert cache_entries(cache) == []


def test_another_tokenizer_a_taken_name_and_a_hub_name_of_another_shape_are_refused(cache, hf_folder, capsys):
    folder, _ = hf_folder
    assert cli_add(folder, name="gpt2")[0] == 1
    assert "means openai-community/gpt2" in capsys.readouterr().err
    assert cli_add(folder)[0] == 0
    before = sorted(p.name for p in (cache / "my-gpt2").iterdir())
    assert cli_add(folder)[0] == 1
    assert "already added" in capsys.readouterr().err
    assert sorted(p.name for p in (cache / "my-gpt2").iterdir()) == before
    (folder / "vocab.json").write_text('{"a": 0}')
    assert cli_add(folder, name="other-tokenizer")[0] == 1
    assert "is not GPT-2's vocab.json" in capsys.readouterr().err
    assert cache_entries(cache) == ["my-gpt2"]


def test_missing_weights_are_explained_with_the_size_and_the_upload(cache, monkeypatch):
    monkeypatch.setenv("TOYGPT_OFFLINE", "1")
    message = pretrained.pretrained_status("gpt2")
    assert "weights" in message and "548 MB" in message and "pretrained add" in message and "upload" in message
    assert "tokenizer" not in message
    for name, size in (("gpt2", "548 MB"), ("distilgpt2", "353 MB")):
        with pytest.raises(PretrainedUnavailable) as error:
            load_pretrained(name)
        assert f"{name}'s weights are not on this machine" in str(error.value) and size in str(error.value)
        assert "Add GPT-2 weights" in str(error.value)
    with pytest.raises(PretrainedUnavailable, match="no pretrained weights named 'mine'.*pretrained add PATH"):
        load_pretrained("mine")


def test_weights_a_user_names_that_cannot_be_had_are_bad_input_with_the_same_words(cache, hf_folder, capsys):
    """`sample --run pretrained:NAME` and a fine-tune from pretrained:NAME (its memory check, then
    loading the weights) raise ValueError, the error the CLI prints in one line and a job reports
    as bad input, with load_pretrained's own explanation: weights that are not here, and weights
    whose file changed since they were added (the shape still reads, the load refuses)."""
    from toygpt.__main__ import main
    from toygpt.cli.sample import load_for_sampling
    from toygpt.pipeline import TrainSpec, build_training, estimated_memory

    with pytest.raises(PretrainedUnavailable) as missing:
        load_pretrained("mine")
    fine_tune = TrainSpec(init_from="pretrained:mine", corpus="copy")
    for attempt in (lambda: load_for_sampling("pretrained:mine"), lambda: estimated_memory(fine_tune),
                    lambda: build_training(fine_tune)):  # fmt: skip
        with pytest.raises(ValueError) as error:
            attempt()
        assert str(error.value) == str(missing.value) and not isinstance(error.value, PretrainedUnavailable)
    assert main(["sample", "--run", "pretrained:mine"]) == 1
    assert capsys.readouterr().err == f"error: {missing.value}\n"

    assert cli_add(hf_folder[0], name="mine")[0] == 0
    stored = cache / "mine" / "model.safetensors"
    stored.write_bytes(stored.read_bytes()[:-1] + bytes([stored.read_bytes()[-1] ^ 1]))
    with pytest.raises(PretrainedUnavailable, match="changed since they were added") as changed:
        load_pretrained("mine")
    for attempt in (lambda: load_for_sampling("pretrained:mine"), lambda: build_training(fine_tune)):
        with pytest.raises(ValueError) as error:
            attempt()
        assert str(error.value) == str(changed.value) and not isinstance(error.value, PretrainedUnavailable)
