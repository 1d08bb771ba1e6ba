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
(learned as GPT-2 / sinusoidal as the original / none), ``scale_residual_init`` (GPT-2's
0.02/sqrt(2·n_layer) init of the residual projections) and ``tie_embeddings``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

NORM_POSITIONS = ("pre", "post")
POS_ENCODINGS = ("learned", "sinusoidal", "none")


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
    pos_encoding: str = "learned"  # "learned" as GPT-2 | "sinusoidal" | "none"
    scale_residual_init: bool = True  # GPT-2: residual projections init with 0.02/sqrt(2*n_layer)
    tie_embeddings: bool = True  # lm_head shares its weight with wte, as GPT-2
    # The token generation starts from on an empty prompt: a context this model was trained on
    # (GPT-2: <|endoftext|>; toygpt's runs record one from their data). None: the tokenizer's
    # rule in toygpt.sample.start_token_id.
    bos_token_id: int | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive whole number (try 1 or more)")
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


# --------------------------------------------------------------------------------------------
# Positions
# --------------------------------------------------------------------------------------------


def sinusoidal_positions(block_size: int, n_embd: int) -> torch.Tensor:
    """The original Transformer's fixed encoding: channel pair (2i, 2i+1) holds
    sin/cos(pos / 10000^(2i/n_embd)), so each position gets a unique, smooth fingerprint.

    >>> sinusoidal_positions(4, 2)[:, 0]  # channel 0 is sin(pos)
    tensor([0.0000, 0.8415, 0.9093, 0.1411])
    """
    position = torch.arange(block_size, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    frequency = torch.exp(torch.arange(0, n_embd, 2, dtype=torch.float32) * (-math.log(10000.0) / n_embd))
    table = torch.zeros(block_size, n_embd)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


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

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's (B, nh, T_new, hs) keys/values; return all of them so far."""
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class CausalSelfAttention(nn.Module):
    """Every position mixes in information from itself and earlier positions, all at once.

    Two paths with the same result:
    * fused (default): ``F.scaled_dot_product_attention``, fast, never materialises the T×T matrix.
    * explicit: scores → causal mask → softmax → weighted sum, written out so the attention
      probabilities can be handed to a probe (``self.probe``) for inspection.
    """

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
        self.probe = None  # callable(attention_probs (B, nh, T, T_keys)); forces the explicit path

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 × (B, T, C)
        q = q.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        return q, k, v

    def explicit_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)  # (B, nh, T, T_keys)
        mask = causal_mask(q.shape[2], k.shape[2], device=q.device)
        scores = scores.masked_fill(~mask, float("-inf"))  # the future is hidden
        attention_probs = F.softmax(scores, dim=-1)  # each row sums to 1
        if self.probe is not None:
            self.probe(attention_probs)
        attention_probs = self.attn_dropout(attention_probs)
        return attention_probs @ v  # (B, nh, T, hs): a weighted sum of values

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.split_heads(x)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)  # (B, nh, T_past + T, hs)
        if self.use_fused and self.probe is None:
            # With a cache and a single new query, that query may see every key: no mask needed.
            is_causal = q.shape[2] > 1
            if is_causal and k.shape[2] != q.shape[2]:
                mask = causal_mask(q.shape[2], k.shape[2], device=q.device)
                y = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
                )
            else:
                y = F.scaled_dot_product_attention(
                    q, k, v, is_causal=is_causal, dropout_p=self.dropout if self.training else 0.0
                )
        else:
            y = self.explicit_attention(q, k, v)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))


# --------------------------------------------------------------------------------------------
# The MLP and the block
# --------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """Per-position feed-forward network: widen 4×, GELU (tanh approximation, as GPT-2), narrow."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
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

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.ln_1(x), kv_cache, self.layer)
            x = x + self.mlp(self.ln_2(x))
        else:
            x = self.ln_1(x + self.attn(x, kv_cache, self.layer))
            x = self.ln_2(x + self.mlp(x))
        return x


# --------------------------------------------------------------------------------------------
# The whole model
# --------------------------------------------------------------------------------------------


class GPT(nn.Module):
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
        if start + idx.shape[1] > self.config.block_size:
            raise ValueError(
                f"sequence of {start + idx.shape[1]} tokens is longer than block_size="
                f"{self.config.block_size}; crop to the last {self.config.block_size} tokens"
            )
        if torch.compiler.is_compiling():
            return  # reading values would split the compiled graph; the trainer's ids are checked data
        low, high = int(idx.min()), int(idx.max())
        if low < 0 or high >= self.config.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {self.config.vocab_size - 1}]")

    def position_encoding(self, start: int, T: int, device: torch.device) -> torch.Tensor | None:
        if self.config.pos_encoding == "learned":
            return self.transformer.wpe(torch.arange(start, start + T, device=device))  # (T, C)
        if self.config.pos_encoding == "sinusoidal":
            return self.sinusoid[start : start + T]  # (T, C)
        return None

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        start = 0 if kv_cache is None else kv_cache.length
        self.check_input(idx, start)
        idx = idx.long()
        x = self.transformer.wte(idx)  # (B, T, C)
        if self.token_scale != 1.0:
            x = x * self.token_scale  # sinusoidal positions only (see __init__)
        positions = self.position_encoding(start, idx.shape[1], idx.device)
        if positions is not None:
            x = x + positions  # (B, T, C) + (T, C) broadcasts over the batch
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, kv_cache)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, vocab_size): a score for every possible next token
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1).long(), ignore_index=-1)
        return logits, loss

    # ---- helpers ------------------------------------------------------------------------

    def set_attention(self, fused: bool) -> None:
        """Switch every attention layer between the fused kernel and the explicit path."""
        for block in self.transformer.h:
            block.attn.use_fused = fused

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
    Embedding lookups and LayerNorm/softmax/GELU are element-wise and left out (≪ 1%).
    Training (forward + backward) is 3× the forward: the backward pass costs two matmuls per one.
    """
    C, T, L, V = config.n_embd, config.block_size, config.n_layer, config.vocab_size
    forward = L * (2 * 12 * C * C + 2 * 2 * T * C) + 2 * C * V
    return 3 * forward if training else forward
