"""Checkpoints: a round trip is bit for bit, every damaged or hostile file is a CheckpointError
naming the file, a failed save keeps the previous checkpoint, and nothing is ever unpickled."""

from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import toygpt.checkpoint
from toygpt.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    LoadedCheckpoint,
    atomic_write,
    load_checkpoint,
    load_weights_into,
    model_tensors,
    read_json,
    save_checkpoint,
    save_tensors,
    write_json_atomic,
)
from toygpt.model import GPT, GPTConfig
from toygpt.tensor_files import load_tensors

# odd Unicode too; a real tokenizer, since a load checks it fits the model (a lone surrogate in
# JSON is tested with json_bytes below), with exactly tiny_config's 32 tokens
TOKENIZER = {"type": "char", "chars": list("\n !abc\u00e9\u4e2d\U0001f600defghijklmnopqrstuvwxyz"), "unk": False}


def logits_of(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(idx)[0]


def random_idx(config: GPTConfig, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, config.vocab_size, (2, config.block_size), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def saved(tmp_path, tiny_model):
    """A checkpoint folder with a tokenizer, plus the model that made it."""
    run = tmp_path / "run"
    save_checkpoint(run, tiny_model, TOKENIZER, step=42, metrics={"val_loss": 1.5}, extra={"note": "hi"})
    return run, tiny_model


def rewrite_header(path, change) -> None:
    """Edit a safetensors file's JSON header in place (the data bytes stay as they were)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    change(header)
    new = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])


# ---- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [{}, dict(tie_embeddings=False), dict(pos_encoding="sinusoidal", norm_position="post"),
     dict(pos_encoding="none", bias=False), dict(dropout=0.1), dict(pos_encoding="rope"),
     dict(pos_encoding="alibi", norm_position="post")],
    ids=["gpt2-like", "untied", "sinusoidal-post-LN", "no-positions-no-bias", "dropout", "rope", "alibi-post-LN"],
)  # fmt: skip
def test_round_trip_reproduces_logits_bit_for_bit(tmp_path, tiny_config, changes):
    config = tiny_config.replace(**changes)
    model = GPT(config, seed=5).eval()
    save_checkpoint(tmp_path, model, TOKENIZER, step=7, metrics={"val_loss": 2.25})
    loaded = load_checkpoint(tmp_path)
    assert isinstance(loaded, LoadedCheckpoint)
    assert loaded.config == config and not loaded.model.training
    idx = random_idx(config)
    assert torch.equal(logits_of(loaded.model, idx), logits_of(model, idx))
    tied = loaded.model.lm_head.weight is loaded.model.transformer.wte.weight
    assert tied == config.tie_embeddings
    assert loaded.tokenizer == TOKENIZER


def test_config_json_holds_the_documented_fields(saved):
    run, model = saved
    meta = json.loads((run / "config.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["toygpt_version"] == toygpt.__version__
    assert meta["model"] == model.config.to_dict()
    assert (meta["step"], meta["metrics"], meta["note"]) == (42, {"val_loss": 1.5}, "hi")
    assert meta["created"].endswith("+00:00")
    loaded = load_checkpoint(run)
    assert loaded.meta == meta and loaded.step == 42 and loaded.metrics == {"val_loss": 1.5}


def test_tied_head_is_stored_once(saved):
    run, _ = saved
    names = set(load_tensors(run / "model.safetensors"))
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names


def test_no_tokenizer_and_other_weights_names(tmp_path, tiny_model):
    save_checkpoint(tmp_path, tiny_model, weights_name="snapshot.safetensors")
    loaded = load_checkpoint(tmp_path, weights_name="snapshot.safetensors")
    assert loaded.tokenizer is None
    with pytest.raises(CheckpointError, match="model.safetensors: file not found"):
        load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="plain file name"):
        save_checkpoint(tmp_path, tiny_model, weights_name="../escape.safetensors")


def test_nan_metrics_are_stored_as_null(tmp_path, tiny_model):
    save_checkpoint(tmp_path, tiny_model, metrics={"loss": float("nan"), "curve": [1.0, float("inf")]})
    assert load_checkpoint(tmp_path).metrics == {"loss": None, "curve": [1.0, None]}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(step=-1), "step=-1"),
        (dict(extra={"step": 3}), "clash"),
        (dict(tokenizer={"chars": "ab"}), '"type"'),
        (dict(extra={"when": object()}), "cannot write config.json as JSON"),
    ],
)
def test_save_refuses_bad_arguments_before_writing(tmp_path, tiny_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        save_checkpoint(tmp_path / "run", tiny_model, **kwargs)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_save_refuses_diverged_weights(tmp_path, tiny_model):
    with torch.no_grad():
        tiny_model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="transformer.h.0.mlp.c_fc.weight contains NaN"):
        save_checkpoint(tmp_path, tiny_model)


def test_load_weights_into_fills_a_model_in_place(tmp_path, tiny_config, tiny_model):
    save_tensors(tmp_path / "snap.safetensors", model_tensors(tiny_model))
    other = GPT(tiny_config, seed=99).eval()
    load_weights_into(other, tmp_path / "snap.safetensors")
    idx = random_idx(tiny_config)
    assert torch.equal(logits_of(other, idx), logits_of(tiny_model, idx))


def test_a_full_state_dict_with_its_tied_head_also_loads(tmp_path, tiny_config, tiny_model):
    # save_tensors copies the shared storage; the tied head must then equal wte to load
    save_tensors(tmp_path / "snap.safetensors", tiny_model.state_dict())
    other = GPT(tiny_config, seed=99)
    load_weights_into(other, tmp_path / "snap.safetensors")
    assert other.lm_head.weight is other.transformer.wte.weight
    tensors = load_tensors(tmp_path / "snap.safetensors")
    tensors["lm_head.weight"] = tensors["lm_head.weight"] + 1
    save_tensors(tmp_path / "bad.safetensors", tensors)
    with pytest.raises(CheckpointError, match="lm_head.weight differs"):
        load_weights_into(other, tmp_path / "bad.safetensors")


def test_tensors_and_metadata_round_trip(tmp_path):
    tensors = {"a": torch.arange(6, dtype=torch.int64).view(2, 3), "b.c": torch.ones(0), "d": torch.rand(3).half()}
    save_tensors(tmp_path / "t.safetensors", tensors, metadata={"why": "test"})
    back = load_tensors(tmp_path / "t.safetensors")
    assert back.keys() == tensors.keys()
    assert all(torch.equal(back[k], tensors[k]) and back[k].dtype == tensors[k].dtype for k in tensors)
    with pytest.raises(ValueError, match="strings to strings"):
        save_tensors(tmp_path / "t.safetensors", tensors, metadata={"n": 1})
    with pytest.raises(ValueError, match="not allowed"):
        save_tensors(tmp_path / "t.safetensors", {"../x": torch.ones(1)})


def test_json_round_trip_and_errors(tmp_path):
    obj = {"text": "\ud800 lone surrogate, \U0001f600, \u00e9", "n": [1, 2.5, None, True]}
    write_json_atomic(tmp_path / "x.json", obj)
    assert read_json(tmp_path / "x.json") == obj
    with pytest.raises(ValueError, match="finite numbers"):
        write_json_atomic(tmp_path / "x.json", {"loss": float("nan")})
    assert read_json(tmp_path / "x.json") == obj  # the failed write changed nothing
    (tmp_path / "bad.json").write_bytes(b'{"a": ')
    with pytest.raises(CheckpointError, match="bad.json: not valid JSON"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "latin1.json").write_bytes(b'"caf\xe9"')
    with pytest.raises(CheckpointError, match="latin1.json: not UTF-8"):
        read_json(tmp_path / "latin1.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="deep.json"):
        read_json(tmp_path / "deep.json")
    with pytest.raises(CheckpointError, match="nothing.json: file not found"):
        read_json(tmp_path / "nothing.json")
    with pytest.raises(ValueError, match="needs bytes"):
        atomic_write(tmp_path / "x.json", "text")


# ---- damaged checkpoints -------------------------------------------------------------------


def damage(case: str, run) -> None:
    weights, config = run / "model.safetensors", run / "config.json"
    meta = json.loads(config.read_text())
    tensors = load_tensors(weights)
    if case == "missing weights":
        weights.unlink()
    elif case == "missing config":
        config.unlink()
    elif case == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif case == "empty weights":
        weights.write_bytes(b"")
    elif case == "pickle as weights":
        weights.write_bytes(pickle.dumps({"transformer.wte.weight": [1.0]}))
    elif case in ("missing tensor", "extra tensor", "wrong shape", "NaN", "inf", "integer weights"):
        name = "transformer.h.0.attn.c_attn.bias"
        if case == "missing tensor":
            del tensors[name]
        elif case == "extra tensor":
            tensors["transformer.h.9.attn.c_attn.bias"] = torch.zeros(3)
        elif case == "wrong shape":
            tensors[name] = torch.zeros(7)
        elif case == "integer weights":
            tensors[name] = tensors[name].long()
        else:
            tensors[name] = tensors[name].clone()
            tensors[name][3] = float(case.lower())
        save_file(tensors, weights)
    elif case == "garbage config":
        config.write_bytes(b"\x00\xffnot json at all")
    elif case == "config is a list":
        config.write_text("[1, 2]")
    elif case == "unknown version":
        write_json_atomic(config, {**meta, "format_version": 99})
    elif case == "no version":
        write_json_atomic(config, {k: v for k, v in meta.items() if k != "format_version"})
    elif case == "impossible model":
        write_json_atomic(config, {**meta, "model": {**meta["model"], "n_head": 3}})
    elif case == "unknown model key":
        write_json_atomic(config, {**meta, "model": {**meta["model"], "n_experts": 8}})
    elif case == "model not an object":
        write_json_atomic(config, {**meta, "model": "gpt2"})
    elif case == "negative step":
        write_json_atomic(config, {**meta, "step": -5})
    elif case == "metrics not an object":
        write_json_atomic(config, {**meta, "metrics": [1]})
    elif case == "tokenizer without type":
        write_json_atomic(run / "tokenizer.json", {"chars": "abc"})
    elif case == "garbage tokenizer":
        (run / "tokenizer.json").write_text("{'type': 'char'}")
    else:
        raise AssertionError(case)


DAMAGE = {  # case -> (file named in the message, words that say what is wrong)
    "missing weights": ("model.safetensors", "not found"),
    "missing config": ("config.json", "not found"),
    "truncated weights": ("model.safetensors", "truncated"),
    "empty weights": ("model.safetensors", "too short"),
    "pickle as weights": ("model.safetensors", "header"),
    "missing tensor": ("model.safetensors", "missing tensors ['transformer.h.0.attn.c_attn.bias']"),
    "extra tensor": ("model.safetensors", "unexpected tensors ['transformer.h.9.attn.c_attn.bias']"),
    "wrong shape": ("model.safetensors", "has shape (7,), the config needs (48,)"),
    "integer weights": ("model.safetensors", "floating point"),
    "NaN": ("model.safetensors", "NaN or infinite"),
    "inf": ("model.safetensors", "NaN or infinite"),
    "garbage config": ("config.json", "not UTF-8"),
    "config is a list": ("config.json", "JSON object"),
    "unknown version": ("config.json", "format_version 99 is unknown"),
    "no version": ("config.json", "no format_version"),
    "impossible model": ("config.json", "not divisible by n_head=3"),
    "unknown model key": ("config.json", "n_experts"),
    "model not an object": ("config.json", "must be a JSON object"),
    "negative step": ("config.json", "step"),
    "metrics not an object": ("config.json", "metrics"),
    "tokenizer without type": ("tokenizer.json", '"type"'),
    "garbage tokenizer": ("tokenizer.json", "not valid JSON"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_every_damaged_checkpoint_is_a_checkpoint_error_naming_the_file(saved, case):
    run, _ = saved
    damage(case, run)
    filename, words = DAMAGE[case]
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(run)
    assert str(error.value).startswith(f"{filename}: ")  # the file inside the run ...
    assert str(run) not in str(error.value)  # ... never the server's folder (issue 11)
    assert words in str(error.value)


def test_a_missing_folder_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        load_checkpoint(tmp_path / "never-saved")


# ---- hostile safetensors files -------------------------------------------------------------


HOSTILE = {
    "huge header length": lambda path: path.write_bytes(struct.pack("<Q", 2**63) + b"{}"),
    "header longer than file": lambda path: path.write_bytes(struct.pack("<Q", 1000) + b"{}"),
    "header not json": lambda path: path.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{}"),
    "header a list": lambda path: path.write_bytes(struct.pack("<Q", 2) + b"[]"),
    "weird dtype": lambda path: rewrite_header(path, lambda h: h["w"].update(dtype="F8_E4M3")),
    "object dtype": lambda path: rewrite_header(path, lambda h: h["w"].update(dtype={"evil": 1})),
    "path traversal name": lambda path: rewrite_header(path, lambda h: h.update({"../../etc/passwd": h.pop("w")})),
    "negative shape": lambda path: rewrite_header(path, lambda h: h["w"].update(shape=[-2, -3])),
    "shape too big for bytes": lambda path: rewrite_header(path, lambda h: h["w"].update(shape=[10**6, 10**6])),
    "offsets past the end": lambda path: rewrite_header(path, lambda h: h["w"].update(data_offsets=[0, 10**12])),
    "overlapping tensors": lambda path: rewrite_header(
        path, lambda h: [h[name].update(data_offsets=[0, 24]) for name in ("v", "w")]
    ),
    "metadata not strings": lambda path: rewrite_header(path, lambda h: h.update(__metadata__={"a": 1})),
    "entry not an object": lambda path: rewrite_header(path, lambda h: h.update(w=[1, 2])),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_safetensors_files_are_refused_cleanly(tmp_path, case):
    path = tmp_path / "evil.safetensors"
    save_file({"w": torch.ones(2, 3), "v": torch.zeros(6)}, path)
    HOSTILE[case](path)
    with pytest.raises(CheckpointError) as error:
        load_tensors(path)
    assert str(path) in str(error.value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10_000), value=st.integers(0, 255), cut=st.booleans())
def test_a_randomly_damaged_file_loads_or_raises_checkpoint_error(tmp_path, position, value, cut):
    path = tmp_path / "fuzz.safetensors"
    save_file({"w": torch.ones(2, 3), "v": torch.arange(4)}, path, metadata={"k": "v"})
    raw = bytearray(path.read_bytes())
    position %= len(raw)
    if cut:
        raw = raw[:position]
    else:
        raw[position] = value
    path.write_bytes(bytes(raw))
    try:
        tensors = load_tensors(path)
    except CheckpointError as error:
        assert str(path) in str(error)
    else:
        # a flipped byte inside a name or a value is still a well-formed file
        assert len(tensors) == 2 and all(isinstance(t, torch.Tensor) for t in tensors.values())


class Booby:
    """Unpickling this runs code: it creates ``marker``. A safe loader never triggers it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("filename", ["model.safetensors", "config.json", "tokenizer.json"])
def test_a_pickle_planted_in_a_checkpoint_is_never_run(saved, tmp_path, filename):
    run, _ = saved
    marker = tmp_path / "pwned"
    (run / filename).write_bytes(pickle.dumps(Booby(marker)))
    with pytest.raises(CheckpointError, match=filename):
        load_checkpoint(run)
    assert not marker.exists()


def test_loading_never_calls_an_unpickler(saved, monkeypatch):
    run, model = saved

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load must never unpickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = load_checkpoint(run)
    idx = random_idx(model.config)
    assert torch.equal(logits_of(loaded.model, idx), logits_of(model, idx))


# ---- atomic saves --------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()], ids=["disk-full", "interrupt"])
@pytest.mark.parametrize("failing_write", [1, 2, 3], ids=["weights", "tokenizer", "config"])
def test_a_save_that_fails_half_way_keeps_the_old_checkpoint(saved, tiny_config, monkeypatch, failure, failing_write):
    run, old_model = saved
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    real_fsync, calls = os.fsync, []

    def fsync_that_fails(fd):  # the n-th file written dies before it is safely on disk
        calls.append(fd)
        if len(calls) == failing_write:
            raise failure
        return real_fsync(fd)

    monkeypatch.setattr(toygpt.checkpoint.os, "fsync", fsync_that_fails)
    expected = CheckpointError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        save_checkpoint(run, GPT(tiny_config, seed=123), {"type": "byte"}, step=43)
    monkeypatch.undo()
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before  # no temp files left
    loaded = load_checkpoint(run)
    assert loaded.step == 42 and loaded.tokenizer == TOKENIZER
    idx = random_idx(tiny_config)
    assert torch.equal(logits_of(loaded.model, idx), logits_of(old_model, idx))


def test_a_failed_disk_write_names_the_file(tmp_path, monkeypatch):
    target = tmp_path / "weights.safetensors"
    atomic_write(target, b"old")

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(toygpt.checkpoint, "save_file", no_space)
    with pytest.raises(CheckpointError, match="weights.safetensors: write failed \\(No space left on device\\)"):
        save_tensors(target, {"w": torch.ones(2)})
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]


def test_a_successful_save_replaces_the_old_one(saved, tiny_config):
    run, _ = saved
    new_model = GPT(tiny_config, seed=321).eval()
    save_checkpoint(run, new_model, step=50)
    loaded = load_checkpoint(run)
    assert loaded.step == 50 and loaded.tokenizer == TOKENIZER  # tokenizer=None keeps the old file
    idx = random_idx(tiny_config)
    assert torch.equal(logits_of(loaded.model, idx), logits_of(new_model, idx))
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert oct((run / "config.json").stat().st_mode & 0o777) == oct(0o644)


def test_checkpoint_docstring_examples_hold():
    import doctest

    result = doctest.testmod(toygpt.checkpoint)
    assert result.failed == 0 and result.attempted >= 1
