"""Look inside one forward pass: attention maps, the logit lens, per-token surprisal, a named
trace of every step with its shape, the size of the residual stream, and the embeddings.

Nothing here adds a flag to the model. Attention probabilities come from each attention
module's ``probe`` (a callable the explicit attention path hands its probabilities to), and the
residual stream from PyTorch forward hooks on the blocks. The training path never pays for
either: with no probe and no hook, the model runs exactly as in training.

A model cached for a web app is shared by every visitor, so probes and hooks (1) are installed
under a lock, one inspection at a time, and (2) keep only what *this* thread computes: another
visitor's forward pass that runs meanwhile still gives the right answer (the explicit path
computes the same attention), and its tensors are ignored.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from toygpt.model import GPT, MLP, Block, CausalSelfAttention, causal_mask, sinusoidal_positions
from toygpt.sample import as_token_list

# Longest text whose surprisal we compute (in tokens): a guard against pasting a whole book.
MAX_SURPRISAL_TOKENS = 20_000

_INSTALL_LOCK = threading.RLock()  # re-entrant: probes and hooks may be nested in one thread


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


# --------------------------------------------------------------------------------------------
# Capturing internals: attention probes and residual-stream hooks
# --------------------------------------------------------------------------------------------


@contextmanager
def attention_probes(model: GPT) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward pass of this thread appends each layer's attention
    probabilities (B, nh, T, T_keys) to the yielded list, in layer order."""
    captured: list[torch.Tensor] = []
    owner = threading.get_ident()

    def probe(attention_probs: torch.Tensor) -> None:
        if threading.get_ident() == owner:
            captured.append(attention_probs.detach())

    attentions = [block.attn for block in model.transformer.h]
    with _INSTALL_LOCK:
        previous = [attn.probe for attn in attentions]
        for attn in attentions:
            attn.probe = probe  # forces the explicit path, which calls the probe
        try:
            yield captured
        finally:
            for attn, old in zip(attentions, previous, strict=True):
                attn.probe = old


@contextmanager
def residual_stream_hooks(model: GPT) -> Iterator[list[torch.Tensor]]:
    """Within the block, a forward pass of this thread appends the residual stream (B, T, C)
    after the embeddings and after every block: ``n_layer + 1`` tensors per pass."""
    captured: list[torch.Tensor] = []
    owner = threading.get_ident()

    def hook(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if threading.get_ident() == owner:
            captured.append(output.detach())

    # transformer.drop's output is the embedding sum that enters block 0 (dropout is off in eval)
    modules = [model.transformer.drop, *model.transformer.h]
    with _INSTALL_LOCK:
        handles = [module.register_forward_hook(hook) for module in modules]
        try:
            yield captured
        finally:
            for handle in handles:
                handle.remove()


def layer_names(model: GPT) -> list[str]:
    """Names of the points the residual stream is read at: ``["embedding", "block 0", ...]``."""
    return ["embedding"] + [f"block {i}" for i in range(model.config.n_layer)]


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------


def attention_maps(model: GPT, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Attention probabilities of every layer and head, (n_layer, n_head, T, T), from one
    forward pass. Row i of a map says how much query position i takes from each position j ≤ i;
    every row sums to 1 and everything above the diagonal is 0 (the future is hidden)."""
    idx = token_tensor(model, ids)
    with torch.no_grad(), attention_probes(model) as captured:
        model(idx)
    return torch.stack([probs[0] for probs in captured])  # (n_layer, nh, T, T)


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
    """The residual stream (T, C) at every point of ``layer_names(model)``, and the logits (T, V)."""
    idx = token_tensor(model, ids)
    with torch.no_grad(), residual_stream_hooks(model) as captured:
        logits, _ = model(idx)
    return [x[0] for x in captured], logits[0]


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
            probs = F.softmax(model.lm_head(model.transformer.ln_f(x)), dim=-1)  # (T, V)
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


class _Trace:
    def __init__(self, keep_values: bool) -> None:
        self.keep_values = keep_values
        self.steps: list[TraceStep] = []
        self.layer: int | None = None

    def record(self, name: str, tensor: torch.Tensor, dims: str, source: Callable[..., Any], note: str) -> torch.Tensor:
        label = name if self.layer is None else f"block {self.layer}: {name}"
        sample = tensor.detach().float().reshape(-1, tensor.shape[-1])[-1, :8].tolist()
        value = tensor.detach().clone() if self.keep_values else None
        self.steps.append(
            TraceStep(label, tuple(tensor.shape), dims, summarize(tensor), sample, source, self.layer, note, value)
        )
        return tensor


def forward_trace(model: GPT, ids: Sequence[int] | torch.Tensor, keep_values: bool = False) -> list[TraceStep]:
    """Every named step of one forward pass of ``ids``, in order, for the architecture walkthrough.

    The steps are computed here from the model's own modules, one operation at a time, so each
    can be recorded; dropout is skipped (as in ``model.eval()``). Tests check that the final
    logits equal ``model(idx)``. ``keep_values=True`` keeps every tensor (memory: all of them).
    """
    idx = token_tensor(model, ids)
    trace = _Trace(keep_values)
    with torch.no_grad():
        x = _trace_embeddings(model, idx, trace)
        for block in model.transformer.h:
            trace.layer = block.layer
            x = _trace_block(block, x, trace)
        trace.layer = None
        _trace_head(model, x, trace)
    return trace.steps


def _trace_embeddings(model: GPT, idx: torch.Tensor, trace: _Trace) -> torch.Tensor:
    trace.record("token ids", idx, "(B, T)", GPT.check_input, "the text as integers, one per token")
    x = trace.record(
        "token embedding lookup", model.transformer.wte(idx), "(B, T, C)", GPT.forward,
        "row idx of the wte table: a learned vector per token id",
    )  # fmt: skip
    if model.token_scale != 1.0:
        x = trace.record("scale by sqrt(n_embd)", x * model.token_scale, "(B, T, C)", GPT.__init__,
                         "as the original Transformer, so ±1 sinusoids do not drown the tokens")
    positions = model.position_encoding(0, idx.shape[1], idx.device)
    if positions is None:  # pos_encoding="none": order is only visible through the causal mask
        return x
    source = GPT.position_encoding if model.config.pos_encoding == "learned" else sinusoidal_positions
    kind = "learned wpe rows" if model.config.pos_encoding == "learned" else "fixed sin/cos table"
    trace.record("position embedding", positions, "(T, C)", source, f"one vector per position ({kind})")
    return trace.record("add", x + positions, "(B, T, C)", GPT.forward, "token + position, broadcast over the batch")


def _trace_block(block: Block, x: torch.Tensor, trace: _Trace) -> torch.Tensor:
    """Pre-LN: x + attn(ln_1(x)), then x + mlp(ln_2(x)). Post-LN: ln_1(x + attn(x)), ln_2(x + mlp(x))."""
    if block.pre_norm:
        h = trace.record("ln_1", block.ln_1(x), "(B, T, C)", Block.forward, "normalise each position (pre-LN)")
        x = trace.record("residual add", x + _trace_attention(block.attn, h, trace), "(B, T, C)", Block.forward,
                         "the attention output is added to the residual stream")  # fmt: skip
        h = trace.record("ln_2", block.ln_2(x), "(B, T, C)", Block.forward, "normalise again before the MLP")
        return trace.record("residual add", x + _trace_mlp(block.mlp, h, trace), "(B, T, C)", Block.forward,
                            "the MLP output is added to the residual stream")  # fmt: skip
    x = trace.record("residual add", x + _trace_attention(block.attn, x, trace), "(B, T, C)", Block.forward,
                     "post-LN: attention reads the raw stream; its output is added")  # fmt: skip
    x = trace.record("ln_1", block.ln_1(x), "(B, T, C)", Block.forward, "post-LN: normalise the sum")
    x = trace.record("residual add", x + _trace_mlp(block.mlp, x, trace), "(B, T, C)", Block.forward,
                     "the MLP output is added")  # fmt: skip
    return trace.record("ln_2", block.ln_2(x), "(B, T, C)", Block.forward, "post-LN: normalise the sum")


def _trace_attention(attn: CausalSelfAttention, x: torch.Tensor, trace: _Trace) -> torch.Tensor:
    B, T, C = x.shape
    q, k, v = attn.split_heads(x)  # 3 × (B, nh, T, hs)
    trace.record("q/k/v split", torch.stack([q, k, v]), "(3, B, nh, T, hs)", CausalSelfAttention.split_heads,
                 "c_attn makes query, key, value at once; each is cut into nh heads of hs channels")  # fmt: skip
    scores = trace.record("scores", q @ k.transpose(-2, -1) / math.sqrt(attn.head_size), "(B, nh, T, T)",
                          CausalSelfAttention.explicit_attention, "q·k / sqrt(hs): how well each query matches each key")  # fmt: skip
    masked = trace.record("causal mask", scores.masked_fill(~causal_mask(T, device=x.device), float("-inf")),
                          "(B, nh, T, T)", causal_mask, "-inf above the diagonal: no looking at later tokens")  # fmt: skip
    probs = trace.record("softmax", F.softmax(masked, dim=-1), "(B, nh, T, T)",
                         CausalSelfAttention.explicit_attention, "each row becomes weights that sum to 1")  # fmt: skip
    y = trace.record("weighted sum", probs @ v, "(B, nh, T, hs)", CausalSelfAttention.explicit_attention,
                     "each position's new vector: the values, mixed by its attention weights")  # fmt: skip
    y = trace.record("merge heads", y.transpose(1, 2).reshape(B, T, C), "(B, T, C)", CausalSelfAttention.forward,
                     "the heads' outputs side by side again")  # fmt: skip
    return trace.record("c_proj", attn.c_proj(y), "(B, T, C)", CausalSelfAttention.forward,
                        "a linear layer mixes the heads back onto the residual stream")  # fmt: skip


def _trace_mlp(mlp: MLP, x: torch.Tensor, trace: _Trace) -> torch.Tensor:
    h = trace.record("MLP up", mlp.c_fc(x), "(B, T, 4C)", MLP.forward, "widen each position 4×")
    h = trace.record("GELU", mlp.gelu(h), "(B, T, 4C)", MLP.forward, "a smooth ReLU: the only non-linearity here")
    return trace.record("MLP down", mlp.c_proj(h), "(B, T, C)", MLP.forward, "narrow back to C channels")


def _trace_head(model: GPT, x: torch.Tensor, trace: _Trace) -> None:
    if model.config.norm_position == "pre":
        x = trace.record("ln_f", model.transformer.ln_f(x), "(B, T, C)", GPT.forward, "a final norm (pre-LN only)")
    logits = trace.record("logits", model.lm_head(x), "(B, T, vocab)", GPT.forward,
                          "lm_head: a score for every token of the vocabulary, at every position")  # fmt: skip
    trace.record("softmax", F.softmax(logits, dim=-1), "(B, T, vocab)", F.softmax,
                 "scores → probabilities of the next token")  # fmt: skip


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
