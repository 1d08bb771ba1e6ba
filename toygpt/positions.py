"""Where a token is: the position encodings ``model.py`` can use, as plain functions.

``GPTConfig.pos_encoding`` picks one: ``learned`` (GPT-2: a trained table ``wpe``, no function
needed), ``sinusoidal`` (the original Transformer's fixed table, added to the token embedding),
``rope`` (rotary: queries and keys turned by an angle that grows with position, Su et al. 2021)
or ``alibi`` (no vectors at all: a bias on the attention scores that grows with distance,
Press et al. 2021). Each function has a worked example; ``model.py`` calls them.
"""

from __future__ import annotations

import math

import torch


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


def rope_angles(positions: torch.Tensor, head_size: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of RoPE's rotation angles, each (T, head_size), for ``positions`` (T,).

    Rotary position embedding (Su et al. 2021, "RoFormer", eq. 34): channel pair i of a query or
    key at position p is turned by the angle p·θ_i, θ_i = base^(−2i/head_size), so a query at
    position m and a key at n meet at an angle that depends only on m − n. Pairs follow the
    GPT-NeoX / Llama "half split": channel i is paired with channel i + head_size/2 (not the
    paper's interleaved 2i, 2i+1); both columns of a pair get the same angle here.

    >>> cos, sin = rope_angles(torch.tensor([0, 1]), 4)
    >>> sin[1]  # θ = 1, 0.01 for the two pairs, each repeated for its second channel
    tensor([0.8415, 0.0100, 0.8415, 0.0100])
    """
    theta = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)  # (hs/2,)
    angles = positions.float()[:, None] * theta[None, :]  # (T, hs/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, hs): pair i is channels i and i + hs/2
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) → (−x2, x1) on the two halves of the last dimension: a 90° turn of every pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate every channel pair of ``x`` (…, T, hs) by its angle: x·cos + rotate_half(x)·sin,
    the 2-D rotation (a, b) → (a·cos − b·sin, b·cos + a·sin) of each pair. Norms are unchanged."""
    return x * cos + rotate_half(x) * sin


def alibi_slopes(n_head: int) -> torch.Tensor:
    """ALiBi's head slopes (Press et al. 2021, "Train Short, Test Long", section 3), (n_head,).

    For n heads, n a power of two: the geometric sequence that starts at 2^(−8/n) with that same
    ratio, so 8 heads get 1/2, 1/4, ..., 1/256. Other head counts (the authors' code): the slopes
    of the largest power of two below n, then every other slope of twice that many heads.

    >>> alibi_slopes(8).tolist()[:3], alibi_slopes(8).tolist()[-1]
    ([0.5, 0.25, 0.125], 0.00390625)
    """

    def geometric(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    power = 2 ** math.floor(math.log2(n_head))
    slopes = geometric(power) + geometric(2 * power)[0::2][: n_head - power]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: torch.Tensor, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
    """The bias ALiBi adds to the attention scores, (nh, T, T_k): −slope_h·(i − j) for a query
    at position i and a key at j ≤ i, so each head prefers nearby keys, at its own rate; no
    position vector is added anywhere. (Keys after the query get a positive number, then the
    causal mask hides them.)

    >>> alibi_bias(torch.tensor([0.5]), torch.arange(3), torch.arange(3))[0]
    tensor([[ 0.0000,  0.5000,  1.0000],
            [-0.5000,  0.0000,  0.5000],
            [-1.0000, -0.5000,  0.0000]])
    """
    behind = (key_positions[None, :] - query_positions[:, None]).to(slopes.dtype)  # (T, T_k): j − i
    return slopes[:, None, None] * behind  # = −slope·(i − j)
