"""The GPT-2 forward pass, read top to bottom in one file.

    token ids (B, T)
      → token embedding wte (+ position encoding)            (B, T, C)
      → n_layer × Block:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))   (pre-LN, GPT-2)
      → ln_f → lm_head                                         (B, T, vocab_size)
      → softmax: a probability distribution over the vocabulary for the next token

Parameter names follow GPT-2 (``transformer.wte``, ``transformer.h.0.attn.c_attn`` ...), so the
real GPT-2 weights map onto this model by name (see ``toygpt/pretrained.py``).

Knobs for the comparisons learners ask about, all in ``GPTConfig``:
``norm_position`` (pre-LN as GPT-2 / post-LN as the original Transformer), ``pos_encoding``
(learned as GPT-2 / sinusoidal as the original / none / rope: rotary, Su et al. 2021 / alibi:
linear biases, Press et al. 2021), ``scale_residual_init`` (GPT-2's
0.02/sqrt(2·n_layer) init of the residual projections) and ``tie_embeddings``.

Hook points: every named value of the forward pass, in the order it is computed, can be read or
replaced by a function attached for one call (``toygpt.inspection.run_with_cache`` /
``run_with_hooks``; the names follow TransformerLens). ``B`` batch, ``T`` new positions,
``T_k`` positions attended to (``T`` + cached ones), ``C`` n_embd, ``nh`` n_head, ``hs`` head_size,
``V`` vocab_size; ``blocks.{i}`` is block ``i`` (the module ``transformer.h.{i}``).

==================================  ================  ========================================
name                                shape             value
==================================  ================  ========================================
``hook_embed``                      (B, T, C)         token embedding: rows of ``wte``
``hook_embed_scaled``               (B, T, C)         ... × sqrt(C) (sinusoidal positions only)
``hook_pos_embed``                  (T, C)            position vectors (learned, sinusoidal)
``blocks.{i}.hook_resid_pre``       (B, T, C)         the residual stream entering block i
``blocks.{i}.hook_ln_1``            (B, T, C)         ln_1 output (pre-LN: attention's input)
``blocks.{i}.attn.hook_q/k/v``      (B, nh, T, hs)    queries, keys, values of the new positions
``blocks.{i}.attn.hook_rot_q/k``    (B, nh, T, hs)    queries, keys turned by RoPE (rope only)
``blocks.{i}.attn.hook_alibi``      (nh, T, T_k)      ALiBi's bias −slope·(i − j) (alibi only)
``blocks.{i}.attn.hook_scores``     (B, nh, T, T_k)   q·kᵀ/sqrt(hs), before the mask
``blocks.{i}.attn.hook_masked``     (B, nh, T, T_k)   scores (+ ALiBi bias), -inf on future keys
``blocks.{i}.attn.hook_pattern``    (B, nh, T, T_k)   attention probabilities (rows sum to 1)
``blocks.{i}.attn.hook_z``          (B, nh, T, hs)    each head's weighted sum of values
``blocks.{i}.hook_attn_out``        (B, T, C)         attention output (c_proj), onto the stream
``blocks.{i}.hook_resid_mid``       (B, T, C)         stream + attention output
``blocks.{i}.hook_ln_2``            (B, T, C)         ln_2 output (pre-LN: the MLP's input)
``blocks.{i}.mlp.hook_pre``         (B, T, 4C)        c_fc output, before GELU
``blocks.{i}.mlp.hook_post``        (B, T, 4C)        after GELU
``blocks.{i}.hook_mlp_out``         (B, T, C)         MLP output (c_proj), onto the stream
``blocks.{i}.hook_resid_post``      (B, T, C)         stream + MLP output
``hook_ln_f``                       (B, T, C)         ln_f output (identity for post-LN)
``hook_logits``                     (B, T, V)         lm_head output: next-token scores
==================================  ================  ========================================

Post-LN blocks compute the same names in their own order: ``ln_1`` normalises ``resid_mid``
and ``ln_2`` normalises ``resid_post``, so there the block's output is ``hook_ln_2``.
``hook_scores``, ``hook_masked`` and ``hook_pattern`` exist only on the explicit attention
path, which a block takes when a function is attached to one of them; every other point is on
both paths. With nothing attached a hook point is a method call that reads one attribute
(~0.2 µs on an idle core, ~10 µs per forward pass of the small preset): measured against the
model without them, training steps and generation stay within noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from toygpt.hooks import Hooked, HookPoints
from toygpt.positions import alibi_bias, alibi_slopes, apply_rope, rope_angles, sinusoidal_positions

# The largest shapes a config may ask for: far beyond anything that trains here (GPT-2 XL is
# 48 layers × 1600 channels, block 1024), yet bounded, so a config read from a file cannot ask
# for 200,000 layers. Whether a shape *fits in memory* is checked separately (toygpt.limits).
SIZE_LIMITS = {"vocab_size": 2_000_000, "block_size": 65_536, "n_layer": 256, "n_head": 256, "n_embd": 32_768}
NORM_POSITIONS = ("pre", "post")
POS_ENCODINGS = ("learned", "sinusoidal", "none", "rope", "alibi")
ADDED_POSITIONS = ("learned", "sinusoidal")  # encodings added to the residual stream as vectors


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GPTConfig:
    """Shape and variant of a GPT. Frozen: make a changed copy with ``config.replace(...)``."""

    vocab_size: int = 65
    block_size: int = 64  # the longest context the model can read, in tokens
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms, as GPT-2
    norm_position: str = "pre"  # "pre" as GPT-2 | "post" as the original Transformer
    pos_encoding: str = "learned"  # "learned" as GPT-2 | "sinusoidal" | "none" | "rope" | "alibi"
    scale_residual_init: bool = True  # GPT-2: residual projections init with 0.02/sqrt(2*n_layer)
    tie_embeddings: bool = True  # lm_head shares its weight with wte, as GPT-2
    # The token generation starts from on an empty prompt: a context this model was trained on
    # (GPT-2: <|endoftext|>; toygpt's runs record one from their data). None: the tokenizer's
    # rule in toygpt.sample.start_token_id.
    bos_token_id: int | None = None

    def __post_init__(self) -> None:
        for name, high in SIZE_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise ValueError(f"{name}={value!r:.40} must be a whole number from 1 to {high:,}")
        for name in ("bias", "scale_residual_init", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r:.40} must be true or false")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float):
            raise ValueError(f"dropout={self.dropout!r:.40} must be a number in [0, 1); try 0.0 or 0.1")
        if self.n_embd % self.n_head:
            fit = self.n_head * max(1, round(self.n_embd / self.n_head))
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                f"try n_embd={fit} (each head gets n_embd / n_head channels)"
            )
        if self.pos_encoding == "sinusoidal" and self.n_embd % 2:
            raise ValueError(
                f"sinusoidal positions pair sin/cos channels, so n_embd={self.n_embd} must be even; "
                f"try n_embd={self.n_embd + 1}"
            )
        if self.pos_encoding == "rope" and self.head_size % 2:
            fit = self.n_head * (self.head_size + 1)
            raise ValueError(
                f"RoPE rotates pairs of channels in each head, so head_size = n_embd / n_head = "
                f"{self.head_size} must be even; try n_embd={fit}"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout={self.dropout!r} must be in [0, 1); try 0.0 or 0.1")
        if self.norm_position not in NORM_POSITIONS:
            raise ValueError(f"norm_position={self.norm_position!r}; choose one of {NORM_POSITIONS}")
        if self.pos_encoding not in POS_ENCODINGS:
            raise ValueError(f"pos_encoding={self.pos_encoding!r}; choose one of {POS_ENCODINGS}")
        bos = self.bos_token_id
        if bos is not None and (isinstance(bos, bool) or not isinstance(bos, int) or not 0 <= bos < self.vocab_size):
            raise ValueError(f"bos_token_id={bos!r} must be a token id in [0, {self.vocab_size - 1}], or None")

    @property
    def any_length(self) -> bool:
        """True when the position encoding is defined at every position, so the model can read
        more than ``block_size`` tokens (the length it trained on). Learned positions stop there:
        ``wpe`` has ``block_size`` rows."""
        return self.pos_encoding != "learned"

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def replace(self, **changes: Any) -> GPTConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        """Build a config from JSON data; unknown keys are an error (they hint at a wrong file)."""
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)


PRESETS: dict[str, dict[str, Any]] = {
    # trains in well under a minute on 2 CPU cores
    "nano": dict(n_layer=2, n_head=2, n_embd=64, block_size=32),
    # the common CPU recipe for character-level tiny shakespeare
    "small": dict(n_layer=4, n_head=4, n_embd=128, block_size=64),
    # a few minutes per thousand steps on a laptop CPU
    "medium": dict(n_layer=6, n_head=6, n_embd=384, block_size=256),
    # the shape of the real 124M-parameter GPT-2
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),
}


def preset(name: str, **overrides: Any) -> GPTConfig:
    """A named preset, e.g. ``preset("small", vocab_size=65)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return GPTConfig(**{**PRESETS[name], **overrides})


def hook_names(config: GPTConfig) -> list[str]:
    """Every hook point of a model of ``config``, in the order a forward pass reaches them on the
    explicit attention path (the fused path skips the three attention-matrix points)."""
    names = ["hook_embed"]
    if config.pos_encoding == "sinusoidal":
        names.append("hook_embed_scaled")
    if config.pos_encoding in ADDED_POSITIONS:
        names.append("hook_pos_embed")
    attention = ["q", "k", "v"] + {"rope": ["rot_q", "rot_k"], "alibi": ["alibi"]}.get(config.pos_encoding, [])
    attention = [f"attn.hook_{n}" for n in attention + ["scores", "masked", "pattern", "z"]]
    if config.norm_position == "pre":
        block = ["hook_resid_pre", "hook_ln_1", *attention, "hook_attn_out", "hook_resid_mid", "hook_ln_2",
                 "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post"]  # fmt: skip
    else:
        block = ["hook_resid_pre", *attention, "hook_attn_out", "hook_resid_mid", "hook_ln_1",
                 "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post", "hook_ln_2"]  # fmt: skip
    for layer in range(config.n_layer):
        names += [f"blocks.{layer}.{name}" for name in block]
    return names + ["hook_ln_f", "hook_logits"]


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------


def causal_mask(query_len: int, key_len: int | None = None, device: torch.device | None = None) -> torch.Tensor:
    """True where a query may look: at its own position and before it, never ahead.

    With a KV cache the queries are the last ``query_len`` of ``key_len`` positions.

    >>> causal_mask(3).int()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    """
    key_len = query_len if key_len is None else key_len
    return torch.ones(query_len, key_len, dtype=torch.bool, device=device).tril(diagonal=key_len - query_len)


class KVCache:
    """Keys and values of the positions already processed, one pair per layer, so that
    generating the next token only computes attention for that one new token.

    The caller owns the cache: ``model(idx, kv_cache=cache)`` appends the new keys/values of every
    layer and reads ``cache.length`` as the position of the first new token.
    """

    def __init__(self, n_layer: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer

    @property
    def length(self) -> int:
        return 0 if self.keys[-1] is None else self.keys[-1].shape[2]

    def cached(self, layer: int) -> int:
        """How many positions ``layer`` holds: the position of its next new token."""
        return 0 if self.keys[layer] is None else self.keys[layer].shape[2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's (B, nh, T_new, hs) keys/values; return all of them so far."""
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class CausalSelfAttention(Hooked):
    """Every position mixes in information from itself and earlier positions, all at once.

    Two paths with the same result:
    * fused (default): ``F.scaled_dot_product_attention``, fast, never materialises the T×T matrix.
    * explicit: scores → causal mask → softmax → weighted sum, written out so the attention
      matrix has hook points (``hook_scores``, ``hook_masked``, ``hook_pattern``). A block takes
      it when ``use_fused`` is False or a function is attached to one of those three.

    Positions that live inside attention: ``rope`` turns queries and keys by their position
    (``rotate``), ``alibi`` adds a distance penalty to the scores (``position_bias``).
    """

    MATRIX_HOOKS = ("hook_scores", "hook_masked", "hook_pattern")

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_size = config.head_size
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # back onto the residual
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.use_fused = True
        self.pos_encoding = config.pos_encoding
        if config.pos_encoding == "rope":  # angles of the trained positions, computed once
            cos, sin = rope_angles(torch.arange(config.block_size), config.head_size)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        elif config.pos_encoding == "alibi":
            self.register_buffer("slopes", alibi_slopes(config.n_head), persistent=False)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 × (B, T, C)
        q = q.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        return self.hook("hook_q", q), self.hook("hook_k", k), self.hook("hook_v", v)

    def rotate(self, q: torch.Tensor, k: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE: turn queries and keys (B, nh, T, hs) of positions ``start`` .. ``start + T − 1``
        by their angles (``rope_angles``), so their dot products depend only on distance."""
        T = q.shape[2]
        if start + T <= self.rope_cos.shape[0]:
            cos, sin = self.rope_cos[start : start + T], self.rope_sin[start : start + T]  # (T, hs)
        else:  # reading past block_size: these angles were never tabled, compute them
            cos, sin = rope_angles(torch.arange(start, start + T, device=q.device), self.head_size)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        return self.hook("hook_rot_q", apply_rope(q, cos, sin)), self.hook("hook_rot_k", apply_rope(k, cos, sin))

    def position_bias(self, start: int, T: int) -> torch.Tensor:
        """ALiBi: the bias (nh, T, start + T) for the queries at ``start`` .. ``start + T − 1``
        against every key up to the last of them (``alibi_bias``)."""
        positions = torch.arange(start + T, device=self.slopes.device)
        return self.hook("hook_alibi", alibi_bias(self.slopes, positions[start:], positions))

    def explicit_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        scores = self.hook("hook_scores", q @ k.transpose(-2, -1) / math.sqrt(self.head_size))  # (B, nh, T, T_k)
        if bias is not None:
            scores = scores + bias.to(scores.dtype)  # ALiBi: the farther the key, the lower its score
        mask = causal_mask(q.shape[2], k.shape[2], device=q.device)
        scores = self.hook("hook_masked", scores.masked_fill(~mask, float("-inf")))  # the future is hidden
        attention_probs = self.hook("hook_pattern", F.softmax(scores, dim=-1))  # each row sums to 1
        attention_probs = self.attn_dropout(attention_probs)
        return attention_probs @ v  # (B, nh, T, hs): a weighted sum of values

    def fused_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The same result as ``explicit_attention`` from one kernel (B, nh, T, hs)."""
        dropout_p = self.dropout if self.training else 0.0
        if bias is not None:  # ALiBi: the causal mask joins the bias as -inf
            mask = causal_mask(q.shape[2], k.shape[2], device=q.device)
            bias = bias.to(q.dtype).masked_fill(~mask, float("-inf"))
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
        is_causal = q.shape[2] > 1  # a single new query may see every key: no mask needed
        if is_causal and k.shape[2] != q.shape[2]:  # several new queries after cached keys
            mask = causal_mask(q.shape[2], k.shape[2], device=q.device)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, dropout_p=dropout_p)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.split_heads(x)
        start = 0 if kv_cache is None else kv_cache.cached(layer)  # position of the first new token
        if self.pos_encoding == "rope":
            q, k = self.rotate(q, k, start)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)  # (B, nh, T_past + T, hs)
        bias = self.position_bias(start, T) if self.pos_encoding == "alibi" else None
        if self.use_fused and not self.hooks_want(*self.MATRIX_HOOKS):
            y = self.fused_attention(q, k, v, bias)
        else:
            y = self.explicit_attention(q, k, v, bias)
        y = self.hook("hook_z", y)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))


# --------------------------------------------------------------------------------------------
# The MLP and the block
# --------------------------------------------------------------------------------------------


class MLP(Hooked):
    """Per-position feed-forward network: widen 4×, GELU (tanh approximation, as GPT-2), narrow."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hook("hook_pre", self.c_fc(x))  # (B, T, 4C)
        h = self.hook("hook_post", self.gelu(h))
        return self.dropout(self.c_proj(h))  # (B, T, C)


class Block(Hooked):
    """One transformer block. Where the LayerNorm sits is the pre-LN / post-LN difference:

    pre-LN (GPT-2):       x = x + attn(ln_1(x));   x = x + mlp(ln_2(x))
    post-LN (original):   x = ln_1(x + attn(x));   x = ln_2(x + mlp(x))

    Pre-LN leaves a clean residual path from input to output, so gradients reach early layers
    undamped; post-LN normalises the residual stream itself after every sub-layer.
    """

    def __init__(self, config: GPTConfig, layer: int = 0) -> None:
        super().__init__()
        self.layer = layer
        self.pre_norm = config.norm_position == "pre"
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    @property
    def output_hook_name(self) -> str:
        """The hook point holding this block's output: ``hook_resid_post`` (pre-LN) or
        ``hook_ln_2`` (post-LN ends by normalising the stream)."""
        return self.hook_prefix + ("hook_resid_post" if self.pre_norm else "hook_ln_2")

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        x = self.hook("hook_resid_pre", x)
        if self.pre_norm:
            h = self.hook("hook_ln_1", self.ln_1(x))
            x = self.hook("hook_resid_mid", x + self.hook("hook_attn_out", self.attn(h, kv_cache, self.layer)))
            h = self.hook("hook_ln_2", self.ln_2(x))
            return self.hook("hook_resid_post", x + self.hook("hook_mlp_out", self.mlp(h)))
        x = self.hook("hook_resid_mid", x + self.hook("hook_attn_out", self.attn(x, kv_cache, self.layer)))
        x = self.hook("hook_ln_1", self.ln_1(x))
        x = self.hook("hook_resid_post", x + self.hook("hook_mlp_out", self.mlp(x)))
        return self.hook("hook_ln_2", self.ln_2(x))


# --------------------------------------------------------------------------------------------
# The whole model
# --------------------------------------------------------------------------------------------


class GPT(Hooked):
    """A decoder-only transformer: only masked self-attention, no encoder, no cross-attention.

    ``forward(idx, targets=None)`` returns ``(logits, loss)``: logits for every position
    (B, T, vocab_size), and the mean cross-entropy against ``targets`` when given (-1 = ignore).
    """

    def __init__(self, config: GPTConfig, seed: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embedding
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config, layer) for layer in range(config.n_layer)]),
                # post-LN already normalises after the last block; GPT-2 (pre-LN) needs a final norm
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias)
                if config.norm_position == "pre"
                else nn.Identity(),
            )
        )
        if config.pos_encoding == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        elif config.pos_encoding == "sinusoidal":
            # fixed, computed from the shape: not a parameter and not saved in checkpoints
            self.register_buffer("sinusoid", sinusoidal_positions(config.block_size, config.n_embd), persistent=False)
        # The original Transformer multiplies token embeddings by sqrt(n_embd) before adding its
        # ±1 sinusoids; without it the fixed positions drown out tokens initialised at std 0.02.
        # Learned positions start at the tokens' scale, so GPT-2 needs no such factor.
        self.token_scale = math.sqrt(config.n_embd) if config.pos_encoding == "sinusoidal" else 1.0
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight  # one matrix reads and writes tokens
        self.hook_points = HookPoints()
        for layer, block in enumerate(self.transformer.h):
            for module, prefix in ((block, ""), (block.attn, "attn."), (block.mlp, "mlp.")):
                module.hook_points, module.hook_prefix = self.hook_points, f"blocks.{layer}.{prefix}"
        self.reset_parameters(seed)

    # ---- initialisation -----------------------------------------------------------------

    def reset_parameters(self, seed: int | None = None) -> None:
        """GPT-2's init: N(0, 0.02) weights, zero biases; the two residual projections of every
        block (attn.c_proj, mlp.c_proj) get std 0.02/sqrt(2·n_layer) when scale_residual_init,
        because each block adds two contributions to the residual stream and their variance
        would otherwise grow with depth."""
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer) if self.config.scale_residual_init else 0.02
        with torch.no_grad():
            for name, module in self.named_modules():
                if isinstance(module, nn.Linear):
                    std = residual_std if name.endswith("c_proj") else 0.02
                    module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
                    if module.bias is not None:
                        module.bias.zero_()
                elif isinstance(module, nn.Embedding):
                    module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.02)
                elif isinstance(module, nn.LayerNorm):
                    module.weight.fill_(1.0)
                    if module.bias is not None:
                        module.bias.zero_()

    # ---- the forward pass ---------------------------------------------------------------

    def check_input(self, idx: torch.Tensor, start: int = 0) -> None:
        """Bad input gets a ValueError that says what was given and what is allowed."""
        if not isinstance(idx, torch.Tensor):
            raise ValueError(f"idx must be a torch.Tensor of token ids, got {type(idx).__name__}")
        if idx.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"token ids must be integers (torch.long), got dtype {idx.dtype}")
        if idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError(f"idx must have shape (batch, time) with time ≥ 1, got {tuple(idx.shape)}")
        if start + idx.shape[1] > self.config.block_size and not self.config.any_length:
            raise ValueError(
                f"sequence of {start + idx.shape[1]} tokens is longer than block_size="
                f"{self.config.block_size}, where learned positions (wpe) stop; crop to the last "
                f"{self.config.block_size} tokens (sinusoidal, rope, alibi and none read any length)"
            )
        if torch.compiler.is_compiling():
            return  # reading values would split the compiled graph; the trainer's ids are checked data
        low, high = int(idx.min()), int(idx.max())
        if low < 0 or high >= self.config.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {self.config.vocab_size - 1}]")

    def position_encoding(self, start: int, T: int) -> torch.Tensor | None:
        """The encoding of positions ``start .. start + T - 1``: (T, C), or None for ``"none"``."""
        if self.config.pos_encoding == "learned":
            return self.transformer.wpe.weight[start : start + T]  # (T, C): rows of the learned table
        if self.config.pos_encoding == "sinusoidal":
            if start + T > self.sinusoid.shape[0]:  # reading past block_size: extend the formula
                return sinusoidal_positions(start + T, self.config.n_embd).to(self.sinusoid)[start:]
            return self.sinusoid[start : start + T]  # (T, C): rows of the fixed table
        return None  # none, rope, alibi: no vector is added (rope and alibi act inside attention)

    def embed(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Token ids (B, T) → the residual stream entering block 0 (B, T, C): each token's row of
        ``wte`` plus the encoding of its position (``start`` = tokens already in the KV cache)."""
        x = self.hook("hook_embed", self.transformer.wte(idx))  # (B, T, C)
        if self.token_scale != 1.0:
            x = self.hook("hook_embed_scaled", x * self.token_scale)  # sinusoidal only (see __init__)
        positions = self.position_encoding(start, idx.shape[1])
        if positions is not None:
            x = x + self.hook("hook_pos_embed", positions)  # (B, T, C) + (T, C) broadcasts over the batch
        return self.transformer.drop(x)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The residual stream (…, C) → a score for every token of the vocabulary (…, vocab_size):
        the final norm ``ln_f`` (pre-LN only; post-LN blocks already end in one), then ``lm_head``.
        The logit lens reads any layer's stream through this same head."""
        return self.lm_head(self.hook("hook_ln_f", self.transformer.ln_f(x)))

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        start = 0 if kv_cache is None else kv_cache.length
        self.check_input(idx, start)
        x = self.embed(idx.long(), start)  # (B, T, C)
        for block in self.transformer.h:
            x = block(x, kv_cache)
        logits = self.hook("hook_logits", self.head(x))  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1).long(), ignore_index=-1)
        return logits, loss

    # ---- helpers ------------------------------------------------------------------------

    def set_attention(self, fused: bool | Sequence[bool]) -> None:
        """Switch every attention layer between the fused kernel and the explicit path; a
        sequence gives each layer its own (what ``attention_paths()`` returned, to restore it)."""
        paths = [fused] * len(self.transformer.h) if isinstance(fused, bool) else list(fused)
        for block, path in zip(self.transformer.h, paths, strict=True):
            block.attn.use_fused = bool(path)

    def attention_paths(self) -> list[bool]:
        """Per layer: True where attention uses the fused kernel (see ``set_attention``)."""
        return [block.attn.use_fused for block in self.transformer.h]

    def num_parameters(self) -> int:
        """Unique parameters (a tied lm_head is counted once)."""
        return sum(p.numel() for p in self.parameters())


# --------------------------------------------------------------------------------------------
# Size and cost, computed from the config alone (no model needed)
# --------------------------------------------------------------------------------------------


def parameter_counts(config: GPTConfig) -> list[dict[str, Any]]:
    """One row per module: ``{"module", "group", "params"}``; the total of ``params`` equals
    ``sum(p.numel() for p in GPT(config).parameters())``. With tied embeddings the head costs
    nothing, shown as a negative "saving from tying" row next to the head's full size."""
    C, V, b = config.n_embd, config.vocab_size, int(config.bias)
    norm = C + b * C
    rows = [dict(module="transformer.wte", group="embeddings", params=V * C)]
    if config.pos_encoding == "learned":
        rows.append(dict(module="transformer.wpe", group="embeddings", params=config.block_size * C))
    for i in range(config.n_layer):
        rows += [
            dict(module=f"transformer.h.{i}.ln_1", group=f"block {i}", params=norm),
            dict(module=f"transformer.h.{i}.attn", group=f"block {i}", params=C * 3 * C + b * 3 * C + C * C + b * C),
            dict(module=f"transformer.h.{i}.ln_2", group=f"block {i}", params=norm),
            dict(module=f"transformer.h.{i}.mlp", group=f"block {i}", params=C * 4 * C + b * 4 * C + 4 * C * C + b * C),
        ]
    if config.norm_position == "pre":
        rows.append(dict(module="transformer.ln_f", group="final norm", params=norm))
    rows.append(dict(module="lm_head", group="head", params=V * C))
    if config.tie_embeddings:
        rows.append(dict(module="lm_head (tied to wte)", group="saving from tying", params=-V * C))
    return rows


def total_parameters(config: GPTConfig) -> int:
    return sum(row["params"] for row in parameter_counts(config))


def flops_per_token(config: GPTConfig, training: bool = True) -> int:
    """Floating-point operations per token, counting a multiply-add as 2 FLOPs.

    Forward, per layer: 2·(the layer's matmul weights) = 2·12·C² (c_attn 3C², c_proj C², MLP 8C²),
    plus attention itself: QKᵀ and the weighted sum of V, 2·2·T·C with T = block_size (each token
    attends to ≤ T keys; the full T is counted, an upper bound). The head adds 2·C·V.
    Embedding lookups and LayerNorm/softmax/GELU are element-wise and left out (≪ 1%), and so
    are RoPE's rotation (3 per query/key channel) and ALiBi's bias (1 per score): neither adds a
    matmul or a parameter, so every pos_encoding costs the same here.
    Training (forward + backward) is 3× the forward: the backward pass costs two matmuls per one.
    """
    C, T, L, V = config.n_embd, config.block_size, config.n_layer, config.vocab_size
    forward = L * (2 * 12 * C * C + 2 * 2 * T * C) + 2 * C * V
    return 3 * forward if training else forward
