"""Looking inside a model by *changing* it: head ablation, activation patching, induction heads.

``toygpt.inspection`` only looks (attention maps, logit lens). The tools here intervene through
the same hook points (``run_with_hooks`` replaces a value for one call) and measure what changes:

* **Head ablation** — knock out one attention head (its output ``attn.hook_z`` set to zero, or to
  its mean) and see how much the loss rises: a head whose removal costs nothing is not used for
  this text. toygpt ablates one head at a time; it does not search for circuits of several heads.
* **Activation patching** (causal tracing, Meng et al. 2022, "Locating and Editing Factual
  Associations in GPT"; the logit-difference metric as in Wang et al. 2022, "Interpretability in
  the Wild: a Circuit for Indirect Object Identification in GPT-2 small") — run a *clean* prompt
  and a *corrupted* one (one token changed), then rerun the corrupted prompt with one activation
  copied in from the clean run. Where the copy brings back the clean prediction, that activation
  carries the information the change destroyed. toygpt patches the residual stream at each
  (layer, position) and each head's output at all positions; it adds no noise (Meng et al.
  corrupt with Gaussian noise on the embeddings; here the learner changes a token) and patches
  one place at a time, without path patching.
* **Induction heads** (Olsson et al. 2022, "In-context Learning and Induction Heads") — on random
  tokens repeated once, an induction head at a token of the second half attends to the token
  that *followed* that token's previous occurrence, and so can predict it: the loss on the
  repeated half drops. The score here is TransformerLens's: the mean attention on that one key.

Shapes: ``B`` batch, ``T`` positions, ``nh`` heads, ``hs`` head size, ``V`` vocabulary; losses are
in nats per token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from toygpt.inspection import residual_stream_names, run_with_cache, run_with_hooks, token_tensor
from toygpt.model import GPT

ABLATIONS = ("zero", "mean")
MAX_PATCH_TOKENS = 256  # residual patching runs n_layer + 1 batches of T prompts


def head_output_name(layer: int) -> str:
    """The hook point holding every head's output of block ``layer``: ``attn.hook_z``
    (B, nh, T, hs), each head's weighted sum of values before ``c_proj`` mixes the heads."""
    return f"blocks.{layer}.attn.hook_z"


def _windows(model: GPT, windows: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Token windows (N, L + 1) as a long tensor: position t predicts token t + 1."""
    if not isinstance(windows, torch.Tensor):
        windows = torch.tensor([list(windows)])
    if windows.dim() == 1:
        windows = windows[None]
    if windows.dim() != 2 or windows.shape[1] < 2:
        raise ValueError(f"need token windows of shape (N, L + 1) with L ≥ 1, got {tuple(windows.shape)}; "
                         "give at least two tokens")  # fmt: skip
    if windows.shape[1] - 1 > model.config.block_size:
        raise ValueError(f"windows of {windows.shape[1] - 1} tokens + 1 target are longer than block_size="
                         f"{model.config.block_size}; use windows of at most {model.config.block_size + 1} tokens")  # fmt: skip
    return windows.long()


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each position, (B, T) nats, from logits (B, T, V) and targets (B, T)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none").view(targets.shape)


# --------------------------------------------------------------------------------------------
# Head ablation
# --------------------------------------------------------------------------------------------


def head_means(model: GPT, inputs: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's head outputs averaged over the batch and positions of ``inputs``, (nh, hs)
    per layer: the value a mean-ablated head is held at (the text's own average, not a separate
    reference set as in TransformerLens's examples)."""
    names = [head_output_name(layer) for layer in range(model.config.n_layer)]
    _, cache = run_with_cache(model, inputs, names)
    return [cache[name].mean(dim=(0, 2)) for name in names]


def ablation_hook(head: int, method: str, mean: torch.Tensor | None = None):
    """A hook for ``attn.hook_z`` that replaces head ``head``'s output by 0 or its ``mean`` (hs,)."""
    if method not in ABLATIONS:
        raise ValueError(f"ablation {method!r}; choose one of {ABLATIONS}")

    def ablate(z: torch.Tensor, name: str) -> torch.Tensor:
        z = z.clone()
        z[:, head] = 0.0 if method == "zero" else mean[head][None, None, :].to(z.dtype)  # (B, T, hs)
        return z

    return ablate


def ablated_token_losses(model: GPT, windows: torch.Tensor, layer: int, head: int, method: str = "zero",
                         means: list[torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
    """Per-token loss (N, L) with head (``layer``, ``head``) ablated, on ``windows`` (N, L + 1)."""
    windows = _windows(model, windows)
    check_head(model, layer, head)
    inputs, targets = windows[:, :-1], windows[:, 1:]
    if method == "mean" and means is None:
        means = head_means(model, inputs)
    mean = means[layer] if method == "mean" else None
    logits = run_with_hooks(model, inputs, {head_output_name(layer): ablation_hook(head, method, mean)})
    return token_losses(logits, targets)


def check_head(model: GPT, layer: int, head: int) -> None:
    n_layer, n_head = model.config.n_layer, model.config.n_head
    if not (0 <= layer < n_layer and 0 <= head < n_head):
        raise ValueError(f"no head ({layer}, {head}); this model has layers 0..{n_layer - 1}, heads 0..{n_head - 1}")


@dataclass(frozen=True)
class HeadAblation:
    """Head ablation on N windows of L tokens: ``base_losses`` (N, L) per-token loss of the
    untouched model; ``loss_change`` (n_layer, nh) mean loss with that head ablated minus the
    base mean (positive: the head helped); ``method`` "zero" or "mean"."""

    method: str
    base_losses: torch.Tensor
    loss_change: torch.Tensor

    @property
    def base_loss(self) -> float:
        return float(self.base_losses.mean())

    def top_heads(self, k: int = 3) -> list[tuple[int, int, float]]:
        """The ``k`` heads whose ablation raised the loss most: (layer, head, change)."""
        flat = self.loss_change.flatten()
        order = flat.argsort(descending=True)[:k]
        n_head = self.loss_change.shape[1]
        return [(int(i) // n_head, int(i) % n_head, float(flat[i])) for i in order]


def ablate_heads(model: GPT, windows: torch.Tensor | Sequence[int], method: str = "zero") -> HeadAblation:
    """Ablate each head in turn (one forward pass each) on ``windows`` (N, L + 1) token ids.

    >>> result = ablate_heads(model, val_windows)         # doctest: +SKIP
    >>> result.loss_change[1, 2]   # how much the loss rose without block 1's head 2
    """
    if method not in ABLATIONS:
        raise ValueError(f"ablation {method!r}; choose one of {ABLATIONS}")
    windows = _windows(model, windows)
    inputs, targets = windows[:, :-1], windows[:, 1:]
    base = token_losses(run_with_hooks(model, inputs, {}), targets)
    means = head_means(model, inputs) if method == "mean" else None
    change = torch.zeros(model.config.n_layer, model.config.n_head)
    for layer in range(model.config.n_layer):
        for head in range(model.config.n_head):
            ablated = ablated_token_losses(model, windows, layer, head, method, means)
            change[layer, head] = ablated.mean() - base.mean()
    return HeadAblation(method, base, change)


# --------------------------------------------------------------------------------------------
# Activation patching
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patching:
    """Activation patching of one clean/corrupted pair (each T tokens).

    ``clean_token`` / ``corrupted_token``: the next tokens the metric compares (by default what
    each prompt predicts); ``clean_diff`` / ``corrupted_diff``: logit[clean_token] −
    logit[corrupted_token] at the last position of each run. ``residual`` (n_layer + 1, T):
    restored fraction when the residual stream at ``residual_names[row]``, position t, comes from
    the clean run; ``heads`` (n_layer, nh): the same for one head's output at every position.
    Restored fraction = (diff_patched − corrupted_diff) / (clean_diff − corrupted_diff): 0 leaves
    the corrupted prediction, 1 restores the clean one; it is not clipped, so an overshoot shows.
    """

    clean_token: int
    corrupted_token: int
    clean_diff: float
    corrupted_diff: float
    residual_names: list[str]
    residual: torch.Tensor
    heads: torch.Tensor


def _pair(model: GPT, clean: Sequence[int] | torch.Tensor, corrupted: Sequence[int] | torch.Tensor):
    clean_ids, corrupted_ids = token_tensor(model, clean), token_tensor(model, corrupted)
    if clean_ids.shape != corrupted_ids.shape:
        raise ValueError(f"the clean prompt has {clean_ids.shape[1]} tokens and the corrupted one "
                         f"{corrupted_ids.shape[1]}: patching copies position by position, so change tokens "
                         "without adding or removing any")  # fmt: skip
    if clean_ids.shape[1] > MAX_PATCH_TOKENS:
        raise ValueError(f"{clean_ids.shape[1]} tokens; patch prompts of at most {MAX_PATCH_TOKENS} tokens")
    return clean_ids, corrupted_ids


def patched_logits(model: GPT, corrupted: torch.Tensor, clean_cache: dict[str, torch.Tensor],
                   where: dict[str, Sequence[int] | None]) -> torch.Tensor:  # fmt: skip
    """Logits (B, T, V) of ``corrupted`` (B, T) with each hook point ``name`` in ``where`` copied
    from ``clean_cache`` at positions ``where[name]`` (None: all positions). ``{}`` patches
    nothing, so it returns the corrupted logits."""

    def copy_from_clean(value: torch.Tensor, name: str) -> torch.Tensor:
        value, clean_value = value.clone(), clean_cache[name].to(value.dtype)
        positions = where[name]
        time_dim = 2 if value.dim() == 4 else 1  # hook_z is (B, nh, T, hs); the stream (B, T, C)
        if positions is None:
            return clean_value.expand_as(value).clone()
        index = torch.tensor(list(positions), dtype=torch.long)
        value.index_copy_(time_dim, index, clean_value.expand_as(value).index_select(time_dim, index))
        return value

    return run_with_hooks(model, corrupted, dict.fromkeys(where, copy_from_clean))


def logit_diff(logits: torch.Tensor, clean_token: int, corrupted_token: int) -> torch.Tensor:
    """logit[clean_token] − logit[corrupted_token] at the last position: (B,) from (B, T, V)."""
    last = logits[:, -1].float()
    return last[:, clean_token] - last[:, corrupted_token]


def activation_patching(model: GPT, clean: Sequence[int] | torch.Tensor, corrupted: Sequence[int] | torch.Tensor,
                        clean_token: int | None = None, corrupted_token: int | None = None) -> Patching:  # fmt: skip
    """Patch the residual stream at every (layer, position) and every head's output from the
    ``clean`` run into the ``corrupted`` run (equal lengths); see ``Patching``.

    The metric needs two different next tokens: by default each prompt's most likely one. If
    both prompts predict the same token, pass ``clean_token`` and ``corrupted_token``.
    Raises ValueError when the prompts differ in length or the two runs' logit differences are
    equal (nothing to restore).
    """
    clean_ids, corrupted_ids = _pair(model, clean, corrupted)
    T, n_layer, n_head, V = clean_ids.shape[1], model.config.n_layer, model.config.n_head, model.config.vocab_size
    names = residual_stream_names(model) + [head_output_name(layer) for layer in range(n_layer)]
    clean_logits, cache = run_with_cache(model, clean_ids, names)
    corrupted_logits = run_with_hooks(model, corrupted_ids, {})
    clean_token = int(clean_logits[0, -1].argmax()) if clean_token is None else int(clean_token)
    corrupted_token = int(corrupted_logits[0, -1].argmax()) if corrupted_token is None else int(corrupted_token)
    for token in (clean_token, corrupted_token):
        if not 0 <= token < V:
            raise ValueError(f"token id {token} is outside the vocabulary [0, {V - 1}]")
    if clean_token == corrupted_token:
        raise ValueError(f"both prompts predict token {clean_token} next, so there is no difference to restore; "
                         "change a token the prediction depends on, or choose the two tokens to compare")  # fmt: skip
    clean_diff = float(logit_diff(clean_logits, clean_token, corrupted_token)[0])
    corrupted_diff = float(logit_diff(corrupted_logits, clean_token, corrupted_token)[0])
    span = clean_diff - corrupted_diff
    if abs(span) < 1e-6:
        raise ValueError("the clean and corrupted runs give the same logit difference; there is nothing to restore")

    def restored(logits: torch.Tensor) -> torch.Tensor:
        return (logit_diff(logits, clean_token, corrupted_token) - corrupted_diff) / span

    stream = residual_stream_names(model)
    residual = torch.zeros(len(stream), T)
    batch = corrupted_ids.expand(T, T)  # row p patches position p
    for row, name in enumerate(stream):

        def patch_row_position(value: torch.Tensor, hook: str, name: str = name) -> torch.Tensor:
            value = value.clone()
            positions = torch.arange(T)
            value[positions, positions] = cache[name][0, positions].to(value.dtype)
            return value

        residual[row] = restored(run_with_hooks(model, batch, {name: patch_row_position}))
    heads = torch.zeros(n_layer, n_head)
    for layer in range(n_layer):
        name = head_output_name(layer)

        def patch_head(value: torch.Tensor, hook: str, name: str = name) -> torch.Tensor:
            value = value.clone()
            rows = torch.arange(n_head)
            value[rows, rows] = cache[name][0, rows].to(value.dtype)  # row h takes head h's output
            return value

        heads[layer] = restored(run_with_hooks(model, corrupted_ids.expand(n_head, T), {name: patch_head}))
    return Patching(clean_token, corrupted_token, clean_diff, corrupted_diff, stream, residual, heads)


# --------------------------------------------------------------------------------------------
# Induction heads
# --------------------------------------------------------------------------------------------


def repeated_random_tokens(vocab_size: int, half: int, batch: int = 8, seed: int = 0) -> torch.Tensor:
    """``batch`` rows of ``half`` random tokens followed by the same ``half`` tokens again,
    (batch, 2·half). Within a half no token repeats when the vocabulary allows it, so each
    token of the second half has exactly one previous occurrence."""
    if half < 2 or batch < 1:
        raise ValueError(f"half={half}, batch={batch}: need half ≥ 2 tokens and batch ≥ 1")
    generator = torch.Generator().manual_seed(seed)
    if vocab_size >= half:
        first = torch.stack([torch.randperm(vocab_size, generator=generator)[:half] for _ in range(batch)])
    else:
        first = torch.randint(vocab_size, (batch, half), generator=generator)
    return torch.cat([first, first], dim=1)


@dataclass(frozen=True)
class InductionScores:
    """``scores`` (n_layer, nh): mean attention from each token of the repeated half to the token
    after its previous occurrence (1 = a perfect induction head). ``first_half_loss`` /
    ``repeated_loss``: mean loss predicting tokens 1..half−1 and half+1..2·half−1 (the token at
    ``half`` starts the repeat and cannot be known); ``loss_drop`` = first − repeated, the
    in-context learning the repeat allows. ``loss_by_position`` (2·half − 1,) mean loss at each
    position; ``sequence_drops`` (B,) the drop of each sequence (its spread says how sure the
    mean drop is)."""

    half: int
    scores: torch.Tensor
    first_half_loss: float
    repeated_loss: float
    loss_by_position: torch.Tensor
    sequence_drops: torch.Tensor

    @property
    def loss_drop(self) -> float:
        return self.first_half_loss - self.repeated_loss

    @property
    def best_head(self) -> tuple[int, int, float]:
        flat = int(self.scores.argmax())
        layer, head = divmod(flat, self.scores.shape[1])
        return layer, head, float(self.scores[layer, head])


def induction_score_of(patterns: torch.Tensor, half: int, shift: int = 0) -> torch.Tensor:
    """From attention patterns (..., B, nh, 2·half, 2·half): each head's mean attention from
    positions t = half .. 2·half−1 to key t − half + 1 (the token after the earlier copy), (..., nh).
    ``shift`` s > 0 moves the key s tokens further on, t − half + 1 + s (0 ≤ s < half): where a
    head that finds the copy by the tokens *before* each key, not the one just before, looks."""
    if not 0 <= shift < half:
        raise ValueError(f"shift={shift} must be from 0 to half − 1 = {half - 1}")
    stripe = torch.diagonal(patterns, offset=-(half - 1 - shift), dim1=-2, dim2=-1)  # key = query − (half − 1 − s)
    return stripe[..., 1 + shift :].mean(dim=(-1, -3))  # stripe[i] is query i + half − 1 − s: keep queries ≥ half


def induction_scores(model: GPT, tokens: torch.Tensor) -> InductionScores:
    """Induction scores and the in-context loss drop on ``tokens`` (B, 2·half), a random half
    repeated once (``repeated_random_tokens``). On halves of one length a head that attends a
    fixed half − 1 tokens back, whatever the tokens, scores like an induction head: score halves
    of two or more lengths to tell them apart."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
        raise ValueError("tokens must be a (B, 2·half) tensor of token ids; use repeated_random_tokens()")
    if tokens.shape[1] > model.config.block_size:
        raise ValueError(f"{tokens.shape[1]} tokens is more than block_size={model.config.block_size}; "
                         f"repeat a half of at most {model.config.block_size // 2} tokens")  # fmt: skip
    tokens = tokens.long()
    half = tokens.shape[1] // 2
    if tokens.shape[1] % 2 or half < 2 or not torch.equal(tokens[:, :half], tokens[:, half:]):
        raise ValueError("tokens must be a half of at least 2 tokens repeated once; use repeated_random_tokens()")
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.config.n_layer)]
    logits, cache = run_with_cache(model, tokens, names)
    scores = torch.stack([induction_score_of(cache[name], half) for name in names])
    losses = token_losses(logits[:, :-1], tokens[:, 1:])  # (B, 2·half − 1): position t predicts t + 1
    first, repeated = losses[:, : half - 1].mean(1), losses[:, half:].mean(1)  # (B,) each
    return InductionScores(half, scores.float(), float(first.mean()), float(repeated.mean()), losses.mean(0),
                           first - repeated)  # fmt: skip


def uniform_induction_score(half: int) -> float:
    """The induction score of a head that spreads its attention evenly over every earlier token:
    the mean of 1/(t + 1) over queries t = half .. 2·half − 1 (a baseline, not 0)."""
    return sum(1.0 / (t + 1) for t in range(half, 2 * half)) / half
