"""A recurrent language model to set beside the transformer: token embedding → LSTM layers → head.

Before attention, language models read text one token after another, carrying a fixed-size
state (Hochreiter & Schmidhuber 1997, "Long Short-Term Memory"; as a language model e.g.
Zaremba et al. 2014, "Recurrent Neural Network Regularization"). Attention replaced this with
every position looking at every earlier one at once (Vaswani et al. 2017). To see the trade,
train both: ``LSTMLanguageModel`` has the interface ``toygpt.trainer.Trainer`` needs
(``toygpt.train.LanguageModel``), so the same loop trains it on the same batches.

What an LSTM has instead of attention: at each position t, layer by layer,

    gates  i, f, o = σ(W·[x_t, h_{t−1}] + b)   (input, forget, output), g = tanh(W_g·[x_t, h_{t−1}] + b_g)
    c_t    = f ⊙ c_{t−1} + i ⊙ g               the cell: what it keeps of the past, n_hidden numbers
    h_t    = o ⊙ tanh(c_t)                      the output, and the next step's input

so everything the model knows about tokens 0..t−1 must fit in (h, c) of each layer: 2 · n_layer ·
n_hidden numbers, whatever the length. It has no attention matrix to look at; its positions are
implicit (the order in which it read), so it reads any length, and position t must wait for t − 1
(a transformer computes a window's positions in parallel).

    >>> from toygpt.model import preset
    >>> config = lstm_matching(preset("nano", vocab_size=65))
    >>> (config.n_layer, config.n_hidden)
    (2, 79)
    >>> LSTMLanguageModel(config, seed=0).num_parameters()   # the nano GPT: total_parameters → 106,304
    106255
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from toygpt.model import SIZE_LIMITS, GPTConfig, total_parameters


@dataclass(frozen=True)
class LSTMConfig:
    """Shape of an LSTM language model. ``block_size`` is the longest window it is trained on
    (the trainer cuts batches to it); the LSTM itself reads any length (``any_length``)."""

    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 2
    n_hidden: int = 128  # the size of each layer's h and c, and of the token embedding
    dropout: float = 0.0
    tie_embeddings: bool = True  # the head shares its weight with the embedding, as the GPT does

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer"):
            value, high = getattr(self, name), SIZE_LIMITS[name]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise ValueError(f"{name}={value!r:.40} must be a whole number from 1 to {high:,}")
        high = SIZE_LIMITS["n_embd"]
        if isinstance(self.n_hidden, bool) or not isinstance(self.n_hidden, int) or not 1 <= self.n_hidden <= high:
            raise ValueError(f"n_hidden={self.n_hidden!r:.40} must be a whole number from 1 to {high:,}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout!r:.40} must be a number in [0, 1); try 0.0 or 0.1")
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"tie_embeddings={self.tie_embeddings!r:.40} must be true or false")

    @property
    def any_length(self) -> bool:
        return True  # a recurrence has no table of positions that could run out

    def replace(self, **changes: Any) -> LSTMConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LSTMConfig:
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise ValueError(f"an LSTM config is a JSON object with keys from {sorted(known)}")
        return cls(**data)


def lstm_parameters(config: LSTMConfig) -> int:
    """Parameters of ``LSTMLanguageModel(config)``, from the shape alone.

    Embedding V·H; each LSTM layer 4 gates × (H·H input weights + H·H recurrent weights + two
    bias vectors of H, as ``torch.nn.LSTM`` keeps b_ih and b_hh); the head H·V unless tied.
    """
    V, H, L = config.vocab_size, config.n_hidden, config.n_layer
    return V * H + L * 4 * (2 * H * H + 2 * H) + (0 if config.tie_embeddings else H * V)


def lstm_matching(gpt: GPTConfig, n_layer: int = 2, tie_embeddings: bool | None = None) -> LSTMConfig:
    """The LSTM with ``n_layer`` layers whose parameter count is closest to ``gpt``'s: solves
    8L·H² + (V + 8L + untied·V)·H = target for the width H (within 1% for any preset, far
    inside the 10% a fair comparison allows). Same vocabulary, window and tying as ``gpt``."""
    tied = gpt.tie_embeddings if tie_embeddings is None else tie_embeddings
    target, V, L = total_parameters(gpt), gpt.vocab_size, n_layer
    a, b = 8 * L, V + 8 * L + (0 if tied else V)
    width = (-b + math.sqrt(b * b + 4 * a * target)) / (2 * a)
    candidates = [LSTMConfig(gpt.vocab_size, gpt.block_size, L, max(1, h), gpt.dropout, tied)
                  for h in (math.floor(width), math.ceil(width))]  # fmt: skip
    return min(candidates, key=lambda c: abs(lstm_parameters(c) - target))


class LSTMLanguageModel(nn.Module):
    """Token embedding → ``torch.nn.LSTM`` (``n_layer`` layers, batch first) → head.

    ``forward(idx, targets=None, state=None)`` returns ``(logits (B, T, vocab_size), loss)`` as
    ``GPT`` does; ``step(idx, state)`` reads more tokens after ``state`` and returns the new state
    (what generation carries instead of a KV cache: its size never grows).
    """

    def __init__(self, config: LSTMConfig, seed: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_hidden)  # token embedding
        self.drop = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(config.n_hidden, config.n_hidden, config.n_layer, batch_first=True,
                            dropout=config.dropout if config.n_layer > 1 else 0.0)  # fmt: skip
        self.lm_head = nn.Linear(config.n_hidden, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int | None = None) -> None:
        """Embedding and head N(0, 0.02) as GPT-2's; LSTM weights U(−1/√H, 1/√H) as torch's
        default, drawn from ``seed``; the forget gate's bias starts at 1 (Jozefowicz et al. 2015:
        remember by default, so gradients reach further back early in training)."""
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        bound, H = 1 / math.sqrt(self.config.n_hidden), self.config.n_hidden
        with torch.no_grad():
            self.wte.weight.copy_(torch.randn(self.wte.weight.shape, generator=generator) * 0.02)
            if not self.config.tie_embeddings:
                self.lm_head.weight.copy_(torch.randn(self.lm_head.weight.shape, generator=generator) * 0.02)
            for name, weight in self.lstm.named_parameters():
                weight.copy_((torch.rand(weight.shape, generator=generator) * 2 - 1) * bound)
                if name.startswith("bias_ih"):
                    weight[H : 2 * H] = 1.0  # gates are stacked (input, forget, cell, output)
                elif name.startswith("bias_hh"):
                    weight[H : 2 * H] = 0.0

    def step(
        self, idx: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Read ``idx`` (B, T) after ``state`` ((h, c), each (n_layer, B, n_hidden); None = the
        start): logits (B, T, vocab_size) and the state after the last token."""
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError(f"idx must be token ids of shape (batch, time) with time ≥ 1, got {getattr(idx, 'shape', idx)}")
        if int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.config.vocab_size - 1}]")
        x = self.drop(self.wte(idx.long()))  # (B, T, H)
        # The recurrence runs in float32 even under the trainer's bf16 autocast: oneDNN's CPU
        # LSTM has no bf16 path on every CPU ("could not create a primitive descriptor").
        with torch.autocast(x.device.type, enabled=False):
            out, state = self.lstm(x.float(), state)  # (B, T, H): position t waited for t − 1
        return self.lm_head(self.drop(out)), state

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits, _ = self.step(idx)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1).long(), ignore_index=-1)
        return logits, loss

    def num_parameters(self) -> int:
        """Unique parameters (a tied head is counted once); equals ``lstm_parameters(config)``."""
        return sum(p.numel() for p in self.parameters())

    def attention_paths(self) -> list[bool]:
        """No attention layers (the trainer's ``LanguageModel`` interface)."""
        return []

    def set_attention(self, fused: bool | Sequence[bool]) -> None:
        """Nothing to switch: an LSTM has no attention (the trainer's interface)."""

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, seed: int = 0) -> torch.Tensor:
        """Continue ``idx`` (B, T) by ``max_new_tokens`` sampled tokens, carrying the state: each
        new token costs one LSTM step whatever the length so far."""
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={max_new_tokens!r} must be a whole number ≥ 0")
        if not (isinstance(temperature, int | float) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature={temperature!r} must be a number > 0; try 1.0")
        generator = torch.Generator().manual_seed(seed)
        was_training = self.training
        self.eval()
        logits, state = self.step(idx)
        out = [idx]
        for _ in range(max_new_tokens):
            probs = F.softmax(logits[:, -1].float() / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
            out.append(token)
            logits, state = self.step(token, state)
        self.train(was_training)
        return torch.cat(out, dim=1)
