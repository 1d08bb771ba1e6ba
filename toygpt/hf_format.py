"""GPT-2 in Hugging Face's layout: its config keys, its weight names and layouts, and a folder
``transformers.GPT2LMHeadModel.from_pretrained`` loads.

toygpt uses GPT-2's parameter names, so the mapping is almost the identity. Two differences:

* GPT-2 was written in TensorFlow with ``Conv1D`` layers, which store a linear layer's weight
  as (in_features, out_features): the transpose of ``nn.Linear``'s (out, in). The four matrices
  ``attn.c_attn``, ``attn.c_proj``, ``mlp.c_fc`` and ``mlp.c_proj`` are transposed on the way.
* Hugging Face keeps the causal mask as a buffer ``h.N.attn.bias`` (confusingly named like a
  weight) in some files; toygpt computes its mask, so those are skipped.

Only the format lives here (pure conversion, no network); ``toygpt.pretrained`` gets the real
weights (hub download, or the learner's own folder or zip) and keeps them in a local cache.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from toygpt.checkpoint import check_weights_fit, json_bytes
from toygpt.model import GPT, GPTConfig
from toygpt.tokenizers import Tokenizer

CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")  # note the dot: "attn.c_attn.bias" is a weight
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")  # GPT-2's GELU: the tanh approximation, as toygpt's
# config.json settings toygpt's GPT-2 cannot follow: (key, Hugging Face default, test, needed)
GPT2_ONLY = (
    ("model_type", "gpt2", lambda v: v == "gpt2", "'gpt2'"),
    ("activation_function", "gelu_new", lambda v: v in GELU_TANH, "the tanh GELU 'gelu_new'"),
    ("layer_norm_epsilon", 1e-5, lambda v: v == 1e-5, "1e-05"),
    ("scale_attn_weights", True, lambda v: v is True, "true"),
    ("scale_attn_by_inverse_layer_idx", False, lambda v: v is False, "false"),
    ("add_cross_attention", False, lambda v: v is False, "false"),
)


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
            "that transformers trains like any weight; other position schemes (sinusoidal, none, "
            "RoPE, ALiBi) have no place in its format (set pos_encoding='learned')"
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


def toygpt_name(name: str) -> str:
    """A Hugging Face GPT-2 tensor name as toygpt's: ``h.0.attn.c_attn.weight`` (the hub's file)
    and ``transformer.h.0...`` (``state_dict()``) both become ``transformer.h.0...``."""
    return name if name == "lm_head.weight" else "transformer." + name.removeprefix("transformer.")


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
        ours = toygpt_name(name)
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
