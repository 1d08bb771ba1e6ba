"""From logits to one token, stage by stage: the settings, each stage, and the draw.

One step, as the sampling explorer shows it::

    logits (vocab_size,)       the model's score for every possible next token
      → ÷ temperature          < 1 sharpens, > 1 flattens, 0 means greedy (always the argmax)
      → top-k                  keep the k highest-scoring tokens, drop the rest
      → top-p (nucleus)        keep the smallest set of tokens whose probability reaches p
      → softmax → draw one     a seeded ``torch.Generator`` makes the draw repeatable

Everything here works on one position's logits and knows nothing of the model;
``toygpt.sample`` runs the model and loops over this, one token at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is picked from the model's logits.

    ``temperature=0`` means greedy (always the most likely token). ``top_k=None`` and
    ``top_p=None`` switch those filters off.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        t = self.temperature
        if not _finite_number(t) or t < 0:
            raise ValueError(
                f"temperature={t!r} must be a finite number ≥ 0 (0 = greedy, 1 = the model's own "
                "distribution); try 0.8"
            )
        k = self.top_k
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"top_k={k!r} must be a whole number ≥ 1, or None to keep every token; try 40")
        p = self.top_p
        if p is not None and (not _finite_number(p) or not 0 < p <= 1):
            raise ValueError(f"top_p={p!r} must be in the range (0, 1], or None to switch it off; try 0.9")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def plain(self) -> bool:
        """True when sampling straight from the model's softmax: nothing to filter or rescale."""
        return self.temperature == 1 and self.top_k is None and self.top_p is None


def _finite_number(x: Any) -> bool:
    """True for an int or float that is a finite float (``10**400`` is an int but no float)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


# --------------------------------------------------------------------------------------------
# The stages of one step (each takes and returns logits of shape (vocab_size,))
# --------------------------------------------------------------------------------------------


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide the logits by the temperature.

    The logits are first shifted so the largest is 0. Softmax ignores a constant shift, and it
    keeps tiny temperatures finite: ``(x - max) / 1e-30`` is 0 for the best token and ``-inf``
    for the rest, where ``x / 1e-30`` would overflow to ``inf - inf = nan``. Temperature 0 is the
    limit of that: 0 for the (first) best token, ``-inf`` for every other — greedy, no division.

    Two more divisions would give NaN, and are written out instead: a temperature that rounds to
    0 in the logits' dtype (1e-50 is 0 in float32) makes the best token ``0 / 0``, which is 0 (it
    is the limit: every smaller temperature gives it 0 too); one that rounds to ``inf`` makes a
    removed token ``-inf / inf``, which stays ``-inf`` (removed at every temperature).

    >>> apply_temperature(torch.tensor([1.0, 3.0, 2.0]), 0.5)
    tensor([-4.,  0., -2.])
    >>> apply_temperature(torch.tensor([1.0, 3.0, 2.0]), 0)
    tensor([-inf, 0., -inf])
    >>> apply_temperature(torch.tensor([1.0, 3.0, 2.0]), 1e-50)  # 1e-50 is 0.0 in float32
    tensor([-inf, 0., -inf])
    """
    if temperature == 1:
        return logits
    if temperature == 0:
        greedy = torch.full_like(logits, float("-inf"))
        greedy[int(logits.argmax())] = 0.0
        return greedy
    gaps = logits - logits.max()  # ≤ 0: how far below the best token each one is; -inf stays
    scaled = torch.where(gaps == 0, 0.0, gaps / temperature)  # the best: 0 at any temperature
    return torch.where(torch.isneginf(gaps), gaps, scaled)  # removed: -inf at any temperature


def apply_top_k(logits: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """Keep the ``top_k`` highest logits; every other token gets ``-inf`` (probability 0).

    >>> apply_top_k(torch.tensor([1.0, 3.0, 2.0, 0.0]), 2)
    tensor([-inf, 3., 2., -inf])
    """
    if top_k is None or top_k >= logits.shape[-1]:
        return logits  # a k of at least the vocabulary keeps everything
    values, indices = torch.topk(logits, top_k)
    return torch.full_like(logits, float("-inf")).scatter_(-1, indices, values)


def apply_top_p(logits: torch.Tensor, top_p: float | None) -> tuple[torch.Tensor, int]:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability adds up
    to at least ``top_p``; return the filtered logits and how many tokens were kept.

    Probabilities 0.5, 0.3, 0.15, 0.05 with ``top_p=0.7``: 0.5 is not enough, 0.5 + 0.3 = 0.8
    reaches 0.7, so the nucleus is the first two tokens and the cut falls after rank 2.

    >>> apply_top_p(torch.tensor([0.5, 0.3, 0.15, 0.05]).log(), 0.7)
    (tensor([-0.6931, -1.2040,    -inf,    -inf]), 2)
    """
    kept_possible = int(torch.isfinite(logits).sum())
    if top_p is None or top_p >= 1:
        return logits, kept_possible
    # Rank by the logits, not the probabilities: two logits a hair apart can round to the same
    # probability, and the token kept as p → 0 must be the argmax (the greedy token).
    order = torch.sort(logits, descending=True, stable=True).indices
    sorted_probs = F.softmax(logits, dim=-1)[order]
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of the better tokens
    n_kept = max(1, int((mass_before < top_p).sum()))  # tokens added while still below p
    n_kept = min(n_kept, kept_possible)  # never revive a token an earlier stage removed
    filtered = torch.full_like(logits, float("-inf"))
    keep = order[:n_kept]
    filtered[keep] = logits[keep]
    return filtered, n_kept


@dataclass(frozen=True)
class SamplingStages:
    """Every stage of one sampling step, each a (vocab_size,) tensor, for the explorer to draw.

    ``scaled_logits`` is after temperature (shifted so the best logit is 0; see
    ``apply_temperature``). ``top_k_kept`` and ``top_p_cutoff_rank`` count the tokens that
    survive each filter: the top-p cut falls right after rank ``top_p_cutoff_rank``.
    ``context_dropped`` says how many leading prompt tokens were cut off to fit ``block_size``.
    """

    config: SamplingConfig
    raw_logits: torch.Tensor
    scaled_logits: torch.Tensor
    after_top_k: torch.Tensor
    after_top_p: torch.Tensor
    probs: torch.Tensor
    top_k_kept: int
    top_p_cutoff_rank: int
    context_dropped: int = 0

    @property
    def model_probs(self) -> torch.Tensor:
        """The model's own distribution: softmax of the raw logits (temperature 1, no filter)."""
        return F.softmax(self.raw_logits, dim=-1)

    def stage_probs(self) -> dict[str, torch.Tensor]:
        """The probabilities each stage would sample from, in order, keyed by a display name."""
        return {
            "model (T=1)": self.model_probs,
            f"temperature {self.config.temperature:g}": F.softmax(self.scaled_logits, dim=-1),
            "top-k": F.softmax(self.after_top_k, dim=-1),
            "top-p": self.probs,
        }


def stages_from_logits(logits: torch.Tensor, config: SamplingConfig) -> SamplingStages:
    """Run the sampling pipeline on one position's logits (vocab_size,), keeping every stage.

    Logits may be ``-inf`` (a token that can never be drawn, e.g. an id the tokenizer cannot
    decode) but not NaN or ``+inf``, and at least one must be finite. Every stage's
    distribution is then finite and sums to 1, for any valid ``config``.
    """
    if logits.dim() != 1:
        raise ValueError(f"expected one position's logits of shape (vocab_size,), got {tuple(logits.shape)}")
    logits = check_logits(logits.detach())
    scaled = apply_temperature(logits, config.temperature)
    after_top_k = apply_top_k(scaled, config.top_k)
    after_top_p, n_kept = apply_top_p(after_top_k, config.top_p)
    return SamplingStages(
        config=config,
        raw_logits=logits,
        scaled_logits=scaled,
        after_top_k=after_top_k,
        after_top_p=after_top_p,
        probs=F.softmax(after_top_p, dim=-1),
        top_k_kept=int(torch.isfinite(after_top_k).sum()),
        top_p_cutoff_rank=n_kept,
    )


def check_logits(logits: torch.Tensor) -> torch.Tensor:
    """Return ``logits`` if a distribution can be made from them, else raise ``ValueError``:
    NaN or ``+inf`` means broken weights; all ``-inf`` means no token is allowed at all."""
    if bool(torch.isnan(logits).any() | torch.isposinf(logits).any()):
        raise ValueError("the logits contain NaN or +inf; the model's weights are probably corrupt (reload or retrain it)")
    if not bool(torch.isfinite(logits).any()):
        raise ValueError("every logit is -inf: no token is allowed, so there is nothing to sample from")
    return logits


# --------------------------------------------------------------------------------------------
# The draw
# --------------------------------------------------------------------------------------------


def sample_from(probs: torch.Tensor, generator: torch.Generator) -> int:
    """Draw one token id from ``probs`` (vocab_size,) by inverse transform sampling: a uniform
    number u in [0, 1) falls into one token's slice of the cumulative distribution.

    probs 0.5, 0.3, 0.2 → cumulative 0.5, 0.8, 1.0; u = 0.65 lies in [0.5, 0.8) → token 1.
    Same distribution as ``torch.multinomial(probs, 1)``, at a third of its cost per draw
    (three small operations and no input checks), which matters at one draw per token.

    >>> sample_from(torch.tensor([0.0, 1.0, 0.0]), torch.Generator().manual_seed(0))
    1
    """
    cumulative = torch.cumsum(probs, dim=-1)
    u = torch.rand((), generator=generator, dtype=cumulative.dtype)
    token = int(torch.searchsorted(cumulative, u, right=True))  # first slice ending after u
    if token == probs.shape[-1]:  # u above a total that rounded to just under 1
        token = int(probs.nonzero().max())  # the last token that can be drawn at all
    return token


def filtered_probs(logits: torch.Tensor, config: SamplingConfig) -> torch.Tensor:
    """The distribution one draw uses: softmax after temperature, top-k and top-p (vocab_size,)."""
    scaled = apply_temperature(logits, config.temperature)
    filtered, _ = apply_top_p(apply_top_k(scaled, config.top_k), config.top_p)
    return F.softmax(filtered, dim=-1)
