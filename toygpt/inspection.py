"""Look inside one forward pass: attention maps, the logit lens, per-token surprisal, a named
trace of every step with its shape, the size of the residual stream, and the embeddings.

Everything here reads the model's own hook points (the table in ``toygpt.model``): one forward
pass of ``GPT.forward`` serves every tool, so what a page shows is what the model computed,
not a copy of its maths. ``run_with_cache`` keeps the values at chosen hook points;
``run_with_hooks`` lets a function read or *replace* a value (ablation, activation patching).

A model cached for a web app is shared by every visitor: the functions attached for one call
belong to the calling thread only (``HookPoints`` keeps them in a ``threading.local``), so
another visitor's forward pass meanwhile neither calls them nor sees a value they replace, and
keeps the fast fused attention path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from toygpt.hooks import HookFn
from toygpt.model import (
    ADDED_POSITIONS,
    GPT,
    MLP,
    Block,
    CausalSelfAttention,
    KVCache,
    causal_mask,
    hook_names,
)
from toygpt.positions import sinusoidal_positions
from toygpt.sample import as_token_list

# Longest text whose surprisal we compute (in tokens): a guard against pasting a whole book.
MAX_SURPRISAL_TOKENS = 20_000


def token_tensor(model: GPT, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """``ids`` as a (1, T) tensor, checked: 1 ≤ T ≤ block_size, every id in the vocabulary."""
    tokens = as_token_list(ids, model.config.vocab_size)
    block_size = model.config.block_size
    if not tokens:
        raise ValueError("no tokens to inspect; type some text first")
    if len(tokens) > block_size:
        raise ValueError(
            f"{len(tokens)} tokens is more than the model reads at once (block_size={block_size}); "
            f"keep the last {block_size} (toygpt.sample.crop_context(ids, {block_size}))"
        )
    return torch.tensor([tokens], device=model.transformer.wte.weight.device)


def _as_batch(model: GPT, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """A (B, T) tensor passes as it is (``GPT.forward`` checks it); one sequence → (1, T)."""
    if isinstance(ids, torch.Tensor) and ids.dim() == 2 and ids.shape[0] > 1:
        return ids
    return token_tensor(model, ids)


# --------------------------------------------------------------------------------------------
# One forward pass, its named values read or replaced
# --------------------------------------------------------------------------------------------


def check_hook_names(model: GPT, names: Iterable[str]) -> list[str]:
    """``names`` as a list, each one a hook point of this model (else a ValueError naming them)."""
    if isinstance(names, str):
        names = [names]
    names, known = list(names), hook_names(model.config)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"no hook point named {unknown[0]!r} in this model; its hook points are "
            f"{', '.join(known[:12])}, ... (toygpt.model.hook_names(config) lists all {len(known)})"
        )
    return names


def run_with_hooks(
    model: GPT,
    ids: Sequence[int] | torch.Tensor,
    hooks: Mapping[str, HookFn],
    kv_cache: KVCache | None = None,
) -> torch.Tensor:
    """Logits (B, T, vocab_size) of one forward pass with ``hooks`` attached: name → ``fn(value,
    name)``; ``fn`` returns None to only read the value, or a tensor of the same shape to
    replace it downstream. Only this thread's pass sees them; they are detached afterwards.

    >>> def zero_head_0(pattern, name):  # ablate head 0 of block 1
    ...     pattern = pattern.clone(); pattern[:, 0] = 0; return pattern
    >>> run_with_hooks(model, ids, {"blocks.1.attn.hook_pattern": zero_head_0})  # doctest: +SKIP
    """
    check_hook_names(model, hooks)
    idx = _as_batch(model, ids)
    with torch.no_grad(), model.hook_points.attach(hooks):
        logits, _ = model(idx, kv_cache=kv_cache)
    return logits


def run_with_cache(
    model: GPT, ids: Sequence[int] | torch.Tensor, names: Iterable[str] | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and the values at hook points ``names`` (default: all of ``hook_names``) of ONE
    forward pass, as ``{name: tensor}`` in the order they were computed (detached).

    Asking for ``attn.hook_scores``/``hook_masked``/``hook_pattern`` makes those blocks use the
    explicit attention path; otherwise the pass is the model's usual one.
    """
    wanted = hook_names(model.config) if names is None else check_hook_names(model, names)
    cache: dict[str, torch.Tensor] = {}

    def keep(value: torch.Tensor, name: str) -> None:
        cache[name] = value.detach()

    logits = run_with_hooks(model, ids, dict.fromkeys(wanted, keep))
    return logits, cache


@contextmanager
def attention_probes(model: GPT) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward pass of this thread appends each layer's attention
    probabilities (B, nh, T, T_keys) (``attn.hook_pattern``) to the yielded list, in layer order."""
    captured: list[torch.Tensor] = []
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.config.n_layer)]
    with model.hook_points.attach(dict.fromkeys(names, lambda value, name: captured.append(value.detach()))):
        yield captured


def residual_stream_names(model: GPT) -> list[str]:
    """The hook points of the residual stream after the embeddings and after every block."""
    return ["blocks.0.hook_resid_pre"] + [block.output_hook_name for block in model.transformer.h]


@contextmanager
def residual_stream_hooks(model: GPT) -> Iterator[list[torch.Tensor]]:
    """Within the block, a forward pass of this thread appends the residual stream (B, T, C)
    after the embeddings and after every block: ``n_layer + 1`` tensors per pass."""
    captured: list[torch.Tensor] = []
    names = residual_stream_names(model)
    with model.hook_points.attach(dict.fromkeys(names, lambda value, name: captured.append(value.detach()))):
        yield captured


def layer_names(model: GPT) -> list[str]:
    """Names of the points the residual stream is read at: ``["embedding", "block 0", ...]``."""
    return ["embedding"] + [f"block {i}" for i in range(model.config.n_layer)]


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------


def attention_maps(model: GPT, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Attention probabilities of every layer and head, (n_layer, n_head, T, T), from one
    forward pass (``blocks.{i}.attn.hook_pattern``). Row i of a map says how much query position
    i takes from each position j ≤ i; every row sums to 1 and everything above the diagonal is
    0 (the future is hidden)."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.config.n_layer)]
    _, cache = run_with_cache(model, token_tensor(model, ids), names)
    return torch.stack([cache[name][0] for name in names])  # (n_layer, nh, T, T)


def attention_distance(maps: torch.Tensor) -> torch.Tensor:
    """How far back each head looks, (n_layer, n_head), from maps (n_layer, n_head, T, T):
    for each query position the expected distance Σ_j p(i, j)·(i − j), averaged over queries.

    A head that only looks at the previous token scores ~1; one that attends evenly to all
    earlier tokens scores about T/4 (each query averages half its prefix).
    """
    T = maps.shape[-1]
    position = torch.arange(T, dtype=maps.dtype, device=maps.device)
    distance = (position[:, None] - position[None, :]).clamp(min=0)  # (T, T): i − j, 0 ahead
    return (maps * distance).sum(-1).mean(-1)


def mean_attention_distance(model: GPT, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """``attention_distance`` of the maps the model makes on ``ids``: (n_layer, n_head)."""
    return attention_distance(attention_maps(model, ids))


# --------------------------------------------------------------------------------------------
# The residual stream: logit lens and its size per layer
# --------------------------------------------------------------------------------------------


def residual_stream(model: GPT, ids: Sequence[int] | torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The residual stream (T, C) at every point of ``layer_names(model)`` (the hook points
    ``residual_stream_names(model)``), and the logits (T, V), from one forward pass."""
    names = residual_stream_names(model)
    logits, cache = run_with_cache(model, token_tensor(model, ids), names)
    return [cache[name][0] for name in names], logits[0]


@dataclass(frozen=True)
class LogitLens:
    """What each layer "thinks" the next token is: the residual stream after that layer read
    through the final norm and the head, as if the model ended there.

    ``top_ids``/``top_probs``: (n_layer + 1, T, k), best first. ``next_token_probs``:
    (n_layer + 1, T − 1), the probability each layer gives the token that actually came next.
    """

    ids: list[int]
    layer_names: list[str]
    top_ids: torch.Tensor
    top_probs: torch.Tensor
    next_token_probs: torch.Tensor


def logit_lens(model: GPT, ids: Sequence[int] | torch.Tensor, k: int = 5) -> LogitLens:
    """The logit lens of ``ids``; the last layer's reading is exactly the model's prediction.

    With post-LN blocks ``ln_f`` is the identity (each block already ends in a norm), so the
    embedding row is read through the head without a norm.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} must be a whole number ≥ 1; try 5")
    stream, _ = residual_stream(model, ids)
    tokens = as_token_list(ids, model.config.vocab_size)
    k = min(k, model.config.vocab_size)
    next_ids = torch.tensor(tokens[1:], dtype=torch.long, device=stream[0].device)
    top_ids, top_probs, next_probs = [], [], []
    with torch.no_grad():
        for x in stream:
            probs = F.softmax(model.head(x), dim=-1)  # (T, V): through the model's own head
            values, indices = probs.topk(k, dim=-1)
            top_ids.append(indices)
            top_probs.append(values)
            next_probs.append(probs[:-1].gather(-1, next_ids[:, None])[:, 0])
    return LogitLens(tokens, layer_names(model), torch.stack(top_ids), torch.stack(top_probs), torch.stack(next_probs))


@dataclass(frozen=True)
class ResidualStats:
    """Size of the residual stream after the embeddings and after each block.

    ``norm``: mean length ‖x‖ of a position's vector; ``std``: standard deviation of all its
    numbers. Every block *adds* to the stream, so without GPT-2's 1/sqrt(2·n_layer) scaling of
    the residual projections' initial weights it grows with depth.
    """

    layer_names: list[str]
    norm: torch.Tensor  # (n_layer + 1,)
    std: torch.Tensor  # (n_layer + 1,)


def residual_stats(model: GPT, ids: Sequence[int] | torch.Tensor) -> ResidualStats:
    stream, _ = residual_stream(model, ids)
    norm = torch.stack([x.norm(dim=-1).mean() for x in stream])
    std = torch.stack([x.std(correction=0) for x in stream])
    return ResidualStats(layer_names(model), norm, std)


# --------------------------------------------------------------------------------------------
# Surprisal: which tokens were hard to predict
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Surprisal:
    """−log p(token | the tokens before it), in nats, for every token of ``ids``.

    The first token has nothing before it, so its surprisal is NaN. 0 nats = certain; ln(V) nats
    = as surprised as a uniform guess over the V-token vocabulary.
    """

    ids: list[int]
    nats: torch.Tensor  # (T,)

    @property
    def bits(self) -> torch.Tensor:
        return self.nats / math.log(2)

    @property
    def mean_nats(self) -> float:
        """Mean over the predicted tokens: the cross-entropy loss of this text."""
        return float(self.nats[1:].mean()) if len(self.ids) > 1 else float("nan")


def surprisal(model: GPT, ids: Sequence[int] | torch.Tensor, stride: int | None = None) -> Surprisal:
    """Per-token surprisal of a text of any length up to ``MAX_SURPRISAL_TOKENS``.

    A text longer than ``block_size`` is read in overlapping windows of ``block_size`` tokens
    that start every ``stride`` tokens (default ``block_size // 2``). Each token is scored once,
    in the first window that predicts it, so after the first window every token is predicted
    from at least ``block_size - stride`` tokens of context.
    """
    tokens = as_token_list(ids, model.config.vocab_size)
    block_size = model.config.block_size
    stride = max(1, block_size // 2) if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= block_size:
        raise ValueError(f"stride={stride!r} must be between 1 and block_size={block_size}")
    if not tokens:
        raise ValueError("no tokens to score; type some text first")
    if len(tokens) > MAX_SURPRISAL_TOKENS:
        raise ValueError(f"{len(tokens)} tokens is too long; pass at most {MAX_SURPRISAL_TOKENS} (an excerpt)")
    nats = torch.full((len(tokens),), float("nan"))
    scored_until, begin = 1, 0  # token 0 is never predicted: nothing comes before it
    while scored_until < len(tokens):
        end = min(begin + block_size, len(tokens) - 1)  # reads [begin, end), predicts begin+1 .. end
        window_nats = _window_surprisal(model, tokens[begin : end + 1])
        nats[scored_until : end + 1] = window_nats[scored_until - begin - 1 :]
        scored_until, begin = end + 1, begin + stride
    return Surprisal(tokens, nats)


def _window_surprisal(model: GPT, tokens: list[int]) -> torch.Tensor:
    """−log p(tokens[t] | tokens[:t]) for t ≥ 1, from one pass over tokens[:-1]: (len − 1,)."""
    idx = token_tensor(model, tokens[:-1])
    targets = torch.tensor(tokens[1:], device=idx.device)
    with torch.no_grad():
        logits, _ = model(idx)
        log_probs = F.log_softmax(logits[0].float(), dim=-1)  # (T, V)
        return -log_probs.gather(-1, targets[:, None])[:, 0].cpu()


# --------------------------------------------------------------------------------------------
# A forward trace: every named step of one pass, with its shape
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceStep:
    """One named step of the forward pass.

    ``dims`` spells the shape in letters (``"(B, nh, T, T)"``); ``summary`` has mean/std/min/max
    of the finite values (and how many are masked ``-inf``); ``sample`` holds up to 8 numbers
    from the last row; ``source`` is the toygpt function that computes the step, so a page can
    show ``inspect.getsource(step.source)``; ``value`` is the tensor itself when asked for.
    """

    name: str
    shape: tuple[int, ...]
    dims: str
    summary: dict[str, float]
    sample: list[float]
    source: Callable[..., Any]
    layer: int | None
    note: str
    value: torch.Tensor | None = None


def summarize(tensor: torch.Tensor) -> dict[str, float]:
    """mean/std/min/max of the finite values, plus ``masked``: how many are ±inf."""
    values = tensor.detach().float().reshape(-1)
    finite = values[torch.isfinite(values)]
    stats = {"masked": float(values.numel() - finite.numel())}
    if finite.numel() == 0:
        return {**stats, "mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
    return {
        **stats,
        "mean": float(finite.mean()),
        "std": float(finite.std(correction=0)),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }


@dataclass(frozen=True)
class _StepInfo:
    """How a hook point appears in the trace: its step name, shape letters, the code computing it."""

    name: str
    dims: str
    source: Callable[..., Any]
    note: str


def _trace_steps(model: GPT) -> dict[str, _StepInfo]:
    """Hook point (without ``blocks.{i}.``) → its trace step; points not listed are not shown
    (``hook_q``/``hook_k`` are shown together with ``hook_v`` as one q/k/v step)."""
    pre = model.config.norm_position == "pre"
    alibi = model.config.pos_encoding == "alibi"
    learned = model.config.pos_encoding == "learned"
    return {
        "hook_embed": _StepInfo("token embedding lookup", "(B, T, C)", GPT.embed,
                                "row idx of the wte table: a learned vector per token id"),
        "hook_embed_scaled": _StepInfo("scale by sqrt(n_embd)", "(B, T, C)", GPT.embed,
                                       "as the original Transformer, so ±1 sinusoids do not drown the tokens"),
        "hook_pos_embed": _StepInfo("position embedding", "(T, C)",
                                    GPT.position_encoding if learned else sinusoidal_positions,
                                    "one vector per position ("
                                    + ("learned wpe rows" if learned else "fixed sin/cos table") + ")"),
        "hook_resid_pre": _StepInfo("add", "(B, T, C)", GPT.embed, "token + position, broadcast over the batch"),
        "hook_ln_1": _StepInfo("ln_1", "(B, T, C)", Block.forward,
                               "normalise each position (pre-LN)" if pre else "post-LN: normalise the sum"),
        "attn.hook_v": _StepInfo("q/k/v split", "(3, B, nh, T, hs)", CausalSelfAttention.split_heads,
                                 "c_attn makes query, key, value at once; each is cut into nh heads of hs channels"),
        "attn.hook_rot_k": _StepInfo("rotate q, k (RoPE)", "(2, B, nh, T, hs)", CausalSelfAttention.rotate,
                                     "each channel pair of q and k turned by its position's angle"),
        "attn.hook_alibi": _StepInfo("ALiBi bias", "(nh, T, T)", CausalSelfAttention.position_bias,
                                     "−slope·distance: each head's penalty for looking far back"),
        "attn.hook_scores": _StepInfo("scores", "(B, nh, T, T)", CausalSelfAttention.explicit_attention,
                                      "q·k / sqrt(hs): how well each query matches each key"),
        "attn.hook_masked": _StepInfo("causal mask", "(B, nh, T, T)", causal_mask,
                                      ("scores + ALiBi bias; " if alibi else "")
                                      + "-inf above the diagonal: no looking at later tokens"),
        "attn.hook_pattern": _StepInfo("softmax", "(B, nh, T, T)", CausalSelfAttention.explicit_attention,
                                       "each row becomes weights that sum to 1"),
        "attn.hook_z": _StepInfo("weighted sum", "(B, nh, T, hs)", CausalSelfAttention.explicit_attention,
                                 "each position's new vector: the values, mixed by its attention weights"),
        "hook_attn_out": _StepInfo("c_proj", "(B, T, C)", CausalSelfAttention.forward,
                                   "a linear layer mixes the heads back onto the residual stream"),
        "hook_resid_mid": _StepInfo("residual add", "(B, T, C)", Block.forward,
                                    "the attention output is added to the residual stream" if pre
                                    else "post-LN: attention reads the raw stream; its output is added"),
        "hook_ln_2": _StepInfo("ln_2", "(B, T, C)", Block.forward,
                               "normalise again before the MLP" if pre else "post-LN: normalise the sum"),
        "mlp.hook_pre": _StepInfo("MLP up", "(B, T, 4C)", MLP.forward, "widen each position 4×"),
        "mlp.hook_post": _StepInfo("GELU", "(B, T, 4C)", MLP.forward,
                                   "a smooth ReLU: the only non-linearity here"),
        "hook_mlp_out": _StepInfo("MLP down", "(B, T, C)", MLP.forward, "narrow back to C channels"),
        "hook_resid_post": _StepInfo("residual add", "(B, T, C)", Block.forward,
                                     "the MLP output is added to the residual stream" if pre
                                     else "the MLP output is added"),
        "hook_ln_f": _StepInfo("ln_f", "(B, T, C)", GPT.head, "a final norm (pre-LN only)"),
        "hook_logits": _StepInfo("logits", "(B, T, vocab)", GPT.head,
                                 "lm_head: a score for every token of the vocabulary, at every position"),
    }  # fmt: skip


def _make_step(info: _StepInfo, tensor: torch.Tensor, layer: int | None, keep_values: bool) -> TraceStep:
    label = info.name if layer is None else f"block {layer}: {info.name}"
    sample = tensor.detach().float().reshape(-1, tensor.shape[-1])[-1, :8].tolist()
    value = tensor.detach().clone() if keep_values else None
    return TraceStep(label, tuple(tensor.shape), info.dims, summarize(tensor), sample, info.source, layer, info.note,
                     value)  # fmt: skip


def forward_trace(model: GPT, ids: Sequence[int] | torch.Tensor, keep_values: bool = False) -> list[TraceStep]:
    """Every named step of one forward pass of ``ids``, in order, for the architecture walkthrough.

    The values are the model's own, read at its hook points (``run_with_cache``) in the order
    ``GPT.forward`` computed them, on the explicit attention path so the attention matrix is
    there to see; each step's ``source`` is the model's function that computed it. Steps that
    only rearrange a hook point's value: ``q/k/v split`` stacks ``hook_q/k/v``, ``merge heads``
    lays ``hook_z``'s heads side by side (as ``CausalSelfAttention.forward`` does), the last
    ``softmax`` turns the logits into probabilities. ``keep_values=True`` keeps every tensor.
    A model with dropout must be in eval mode (``model.eval()``): a trace shows no random drops.
    """
    if model.training and model.config.dropout > 0:
        raise ValueError("the model is in training mode with dropout on; call model.eval() before tracing it")
    idx = token_tensor(model, ids)
    logits, cache = run_with_cache(model, idx)
    steps_by_point, steps = _trace_steps(model), []
    steps.append(_make_step(_StepInfo("token ids", "(B, T)", GPT.check_input, "the text as integers, one per token"),
                            idx, None, keep_values))  # fmt: skip
    for name, value in cache.items():
        layer, point = _split_hook_name(name)
        if point == "hook_resid_pre" and (layer != 0 or model.config.pos_encoding not in ADDED_POSITIONS):
            continue  # block i's input is block i-1's output, already shown; "add" only with positions
        if point == "hook_ln_f" and model.config.norm_position != "pre":
            continue  # post-LN: ln_f is the identity
        info = steps_by_point.get(point)
        if info is None:
            continue
        if point == "attn.hook_v":
            value = torch.stack([cache[f"blocks.{layer}.attn.hook_q"], cache[f"blocks.{layer}.attn.hook_k"], value])
        if point == "attn.hook_rot_k":
            value = torch.stack([cache[f"blocks.{layer}.attn.hook_rot_q"], value])
        steps.append(_make_step(info, value, None if point == "hook_resid_pre" else layer, keep_values))
        if point == "attn.hook_z":
            B, nh, T, hs = value.shape
            merged = value.transpose(1, 2).reshape(B, T, nh * hs)
            steps.append(_make_step(_StepInfo("merge heads", "(B, T, C)", CausalSelfAttention.forward,
                                              "the heads' outputs side by side again"), merged, layer, keep_values))  # fmt: skip
    probs = F.softmax(logits, dim=-1)
    steps.append(_make_step(_StepInfo("softmax", "(B, T, vocab)", F.softmax, "scores → probabilities of the next token"),
                            probs, None, keep_values))  # fmt: skip
    return steps


def _split_hook_name(name: str) -> tuple[int | None, str]:
    """``"blocks.3.attn.hook_z"`` → ``(3, "attn.hook_z")``; ``"hook_logits"`` → ``(None, "hook_logits")``."""
    if not name.startswith("blocks."):
        return None, name
    _, layer, point = name.split(".", 2)
    return int(layer), point


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


def nearest_tokens(model: GPT, token_id: int, k: int = 10) -> list[tuple[int, float]]:
    """The ``k`` tokens whose embeddings point most nearly the same way as ``token_id``'s:
    ``(token_id, cosine similarity)``, most similar first, the token itself left out."""
    vocab_size = model.config.vocab_size
    (token_id,) = as_token_list([token_id], vocab_size)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} must be a whole number ≥ 1; try 10")
    with torch.no_grad():
        table = F.normalize(model.transformer.wte.weight.float(), dim=-1)  # (V, C), unit rows
        similarity = table @ table[token_id]  # (V,)
        similarity[token_id] = float("-inf")
        values, indices = similarity.topk(min(k, vocab_size - 1))
    return list(zip(indices.tolist(), values.tolist(), strict=True))


@dataclass(frozen=True)
class EmbeddingPCA:
    """Token embeddings projected onto their two main directions of variation.

    ``coords``: (N, 2) for the tokens ``ids``; ``explained``: the share of the total variance
    along each of the two directions.
    """

    ids: list[int]
    coords: torch.Tensor
    explained: torch.Tensor


def embedding_pca(model: GPT, ids: Sequence[int] | None = None) -> EmbeddingPCA:
    """2-D PCA of the token embeddings of ``ids`` (default: the whole vocabulary).

    The directions come from *all* ``ids`` given, centred; each direction's sign is fixed so its
    largest component is positive, so the picture does not flip between runs.
    """
    vocab_size = model.config.vocab_size
    chosen = list(range(vocab_size)) if ids is None else sorted(set(as_token_list(ids, vocab_size)))
    if len(chosen) < 2:
        raise ValueError("a PCA needs at least 2 distinct tokens")
    with torch.no_grad():
        table = model.transformer.wte.weight[chosen].double()
        centred = table - table.mean(dim=0)
        _, singular, directions = torch.linalg.svd(centred, full_matrices=False)  # rows: directions
        directions = directions[:2]
        signs = torch.sign(directions.gather(1, directions.abs().argmax(dim=1, keepdim=True)))
        directions = directions * signs
        variance = singular**2
        explained = variance[:2] / variance.sum().clamp(min=1e-30)
        coords = centred @ directions.T
    if coords.shape[1] < 2:  # one-dimensional embeddings (n_embd=1): pad the second axis
        coords = torch.cat([coords, torch.zeros_like(coords)], dim=1)
        explained = torch.cat([explained, torch.zeros(1, dtype=explained.dtype)])
    return EmbeddingPCA(chosen, coords.float(), explained.float())


def position_vectors(model: GPT) -> torch.Tensor:
    """The position encoding of every position, (block_size, C): learned rows or the sin/cos table."""
    encoding = model.config.pos_encoding
    if encoding == "none":
        raise ValueError("this model has no position encoding (pos_encoding='none'), so there is nothing to compare")
    if encoding not in ADDED_POSITIONS:
        where = "turns queries and keys" if encoding == "rope" else "biases the attention scores"
        raise ValueError(f"pos_encoding={encoding!r} adds no position vectors: it {where} inside attention "
                         "(see the trace's attention steps)")
    with torch.no_grad():
        table = model.transformer.wpe.weight if encoding == "learned" else model.sinusoid
        return table.detach().float().clone()


def position_similarity(model: GPT) -> torch.Tensor:
    """Cosine similarity between every pair of position vectors, (block_size, block_size).

    Sinusoidal encodings give a smooth band along the diagonal from the start (nearby positions
    look alike); learned ones start as noise and only develop structure through training.
    """
    table = F.normalize(position_vectors(model), dim=-1)
    return table @ table.T
