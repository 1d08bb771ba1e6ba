"""The real GPT-2 weights in toygpt, and toygpt weights in Hugging Face's GPT-2 layout.

toygpt uses GPT-2's parameter names, so the mapping is almost the identity. Two differences:

* GPT-2 was written in TensorFlow with ``Conv1D`` layers, which store a linear layer's weight
  as (in_features, out_features): the transpose of ``nn.Linear``'s (out, in). The four matrices
  ``attn.c_attn``, ``attn.c_proj``, ``mlp.c_fc`` and ``mlp.c_proj`` are transposed on the way.
* Hugging Face keeps the causal mask as a buffer ``h.N.attn.bias`` (confusingly named like a
  weight) in some files; toygpt computes its mask, so those are skipped.

``load_gpt2("gpt2")`` downloads the 124M model from the Hugging Face hub once, into
``<toygpt data dir>/pretrained/gpt2`` (``$TOYGPT_PRETRAINED_DIR`` overrides the parent), and
afterwards reads only that folder. Offline it raises ``PretrainedUnavailable`` within seconds.
The matching tokenizer is tiktoken's "gpt2" (``toygpt.tokenizers``); this module does weights.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import HfHubHTTPError
from safetensors.torch import save_file

from toygpt.checkpoint import (
    check_weights_fit,
    copy_weights,
    empty_model,
    json_bytes,
    load_tensors,
    read_json,
)
from toygpt.data import data_dir
from toygpt.model import GPT, GPTConfig
from toygpt.tokenizers import Tokenizer

# toygpt's short name -> (repository on the Hugging Face hub, approximate download size in MB)
HUB_MODELS = {
    "gpt2": ("openai-community/gpt2", 548),
    "gpt2-medium": ("openai-community/gpt2-medium", 1520),
    "gpt2-large": ("openai-community/gpt2-large", 3250),
    "gpt2-xl": ("openai-community/gpt2-xl", 6430),
    "distilgpt2": ("distilbert/distilgpt2", 353),
}
HUB_FILES = ("config.json", "model.safetensors")
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")  # note the dot: "attn.c_attn.bias" is a weight
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")  # GPT-2's GELU: the tanh approximation, as toygpt's
DEFAULT_TIMEOUT_S = 5.0
# config.json settings toygpt's GPT-2 cannot follow: (key, Hugging Face default, test, needed)
GPT2_ONLY = (
    ("model_type", "gpt2", lambda v: v == "gpt2", "'gpt2'"),
    ("activation_function", "gelu_new", lambda v: v in GELU_TANH, "the tanh GELU 'gelu_new'"),
    ("layer_norm_epsilon", 1e-5, lambda v: v == 1e-5, "1e-05"),
    ("scale_attn_weights", True, lambda v: v is True, "true"),
    ("scale_attn_by_inverse_layer_idx", False, lambda v: v is False, "false"),
    ("add_cross_attention", False, lambda v: v is False, "false"),
)


class PretrainedUnavailable(RuntimeError):
    """The pretrained weights cannot be had right now; the message says how to make them available."""


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def gpt2_format_problems(config: GPTConfig) -> list[str]:
    """Why ``config`` has no GPT-2 layout (empty when it has one): GPT-2, and so Hugging Face's
    ``GPT2LMHeadModel``, is pre-LN with a learned position table and biases everywhere."""
    problems = []
    if config.norm_position != "pre":
        problems.append(
            f"norm_position={config.norm_position!r}: GPT-2 normalises before each sub-layer "
            "(pre-LN, ln_1/ln_2 then attention/MLP); a post-LN model computes something else "
            "with the same weights (set norm_position='pre')"
        )
    if config.pos_encoding != "learned":
        problems.append(
            f"pos_encoding={config.pos_encoding!r}: GPT-2 adds a learned position table (wpe) "
            "that transformers trains like any weight; fixed or absent positions have no place "
            "in its format (set pos_encoding='learned')"
        )
    if not config.bias:
        problems.append("bias=False: GPT-2 has biases in every linear layer and LayerNorm (set bias=True)")
    return problems


def check_gpt2_compatible(config: GPTConfig) -> None:
    """Raise ValueError naming every reason ``config`` has no GPT-2 equivalent."""
    problems = gpt2_format_problems(config)
    if problems:
        raise ValueError("this config has no GPT-2 equivalent; " + "; ".join(problems))


def config_from_hf(hf_config: Mapping[str, Any]) -> GPTConfig:
    """A GPTConfig from a Hugging Face GPT-2 ``config.json`` dict.

    Missing keys take Hugging Face's GPT-2 defaults (the 124M model). Dropout is set to 0:
    a pretrained model here is for sampling and inspecting; ``config.replace(dropout=0.1)``
    fine-tunes like GPT-2 did.

    >>> config_from_hf({"n_layer": 2, "n_head": 2, "n_embd": 16, "vocab_size": 32}).n_embd
    16
    """
    if hasattr(hf_config, "to_dict"):  # a transformers GPT2Config
        hf_config = hf_config.to_dict()
    if not isinstance(hf_config, Mapping):
        raise ValueError(f"a GPT-2 config must be a JSON object, got {type(hf_config).__name__}")
    get = hf_config.get
    bad = [
        f"{key}={get(key, default)!r} (toygpt needs {needed})"
        for key, default, fits, needed in GPT2_ONLY
        if not fits(get(key, default))
    ]
    if bad:
        raise ValueError("this GPT-2 variant differs from toygpt's GPT-2: " + ", ".join(bad))
    config = GPTConfig(
        vocab_size=get("vocab_size", 50257),
        block_size=get("n_positions", get("n_ctx", 1024)),
        n_layer=get("n_layer", 12),
        n_head=get("n_head", 12),
        n_embd=get("n_embd", 768),
        dropout=0.0,
        tie_embeddings=bool(get("tie_word_embeddings", True)),
    )
    # where generation starts: GPT-2 after <|endoftext|>, its training data's separator; a model
    # toygpt exported keeps its own start token (its data had no <|endoftext|>)
    about = get("toygpt") if isinstance(get("toygpt"), Mapping) else {}
    bos = about["bos_token_id"] if "bos_token_id" in about else get("bos_token_id", 50256)
    if isinstance(bos, int) and not isinstance(bos, bool) and 0 <= bos < config.vocab_size:
        config = config.replace(bos_token_id=bos)
    if get("n_inner") not in (None, 4 * config.n_embd):
        raise ValueError(f"n_inner={get('n_inner')!r}: toygpt's MLP is 4·n_embd = {4 * config.n_embd} wide")
    return config


def config_to_hf(config: GPTConfig) -> dict[str, Any]:
    """The Hugging Face ``GPT2Config`` keys describing the same model (``GPT2Config(**d)``)."""
    check_gpt2_compatible(config)
    return dict(
        model_type="gpt2",
        architectures=["GPT2LMHeadModel"],
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_embd=config.n_embd,
        n_inner=None,
        activation_function="gelu_new",
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        layer_norm_epsilon=1e-5,
        scale_attn_weights=True,
        tie_word_embeddings=config.tie_embeddings,
    )


# --------------------------------------------------------------------------------------------
# Weights: names and layouts
# --------------------------------------------------------------------------------------------


def is_conv1d_weight(name: str) -> bool:
    return name.endswith(CONV1D_WEIGHTS)


def hf_state_dict_to_toygpt(sd: Mapping[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Hugging Face GPT-2 tensors → toygpt tensors for ``config`` (checked: names, shapes, values).

    Accepts both layouts found in the wild: ``GPT2LMHeadModel.state_dict()`` (names start with
    ``transformer.``, plus ``lm_head.weight``) and the hub's ``model.safetensors`` (bare
    ``h.0.attn.c_attn.weight`` ..., no head: it is tied to ``wte``). Raises ValueError naming
    the first mismatch. A tied head is left out of the result, as in a toygpt checkpoint.

    >>> hf_weight = torch.zeros(16, 48)          # Conv1D c_attn: (in=C, out=3C)
    >>> hf_weight.t().shape                      # nn.Linear wants (out, in)
    torch.Size([48, 16])
    """
    check_gpt2_compatible(config)
    tensors = {}
    for name, tensor in sd.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"GPT-2 state dict: {name} is a {type(tensor).__name__}, not a tensor")
        if name.endswith(MASK_BUFFERS):
            continue  # a stored causal mask, not a weight
        ours = name if name == "lm_head.weight" else "transformer." + name.removeprefix("transformer.")
        tensors[ours] = tensor.t() if is_conv1d_weight(ours) and tensor.dim() == 2 else tensor
    with torch.device("meta"):  # a skeleton knows every name and shape and costs no memory
        skeleton = GPT(config)
    return check_weights_fit(skeleton, tensors, "GPT-2 state dict")


def toygpt_to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """toygpt weights in ``GPT2LMHeadModel.state_dict()`` layout (Conv1D weights transposed),
    so ``GPT2LMHeadModel(GPT2Config(**config_to_hf(model.config))).load_state_dict(sd)`` works."""
    check_gpt2_compatible(model.config)
    hf = {}
    for name, tensor in model.state_dict().items():  # includes lm_head.weight, tied or not
        tensor = tensor.detach()
        hf[name] = tensor.t().contiguous() if is_conv1d_weight(name) else tensor.clone()
    return hf


# --------------------------------------------------------------------------------------------
# The local cache
# --------------------------------------------------------------------------------------------


def check_name(name: str) -> tuple[str, int]:
    if name not in HUB_MODELS:
        raise ValueError(f"unknown pretrained model {name!r}; choose one of {sorted(HUB_MODELS)}")
    return HUB_MODELS[name]


def pretrained_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$TOYGPT_PRETRAINED_DIR``, else ``<toygpt data dir>/pretrained``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    explicit = os.environ.get("TOYGPT_PRETRAINED_DIR")
    return Path(explicit).expanduser() if explicit else data_dir() / "pretrained"


def pretrained_folder(name: str = "gpt2", cache_dir: str | Path | None = None) -> Path:
    """Where ``name``'s ``config.json`` and ``model.safetensors`` live once downloaded."""
    check_name(name)
    return pretrained_dir(cache_dir) / name


def is_cached(folder: Path) -> bool:
    return all((folder / filename).is_file() for filename in HUB_FILES)


def how_to_get(name: str, folder: Path) -> str:
    repo, size_mb = check_name(name)
    return (
        f"To use {name}, load it once while online (about {size_mb} MB from "
        f"huggingface.co/{repo}, saved into {folder}), or copy model.safetensors and "
        f"config.json of {repo} into {folder}."
    )


def offline_reason() -> str | None:
    """Why no download may be tried (HF_HUB_OFFLINE or TOYGPT_OFFLINE set), else None."""
    for variable in ("HF_HUB_OFFLINE", "TOYGPT_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() not in ("", "0", "false", "no", "off"):
            return f"offline mode ({variable}={os.environ[variable]})"
    if hub_constants.HF_HUB_OFFLINE:  # read by huggingface_hub when it was imported
        return "offline mode (HF_HUB_OFFLINE)"
    return None


def pretrained_status(name: str = "gpt2", cache_dir: str | Path | None = None) -> str | None:
    """None if ``load_gpt2(name)`` works right now without the network; else the reason and
    what to do, for the UI to show. Never touches the network."""
    folder = pretrained_folder(name, cache_dir)
    if is_cached(folder):
        return None
    reason = offline_reason()
    if reason:
        return f"{name} is not downloaded and toygpt is in {reason}. {how_to_get(name, folder)}"
    return f"{name} is not downloaded yet; loading it will download it. {how_to_get(name, folder)}"


# --------------------------------------------------------------------------------------------
# Download (once) and load
# --------------------------------------------------------------------------------------------


def ask_hub(repo: str, endpoint: str, timeout: float, advice: str) -> str | None:
    """One HEAD request for the weights file, bounded in time; returns its sha256 if the hub
    gives one. Run in a thread because a stuck DNS lookup ignores socket timeouts, and done
    before ``hf_hub_download``, which retries a dead network for ~25 s (minutes if it hangs)."""
    outcome: dict[str, Any] = {}

    def ask() -> None:
        try:
            url = hf_hub_url(repo, "model.safetensors", endpoint=endpoint)
            outcome["metadata"] = get_hf_file_metadata(url, timeout=timeout, endpoint=endpoint)
        except Exception as exc:  # noqa: BLE001 - httpx, OSError, hub errors: all mean "not reachable"
            outcome["error"] = exc

    thread = threading.Thread(target=ask, daemon=True, name="toygpt-hub-probe")
    thread.start()
    thread.join(timeout + 1.0)
    if thread.is_alive() or not outcome:
        raise PretrainedUnavailable(f"no answer from {endpoint} within {timeout:g} s (offline?). {advice}")
    error = outcome.get("error")
    if isinstance(error, HfHubHTTPError):  # the hub answered, with an error
        summary = str(error).splitlines()[0]
        raise PretrainedUnavailable(f"{endpoint} refused {repo}/model.safetensors ({summary}). {advice}")
    if error is not None:
        raise PretrainedUnavailable(f"cannot reach {endpoint}: offline? ({type(error).__name__}: {error}). {advice}")
    etag = outcome["metadata"].etag or ""
    return etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None


def check_sha256(path: Path, expected: str | None, advice: str) -> None:
    """A download must match the checksum the hub published; a bad file is deleted."""
    if expected is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        path.unlink(missing_ok=True)
        raise PretrainedUnavailable(
            f"{path} was damaged in transfer (sha256 {digest.hexdigest()[:12]}…, expected "
            f"{expected[:12]}…) and was deleted; try again. {advice}"
        )


def download(name: str, folder: Path, endpoint: str | None, timeout: float) -> None:
    """Fetch ``config.json`` and ``model.safetensors`` of ``name`` into ``folder``."""
    advice = how_to_get(name, folder)
    reason = offline_reason()
    if reason:
        raise PretrainedUnavailable(f"{name} is not downloaded and toygpt is in {reason}. {advice}")
    repo, _ = check_name(name)
    endpoint = (endpoint or hub_constants.ENDPOINT).rstrip("/")
    expected_sha256 = ask_hub(repo, endpoint, timeout, advice)
    try:
        for filename in HUB_FILES:
            hf_hub_download(repo, filename, local_dir=folder, endpoint=endpoint, etag_timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - the network stack raises many types; one message
        raise PretrainedUnavailable(f"downloading {name} from {endpoint} failed ({type(exc).__name__}: {exc}). {advice}") from exc
    check_sha256(folder / "model.safetensors", expected_sha256, advice)


def load_hf_folder(folder: str | Path) -> GPT:
    """A GPT from a folder holding a Hugging Face GPT-2's ``config.json`` + ``model.safetensors``.
    Raises ValueError (a CheckpointError for unreadable files) naming the file and problem."""
    folder = Path(folder)
    config = config_from_hf(read_json(folder / "config.json"))
    tensors = hf_state_dict_to_toygpt(load_tensors(folder / "model.safetensors"), config)
    model = empty_model(config)
    copy_weights(model, tensors)
    return model.eval()


def load_gpt2(
    name: str = "gpt2",
    cache_dir: str | Path | None = None,
    *,
    endpoint: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> GPT:
    """GPT-2's real weights as a toygpt GPT (eval mode), downloaded on first use.

    Raises ``PretrainedUnavailable`` when the weights are neither cached nor downloadable
    within ``timeout`` seconds, or when the cached files are damaged; the message says what to do.
    ``endpoint`` is the hub's address (default: ``$HF_ENDPOINT`` or https://huggingface.co).
    """
    folder = pretrained_folder(name, cache_dir)
    if not is_cached(folder):
        download(name, folder, endpoint, timeout)
    try:
        return load_hf_folder(folder)
    except ValueError as exc:  # CheckpointError is a ValueError too
        raise PretrainedUnavailable(
            f"the files of {name} in {folder} cannot be used: {exc}. Delete that folder and load "
            f"again, or copy intact model.safetensors and config.json of {HUB_MODELS[name][0]} there."
        ) from exc


# --------------------------------------------------------------------------------------------
# Out to Hugging Face: a folder transformers.GPT2LMHeadModel.from_pretrained loads
# --------------------------------------------------------------------------------------------

HF_README = "README.md"
TOYGPT_TOKENIZER_FILE = "toygpt_tokenizer.json"  # not "tokenizer.json": that name means HF's format


def hf_config_json(model: GPT, tokenizer: Tokenizer, about: Mapping[str, Any]) -> dict[str, Any]:
    """``config.json`` for ``GPT2Config``: the shape, the end-of-text id if the tokenizer has
    one, and a ``toygpt`` entry saying what this model is (run, step, corpus, tokenizer)."""
    end_of_text = tokenizer.special_tokens.get("<|endoftext|>")
    return {
        **config_to_hf(model.config),
        "bos_token_id": end_of_text,
        "eos_token_id": end_of_text,
        "torch_dtype": "float32",
        "toygpt": {"exported_by": "toygpt (python -m toygpt runs export-hf)", **about,
                   "bos_token_id": model.config.bos_token_id},  # where toygpt starts generating
    }


def hf_model_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """What ``GPT2LMHeadModel.save_pretrained`` writes: float32, ``transformer.*`` names, Conv1D
    layout, and no ``lm_head.weight`` when it is tied to ``wte`` (transformers re-ties it)."""
    tensors = toygpt_to_hf_state_dict(model)
    if model.config.tie_embeddings:
        tensors.pop("lm_head.weight")
    return {name: tensor.float() for name, tensor in tensors.items()}


def hf_tokenizer_files(tokenizer: Tokenizer) -> dict[str, bytes]:
    """Files that let the folder carry its tokenizer.

    GPT-2's tokenizer goes in Hugging Face's own form (``vocab.json`` + ``merges.txt`` are
    GPT-2's ``encoder.json`` + ``vocab.bpe``, byte for byte), so ``GPT2TokenizerFast`` loads it.
    Every other tokenizer has no Hugging Face form here: its toygpt description goes in
    ``toygpt_tokenizer.json`` and the README says how to encode with it.
    """
    from toygpt.tokenizers.tiktoken_ import TiktokenTokenizer, encoding_file_bytes

    if isinstance(tokenizer, TiktokenTokenizer) and tokenizer.name == "gpt2":
        encoder_json, vocab_bpe = encoding_file_bytes("gpt2", ("encoder.json", "vocab.bpe"))
        special = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
        config = {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, **special}
        return {
            "vocab.json": encoder_json,
            "merges.txt": vocab_bpe,
            "tokenizer_config.json": json_bytes(config),
            "special_tokens_map.json": json_bytes(special),
        }
    return {TOYGPT_TOKENIZER_FILE: json_bytes(tokenizer.to_dict(), "the tokenizer")}


def hf_readme(model: GPT, tokenizer: Tokenizer, about: Mapping[str, Any]) -> str:
    """The folder's README: what it is, how to load it, how to turn text into ids."""
    from toygpt.tokenizers.tiktoken_ import TiktokenTokenizer

    c = model.config
    described = ", ".join(f"{key} {value}" for key, value in about.items())
    if isinstance(tokenizer, TiktokenTokenizer) and tokenizer.name == "gpt2":
        encode = ("from transformers import GPT2TokenizerFast\n"
                  "tokenizer = GPT2TokenizerFast.from_pretrained(FOLDER)\n"
                  "ids = tokenizer(\"Hello\", return_tensors=\"pt\").input_ids")  # fmt: skip
        how = "GPT-2's own tokenizer (vocab.json + merges.txt, as on the Hugging Face hub)."
    elif isinstance(tokenizer, TiktokenTokenizer):
        encode = (f"import tiktoken, torch\nencoding = tiktoken.get_encoding({tokenizer.name!r})\n"
                  "ids = torch.tensor([encoding.encode_ordinary(\"Hello\")])")  # fmt: skip
        how = f"OpenAI's {tokenizer.name!r} through tiktoken ({TOYGPT_TOKENIZER_FILE} names it)."
    else:
        encode = ("import torch\nfrom toygpt.tokenizers import load_tokenizer\n"
                  f"tokenizer = load_tokenizer(FOLDER + \"/{TOYGPT_TOKENIZER_FILE}\")\n"
                  "ids = torch.tensor([tokenizer.encode(\"Hello\")])\ntext = tokenizer.decode(ids[0].tolist())")  # fmt: skip
        how = (f"toygpt's {tokenizer.type_name!r} tokenizer ({tokenizer.vocab_size} tokens), which "
               f"Hugging Face has no class for: it is described in {TOYGPT_TOKENIZER_FILE} "
               "(toygpt's own JSON). Encode with toygpt (pip install the toygpt package), or read "
               "that JSON: for 'char' the id of a character is its index in \"chars\"; for "
               "'byte' the id is the UTF-8 byte value; for 'bpe' the merges are listed in order.")  # fmt: skip
    return (
        f"# A GPT-2-shaped model trained with toygpt\n\n{described}.\n\n"
        f"GPT-2 architecture (pre-LN, learned positions, tanh GELU): {c.n_layer} layers, {c.n_head} heads, "
        f"{c.n_embd} channels, a context of {c.block_size} tokens, {c.vocab_size} tokens in the vocabulary, "
        f"{'tied' if c.tie_embeddings else 'separate'} input/output embeddings, float32 weights.\n\n"
        "## Load it with Hugging Face transformers\n\n```python\nfrom transformers import GPT2LMHeadModel\n"
        "FOLDER = \"path/to/this/folder\"\nmodel = GPT2LMHeadModel.from_pretrained(FOLDER).eval()\n```\n\n"
        f"## Turn text into token ids\n\nTokenizer: {how}\n\n```python\n{encode}\n"
        "logits = model(ids).logits  # (1, T, vocab_size), the same numbers toygpt computes\n```\n"
    )  # fmt: skip


def export_hf(model: GPT, tokenizer: Tokenizer, folder: str | Path, about: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` as a Hugging Face GPT-2 folder: ``config.json``, ``model.safetensors``,
    the tokenizer's files (``hf_tokenizer_files``) and a ``README.md``.

    ``GPT2LMHeadModel.from_pretrained(folder)`` then gives the same logits as ``model``.
    ``about`` (JSON values) goes into ``config.json`` under ``"toygpt"`` and into the README.
    All or nothing: the files are written into a hidden folder beside ``folder`` and renamed
    into place at the end. Raises ValueError when the model has no GPT-2 layout (naming why)
    or ``folder`` exists and is not empty.
    """
    problems = gpt2_format_problems(model.config)
    if problems:
        raise ValueError("GPT-2's format cannot express this model: " + "; ".join(problems))
    target = Path(folder).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"{target} already exists and is not an empty folder; pick a new folder")
    about = dict(about or {})
    files = {"config.json": json_bytes(hf_config_json(model, tokenizer, about), "config.json"),
             **hf_tokenizer_files(tokenizer),
             HF_README: hf_readme(model, tokenizer, about).encode("utf-8")}  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        save_file(hf_model_tensors(model), staging / "model.safetensors", metadata={"format": "pt"})
        for name, data in files.items():
            (staging / name).write_bytes(data)
        staging.chmod(0o755)
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def export_hf_zip(model: GPT, tokenizer: Tokenizer, name: str, about: Mapping[str, Any] | None = None) -> bytes:
    """``export_hf`` as a zip (``<name>/config.json`` ...), e.g. for a download button."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = export_hf(model, tokenizer, Path(scratch) / name, about)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.iterdir()):
                archive.write(path, f"{name}/{path.name}")
        return buffer.getvalue()
