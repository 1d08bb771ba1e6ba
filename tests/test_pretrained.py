"""GPT-2 weights without the internet: layouts convert both ways, tiny locally made "hub"
files load, a local fake hub serves a download (checksum checked), and every way of being
offline fails within seconds with a message that says what to do."""

from __future__ import annotations

import doctest
import hashlib
import http.server
import json
import socket
import threading
import time

import pytest
import torch
from huggingface_hub import constants as hub_constants
from safetensors.torch import save_file

import toygpt.hf_format
import toygpt.pretrained
from toygpt.checkpoint import model_tensors
from toygpt.hf_format import (
    config_from_hf,
    config_to_hf,
    hf_state_dict_to_toygpt,
    toygpt_to_hf_state_dict,
)
from toygpt.model import GPT, GPTConfig, preset
from toygpt.pretrained import (
    PretrainedUnavailable,
    load_gpt2,
    pretrained_folder,
    pretrained_status,
)

CONFIG = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16)
REPO = "openai-community/gpt2"


@pytest.fixture(autouse=True)
def online_by_default(monkeypatch):
    """Start every test "online" (no offline switches), whatever the machine's environment."""
    for variable in ("HF_HUB_OFFLINE", "TOYGPT_OFFLINE", "TOYGPT_PRETRAINED_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)


def varied_model(config: GPTConfig = CONFIG, seed: int = 0) -> GPT:
    """Weights large enough that every parameter visibly moves the logits."""
    model = GPT(config, seed=seed).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.2)
    return model


def hub_layout(model: GPT) -> dict[str, torch.Tensor]:
    """What the hub's gpt2/model.safetensors holds: bare names (no "transformer."), no head
    (tied), Conv1D weights (in, out), and the causal-mask buffers ``h.N.attn.bias``."""
    tensors = {}
    for name, tensor in toygpt_to_hf_state_dict(model).items():
        if name != "lm_head.weight":
            tensors[name.removeprefix("transformer.")] = tensor
    T = model.config.block_size
    for layer in range(model.config.n_layer):
        tensors[f"h.{layer}.attn.bias"] = torch.ones(T, T).tril().view(1, 1, T, T)
    return tensors


def write_hub_files(folder, model: GPT) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_to_hf(model.config)))
    save_file(hub_layout(model), folder / "model.safetensors", metadata={"format": "pt"})


def same_logits(a: GPT, b: GPT) -> bool:
    idx = torch.randint(0, a.config.vocab_size, (2, a.config.block_size), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a(idx)[0], b(idx)[0])


# ---- layouts -------------------------------------------------------------------------------


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_toygpt_to_hf_and_back_is_exact(tie):
    model = varied_model(CONFIG.replace(tie_embeddings=tie))
    hf = toygpt_to_hf_state_dict(model)
    c_attn = hf["transformer.h.0.attn.c_attn.weight"]
    assert c_attn.shape == (16, 48)  # Conv1D: (in, out)
    assert torch.equal(c_attn, model.transformer.h[0].attn.c_attn.weight.T)
    back = hf_state_dict_to_toygpt(hf, model.config)
    assert back.keys() == model_tensors(model).keys()
    assert all(torch.equal(back[name], tensor) for name, tensor in model_tensors(model).items())


def test_the_hubs_bare_layout_with_mask_buffers_converts_too():
    model = varied_model()
    tensors = hf_state_dict_to_toygpt(hub_layout(model), CONFIG)
    assert all(torch.equal(tensors[name], tensor) for name, tensor in model_tensors(model).items())


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda sd: sd.pop("transformer.h.1.mlp.c_fc.bias"), "missing tensors ['transformer.h.1.mlp.c_fc.bias']"),
        (lambda sd: sd.update({"transformer.h.0.attn.c_attn.weight": torch.zeros(48, 16)}), "(16, 48)"),
        (lambda sd: sd.update({"transformer.h.2.ln_1.weight": torch.ones(16)}), "unexpected tensors"),
        (lambda sd: sd.update({"lm_head.weight": torch.zeros(40, 16)}), "lm_head.weight differs"),
        (lambda sd: sd.update({"transformer.wpe.weight": [[0.0]]}), "not a tensor"),
    ],
    ids=["missing", "untransposed", "extra-layer", "untied-head", "not-a-tensor"],
)
def test_a_mismatched_state_dict_names_the_tensor(edit, message):
    sd = toygpt_to_hf_state_dict(varied_model())
    edit(sd)
    with pytest.raises(ValueError) as error:
        hf_state_dict_to_toygpt(sd, CONFIG)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "changes,fix",
    [(dict(norm_position="post"), "norm_position='pre'"), (dict(pos_encoding="sinusoidal"), "pos_encoding='learned'"),
     (dict(bias=False), "bias=True")],
)  # fmt: skip
def test_variants_without_a_gpt2_layout_are_refused(changes, fix):
    model = GPT(CONFIG.replace(**changes))
    with pytest.raises(ValueError, match=fix):
        toygpt_to_hf_state_dict(model)
    with pytest.raises(ValueError, match=fix):
        config_to_hf(model.config)


# ---- configs -------------------------------------------------------------------------------


GPT2_124M_CONFIG_JSON = {  # the hub's openai-community/gpt2 config.json, abridged
    "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
    "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
    "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "vocab_size": 50257,
}  # fmt: skip


def test_config_from_hf_reads_the_real_gpt2_config():
    # GPT-2 starts a text after <|endoftext|> (its bos_token_id), the separator of its training data
    assert config_from_hf(GPT2_124M_CONFIG_JSON) == preset("gpt2", dropout=0.0, bos_token_id=50256)
    assert config_from_hf(config_to_hf(CONFIG)) == CONFIG
    assert config_from_hf(config_to_hf(CONFIG.replace(tie_embeddings=False))).tie_embeddings is False


@pytest.mark.parametrize(
    "changes,words",
    [
        (dict(activation_function="relu"), "activation_function='relu'"),
        (dict(model_type="llama"), "model_type='llama'"),
        (dict(n_inner=1000), "n_inner=1000"),
        (dict(layer_norm_epsilon=1e-6), "layer_norm_epsilon=1e-06"),
        (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx=True"),
        (dict(n_head=5), "not divisible by n_head=5"),
    ],
)
def test_config_from_hf_refuses_what_toygpt_cannot_follow(changes, words):
    with pytest.raises(ValueError) as error:
        config_from_hf({**GPT2_124M_CONFIG_JSON, **changes})
    assert words in str(error.value)
    with pytest.raises(ValueError, match="JSON object"):
        config_from_hf([1, 2])


# ---- loading from the cache folder (no network at all) -------------------------------------


def test_load_gpt2_from_copied_files_works_offline(tmp_path, monkeypatch):
    model = varied_model()
    write_hub_files(tmp_path / "gpt2", model)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert pretrained_status("gpt2", cache_dir=tmp_path) is None
    loaded = load_gpt2("gpt2", cache_dir=tmp_path, endpoint="http://127.0.0.1:9")
    assert not loaded.training and loaded.config == CONFIG
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    assert same_logits(loaded, model)


def test_default_cache_is_in_the_data_dir_and_can_be_moved(tmp_path, monkeypatch, isolated_dirs):
    assert pretrained_folder("gpt2") == isolated_dirs / "data" / "pretrained" / "gpt2"
    monkeypatch.setenv("TOYGPT_PRETRAINED_DIR", str(tmp_path / "weights"))
    assert pretrained_folder("distilgpt2") == tmp_path / "weights" / "distilgpt2"
    write_hub_files(tmp_path / "weights" / "gpt2", varied_model())
    assert same_logits(load_gpt2(), varied_model())
    with pytest.raises(ValueError, match="unknown pretrained model 'gpt5'"):
        load_gpt2("gpt5")


@pytest.mark.parametrize(
    "damage,words",
    [
        (lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 20), "model.safetensors"),
        (lambda f: (f / "config.json").write_text("{"), "config.json: not valid JSON"),
        (lambda f: (f / "config.json").write_text(json.dumps({**config_to_hf(CONFIG), "n_embd": 32})), "shape"),
    ],
    ids=["garbage-weights", "garbage-config", "config-disagrees"],
)
def test_damaged_cached_files_say_to_delete_them(tmp_path, damage, words):
    write_hub_files(tmp_path / "gpt2", varied_model())
    damage(tmp_path / "gpt2")
    with pytest.raises(PretrainedUnavailable) as error:
        load_gpt2(cache_dir=tmp_path, endpoint="http://127.0.0.1:9")
    assert words in str(error.value) and "Delete that folder" in str(error.value)


# ---- offline: fast, clear failures ---------------------------------------------------------


def assert_explains_how(error: PretrainedUnavailable, folder) -> None:
    message = str(error)
    assert str(folder) in message and "model.safetensors" in message and "config.json" in message
    assert "online" in message


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TOYGPT_OFFLINE"])
def test_offline_mode_fails_at_once_and_says_how(tmp_path, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    start = time.monotonic()
    with pytest.raises(PretrainedUnavailable) as error:
        load_gpt2(cache_dir=tmp_path, endpoint="http://127.0.0.1:9")
    assert time.monotonic() - start < 1.0
    assert variable in str(error.value)
    assert_explains_how(error.value, tmp_path / "gpt2")
    status = pretrained_status(cache_dir=tmp_path)
    assert variable in status and str(tmp_path / "gpt2") in status


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket closes


def test_an_unreachable_hub_fails_within_seconds(tmp_path):
    start = time.monotonic()
    with pytest.raises(PretrainedUnavailable) as error:
        load_gpt2(cache_dir=tmp_path, endpoint=f"http://127.0.0.1:{closed_port()}", timeout=2)
    assert time.monotonic() - start < 3.0
    assert "cannot reach" in str(error.value)
    assert_explains_how(error.value, tmp_path / "gpt2")
    assert "not downloaded yet" in pretrained_status(cache_dir=tmp_path)


def test_a_hub_that_never_answers_times_out():
    # A server that accepts the connection and then says nothing: the worst case for a hang.
    with socket.socket() as silent, pytest.raises(PretrainedUnavailable, match="no answer|timed out") as error:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        start = time.monotonic()
        try:
            load_gpt2(endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1)
        finally:
            elapsed = time.monotonic() - start
    assert elapsed < 4.0, elapsed
    assert "online" in str(error.value)


# ---- a download from a local fake hub ------------------------------------------------------


class FakeHub(http.server.ThreadingHTTPServer):
    """Answers like huggingface.co's /<repo>/resolve/main/<file> (HEAD + GET, with the
    X-Repo-Commit and sha256 ETag headers the real hub sends)."""

    def __init__(self, files: dict[str, bytes], etags: dict[str, str] | None = None):
        super().__init__(("127.0.0.1", 0), FakeHubHandler)
        self.files, self.etags, self.requests = files, etags or {}, []
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"


class FakeHubHandler(http.server.BaseHTTPRequestHandler):
    def answer_head(self) -> bytes | None:
        self.server.requests.append((self.command, self.path))
        prefix = f"/{REPO}/resolve/main/"
        name = self.path.removeprefix(prefix)
        if not self.path.startswith(prefix) or name not in self.server.files:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        body = self.server.files[name]
        self.send_response(200)
        self.send_header("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
        etag = self.server.etags.get(name, hashlib.sha256(body).hexdigest())
        self.send_header("ETag", f'"{etag}"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return body

    def do_HEAD(self):  # noqa: N802 - the name http.server calls
        self.answer_head()

    def do_GET(self):  # noqa: N802
        body = self.answer_head()
        if body is not None:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub_files(tmp_path):
    model = varied_model(seed=4)
    write_hub_files(tmp_path / "made-here", model)
    files = {name: (tmp_path / "made-here" / name).read_bytes() for name in ("config.json", "model.safetensors")}
    return model, files


def serve(hub: FakeHub) -> threading.Thread:
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    return thread


def test_download_from_a_hub_then_load_from_the_cache_alone(tmp_path, fake_hub_files):
    model, files = fake_hub_files
    hub = FakeHub(files)
    serve(hub)
    try:
        loaded = load_gpt2(cache_dir=tmp_path / "cache", endpoint=hub.endpoint)
    finally:
        hub.shutdown()
        hub.server_close()
    assert same_logits(loaded, model)
    assert ("GET", f"/{REPO}/resolve/main/model.safetensors") in hub.requests
    assert pretrained_status(cache_dir=tmp_path / "cache") is None
    # the hub is gone now: the cached copy is enough
    again = load_gpt2(cache_dir=tmp_path / "cache", endpoint=hub.endpoint, timeout=1)
    assert same_logits(again, model)


def test_a_download_with_the_wrong_checksum_is_deleted(tmp_path, fake_hub_files):
    _, files = fake_hub_files
    hub = FakeHub(files, etags={"model.safetensors": hashlib.sha256(b"something else").hexdigest()})
    serve(hub)
    try:
        with pytest.raises(PretrainedUnavailable, match="damaged in transfer"):
            load_gpt2(cache_dir=tmp_path, endpoint=hub.endpoint)
    finally:
        hub.shutdown()
        hub.server_close()
    assert not (tmp_path / "gpt2" / "model.safetensors").exists()
    assert pretrained_status(cache_dir=tmp_path) is not None


def test_a_hub_without_the_file_is_a_clear_error(tmp_path):
    hub = FakeHub({})
    serve(hub)
    try:
        with pytest.raises(PretrainedUnavailable, match="refused openai-community/gpt2/model.safetensors .*404"):
            load_gpt2(cache_dir=tmp_path, endpoint=hub.endpoint, timeout=2)
    finally:
        hub.shutdown()
        hub.server_close()


def test_pretrained_docstring_examples_hold():
    """The examples of the weights' cache and of the Hugging Face format it reads."""
    results = [doctest.testmod(m) for m in (toygpt.hf_format, toygpt.pretrained)]
    assert sum(r.failed for r in results) == 0 and sum(r.attempted for r in results) >= 2
