"""What the architecture walkthrough computes that ``model`` and ``inspection`` do not already.

Read with the Architecture page open: every function here feeds one part of it.

1. Size and cost of a config: a parameter tree (for a treemap), memory for training, what
   weight tying saves.
2. A diagram of the decoder-only stack, as graphviz DOT source that follows the config.
3. The forward trace made drawable: its steps grouped by part, a table, one 2-D slice per step.
4. Concept demos, each a small live computation:
   - attention sees every position at once, an RNN passes a state along (``sequence_mixing``);
   - changing a later token leaves earlier outputs untouched (``future_change``);
   - where LayerNorm sits and GPT-2's residual init scaling (``init_residual_comparison``);
   - sinusoidal vs learned positions at init (``positions_at_init``);
   - the output head as a distribution over the vocabulary (``output_distribution``).
5. Plotly figures of the results above (``toygpt.viz`` draws the rest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots

from toygpt.checkpoint import empty_model
from toygpt.inspection import ResidualStats, TraceStep, residual_stats, token_tensor
from toygpt.model import GPT, GPTConfig, parameter_counts, total_parameters
from toygpt.positions import sinusoidal_positions
from toygpt.sample import next_token_distribution

# --------------------------------------------------------------------------------------------
# 1. Size and cost
# --------------------------------------------------------------------------------------------


def parameter_tree(config: GPTConfig) -> list[dict[str, Any]]:
    """``parameter_counts`` as a tree for a treemap: rows ``{"id", "label", "parent", "params"}``.

    Leaves are modules, grouped as embeddings / blocks → block i / final norm / head; every
    parent's ``params`` is the sum of its children and the root's equals ``total_parameters``.
    A tied head has no weights of its own, so it is not a leaf: ``wte`` is labelled as shared.
    """
    rows = [row for row in parameter_counts(config) if not (config.tie_embeddings and row["module"].startswith("lm_head"))]
    tree: dict[str, dict[str, Any]] = {"GPT": dict(id="GPT", label="GPT", parent="", params=0)}

    def add(node_id: str, label: str, parent: str, params: int) -> None:
        tree.setdefault(node_id, dict(id=node_id, label=label, parent=parent, params=0))["params"] += params

    for row in rows:
        name, group, params = row["module"], row["group"], row["params"]
        short = name.removeprefix("transformer.")
        if group.startswith("block"):
            add("blocks", "blocks", "GPT", params)
            add(group, group, "blocks", params)
            short = short.split(".", 2)[-1]  # "h.0.attn" -> "attn"
        else:
            add(group, group, "GPT", params)
        if short == "wte" and config.tie_embeddings:
            short = "wte (= lm_head, tied)"
        add(name, short, group, params)
        tree["GPT"]["params"] += params
    return list(tree.values())


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed to hold a model's numbers (activations, which grow with batch × block, are
    left out). AdamW keeps two running averages per parameter, so training needs about 4× the
    weights: weights + gradients + Adam's first and second moments."""

    params: int
    bytes_per_value: int
    weights: int
    grads: int
    adam: int

    @property
    def training(self) -> int:
        return self.weights + self.grads + self.adam

    @property
    def inference(self) -> int:
        return self.weights


def memory_estimate(config: GPTConfig, bytes_per_value: int = 4) -> MemoryEstimate:
    """Memory for weights, gradients and AdamW state, at ``bytes_per_value`` (4 = float32).

    >>> m = memory_estimate(GPTConfig(vocab_size=65, n_layer=4, n_head=4, n_embd=128))
    >>> m.params, m.weights, m.training == 4 * m.weights
    (809856, 3239424, True)
    """
    if isinstance(bytes_per_value, bool) or bytes_per_value not in (1, 2, 4, 8):
        raise ValueError(f"bytes_per_value={bytes_per_value!r}; use 4 (float32), 2 (bf16/fp16), 1 or 8")
    params = total_parameters(config)
    size = params * bytes_per_value
    return MemoryEstimate(params, bytes_per_value, weights=size, grads=size, adam=2 * size)


@dataclass(frozen=True)
class TyingSaving:
    untied: int  # parameters with a separate lm_head matrix
    tied: int  # parameters when lm_head reuses wte
    saved: int  # = vocab_size × n_embd

    @property
    def share(self) -> float:
        """Fraction of the untied model that tying removes."""
        return self.saved / self.untied


def tying_saving(config: GPTConfig) -> TyingSaving:
    """What sharing one matrix between the token embedding and the output head saves.

    >>> tying_saving(GPTConfig(vocab_size=50257, n_layer=12, n_head=12, n_embd=768, block_size=1024)).saved
    38597376
    """
    untied = total_parameters(config.replace(tie_embeddings=False))
    tied = total_parameters(config.replace(tie_embeddings=True))
    return TyingSaving(untied, tied, untied - tied)


# --------------------------------------------------------------------------------------------
# 2. The diagram
# --------------------------------------------------------------------------------------------

_FILL = dict(io="#e7f0fd", embed="#e3f4e1", norm="#fff3cd", attn="#fde2e1", mlp="#efe4fb", add="#ffffff")


def _node(name: str, label: str, kind: str, shape: str = "box") -> str:
    style = "filled" if shape == "circle" else "rounded,filled"
    return f'  {name} [label="{label}", shape={shape}, style="{style}", fillcolor="{_FILL[kind]}"];'


def _edge(a: str, b: str, label: str = "", **attrs: str) -> str:
    parts = [f'label="{label}"'] if label else []
    parts += [f'{key}="{value}"' for key, value in attrs.items()]
    return f"  {a} -> {b} [{', '.join(parts)}];" if parts else f"  {a} -> {b};"


def _block_dot(config: GPTConfig, layer: int, entry: str) -> tuple[list[str], str]:
    """One block as a cluster; returns its DOT lines and the name of its output node.

    Pre-LN:  x ─ ln_1 → attn → (+ x) ─ ln_2 → mlp → (+)
    Post-LN: x ─ attn → (+ x) → ln_1 ─ mlp → (+) → ln_2
    """
    p = f"b{layer}_"
    attention = f"causal self-attention\\n{config.n_head} heads × {config.head_size}"
    attention += {"rope": "\\n(RoPE on q, k)", "alibi": "\\n(ALiBi bias on scores)"}.get(config.pos_encoding, "")
    mlp = f"MLP {config.n_embd} → {4 * config.n_embd} → {config.n_embd}\\n(GELU)"
    lines = [f"  subgraph cluster_{layer} {{", f'  label="block {layer}"; style="rounded"; color="#999999";']
    lines += [_node(p + "ln1", "LayerNorm ln_1", "norm"), _node(p + "attn", attention, "attn"),
              _node(p + "add1", "+", "add", "circle"), _node(p + "ln2", "LayerNorm ln_2", "norm"),
              _node(p + "mlp", mlp, "mlp"), _node(p + "add2", "+", "add", "circle"), "  }"]  # fmt: skip
    skip = dict(style="dashed", color="#888888")
    if config.norm_position == "pre":
        chain = [entry, p + "ln1", p + "attn", p + "add1", p + "ln2", p + "mlp", p + "add2"]
        lines += [_edge(a, b) for a, b in zip(chain, chain[1:], strict=False)]
        lines += [_edge(entry, p + "add1", "residual", **skip), _edge(p + "add1", p + "add2", "residual", **skip)]
        return lines, p + "add2"
    chain = [entry, p + "attn", p + "add1", p + "ln1", p + "mlp", p + "add2", p + "ln2"]
    lines += [_edge(a, b) for a, b in zip(chain, chain[1:], strict=False)]
    lines += [_edge(entry, p + "add1", "residual", **skip), _edge(p + "ln1", p + "add2", "residual", **skip)]
    return lines, p + "ln2"


def _embedding_dot(config: GPTConfig) -> tuple[list[str], str]:
    C, T, V = config.n_embd, config.block_size, config.vocab_size
    lines = [_node("ids", f"token ids\\n(B, T ≤ {T})", "io"), _node("wte", f"wte: token embedding\\n{V:,} × {C}", "embed")]
    lines.append(_edge("ids", "wte"))
    inside = {
        "none": "no position encoding:\\norder only shows through the causal mask",
        "rope": "RoPE: no position vector;\\nq and k are turned by their position in every attention layer",
        "alibi": "ALiBi: no position vector;\\nevery head's scores get −slope × distance",
    }
    if config.pos_encoding in inside:
        lines.append(_node("nopos", inside[config.pos_encoding], "io", "note"))
        lines.append(_edge("nopos", "wte", style="invis"))
        return lines, "wte"
    if config.pos_encoding == "learned":
        lines.append(_node("pos", f"wpe: learned positions\\n{T:,} × {C}", "embed"))
    else:
        lines.append(_node("pos", f"sinusoidal positions\\n{T:,} × {C} (fixed, no parameters)", "embed"))
    lines += [_node("embadd", "+", "add", "circle"), _edge("wte", "embadd", "(B, T, C)"), _edge("pos", "embadd", "(T, C)")]
    return lines, "embadd"


def stack_dot(config: GPTConfig, max_blocks: int = 3) -> str:
    """Graphviz DOT source of the decoder-only stack for ``config`` (for ``st.graphviz_chart``).

    Draws the embeddings, the blocks (with more than ``max_blocks``, the first ``max_blocks − 1``
    and the last, joined by a "⋮ n more" node), the final norm (pre-LN only), the head, and a
    dashed "same matrix" edge from lm_head back to wte when the weights are tied.
    """
    if isinstance(max_blocks, bool) or not isinstance(max_blocks, int) or max_blocks < 2:
        raise ValueError(f"max_blocks={max_blocks!r} must be a whole number ≥ 2")
    L, C, V = config.n_layer, config.n_embd, config.vocab_size
    lines = ['digraph gpt {', '  rankdir=TB; bgcolor="transparent"; nodesep=0.3; ranksep=0.3;',
             '  node [fontname="Helvetica", fontsize=13, fontcolor="#1f2328", color="#666666"];',
             '  edge [fontname="Helvetica", fontsize=11, color="#666666", fontcolor="#888888"];']  # fmt: skip
    body, current = _embedding_dot(config)
    lines += body
    drawn = list(range(L)) if L <= max_blocks else [*range(max_blocks - 1), L - 1]
    for i, layer in enumerate(drawn):
        if i > 0 and layer != drawn[i - 1] + 1:
            skipped = layer - drawn[i - 1] - 1
            lines.append(_node("more", f"⋮ {skipped} more block{'s' * (skipped > 1)}, the same shape", "add", "plaintext"))
            lines.append(_edge(current, "more", "(B, T, C)"))
            current = "more"
        block, output = _block_dot(config, layer, current)
        lines += block
        current = output
    if config.norm_position == "pre":
        lines += [_node("ln_f", "LayerNorm ln_f", "norm"), _edge(current, "ln_f", "(B, T, C)")]
        current = "ln_f"
    lines += [_node("lm_head", f"lm_head: {C} → {V:,}", "embed"), _edge(current, "lm_head", "(B, T, C)")]
    lines += [_node("probs", "softmax → p(next token)", "io"), _edge("lm_head", "probs", f"(B, T, {V:,})")]
    if config.tie_embeddings:
        lines.append(_edge("lm_head", "wte", "same matrix (tied)", style="dashed", color="#d9480f", constraint="false"))
    return "\n".join([*lines, "}"])


# --------------------------------------------------------------------------------------------
# 3. The forward trace, drawable
# --------------------------------------------------------------------------------------------


def trace_parts(steps: list[TraceStep]) -> list[tuple[str, list[int]]]:
    """Step indices grouped in order: ``[("embeddings", [...]), ("block 0", [...]), ...,
    ("output head", [...])]`` (steps outside any block before the first block are embeddings)."""
    parts: list[tuple[str, list[int]]] = []
    seen_block = False
    for index, step in enumerate(steps):
        if step.layer is not None:
            seen_block, name = True, f"block {step.layer}"
        else:
            name = "output head" if seen_block else "embeddings"
        if not parts or parts[-1][0] != name:
            parts.append((name, []))
        parts[-1][1].append(index)
    return parts


def trace_table(steps: list[TraceStep]) -> list[dict[str, Any]]:
    """One row per step, in order: what it is, its shape in letters and numbers, its statistics."""
    return [
        {
            "step": index,
            "name": step.name,
            "dims": step.dims,
            "shape": " × ".join(str(n) for n in step.shape),
            "mean": step.summary["mean"],
            "std": step.summary["std"],
            "masked (-inf)": int(step.summary["masked"]),
        }
        for index, step in enumerate(steps)
    ]


@dataclass(frozen=True)
class StepMatrix:
    """A 2-D slice of one trace step for a heatmap: ``values`` (rows, cols), what the rows and
    columns are, and a caption saying which slice of the full tensor it is."""

    values: torch.Tensor
    rows: str
    cols: str
    caption: str


def _check_head(step: TraceStep, head: int) -> None:
    if step.dims.startswith(("(B, nh", "(3, B, nh")):
        n_head = step.shape[-3]
        if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < n_head:
            raise ValueError(f"head={head!r} is not one of this model's heads 0..{n_head - 1}")


def _slice_2d(value: torch.Tensor, dims: str, head: int, max_cols: int) -> tuple[torch.Tensor, str, str, str]:
    """(matrix, what the rows are, what the columns are, which slice) of one step's tensor."""
    if dims == "(B, T)":
        return value[0:1], "", "position", ""
    if dims.startswith("(3, B, nh"):  # q, k, v of one head side by side, each cut alike
        width = min(value.shape[-1], max_cols)
        cut = f", first {width} of {value.shape[-1]} channels each" if width < value.shape[-1] else ""
        matrix = torch.cat([value[i, 0, head, :, :width] for i in range(3)], dim=-1)
        return matrix, "position", "query | key | value channels", f"head {head}{cut}"
    if dims == "(B, nh, T, T)":
        return value[0, head], "query position", "key position", f"head {head}"
    matrix, what = (value[0, head], f"head {head}") if dims.startswith("(B, nh") else (value.reshape(-1, *value.shape[-2:])[0], "")
    cols = "token id (vocabulary)" if dims.endswith("vocab)") else "channel"
    if matrix.shape[-1] > max_cols:
        what = ", ".join(filter(None, [what, f"first {max_cols} of {matrix.shape[-1]} {cols.split(' (')[0]}s"]))
        matrix = matrix[:, :max_cols]
    return matrix, "position", cols, what


def step_matrix(step: TraceStep, head: int = 0, max_cols: int = 128) -> StepMatrix:
    """The slice of ``step.value`` worth looking at: batch item 0, one ``head`` for per-head
    tensors, q | k | v side by side for the split, at most ``max_cols`` channels (of each of q,
    k, v). Attention maps (T × T) are never cut: the prompt is already short.

    Needs a trace made with ``forward_trace(..., keep_values=True)``.
    """
    if step.value is None:
        raise ValueError(f"step {step.name!r} kept no values; trace with forward_trace(..., keep_values=True)")
    _check_head(step, head)
    matrix, rows, cols, caption = _slice_2d(step.value.detach().float(), step.dims, head, max_cols)
    return StepMatrix(matrix, rows, cols, caption)


# --------------------------------------------------------------------------------------------
# 4. Concept demos
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceMixing:
    """How much each input position can change each output, for an RNN and an attention layer.

    ``rnn``/``attention``: (T, T); row i is ‖∂output_i / ∂input_j‖ for every j, divided by the
    row's largest value. Both are zero above the diagonal (nothing reads the future).
    """

    rnn: torch.Tensor
    attention: torch.Tensor

    @property
    def length(self) -> int:
        return self.rnn.shape[0]

    @property
    def rnn_sequential_steps(self) -> int:
        return self.length  # h_t needs h_{t-1}: T steps, one after another

    @property
    def attention_sequential_steps(self) -> int:
        return 1  # every position's output is one batch of matrix products


def _influence(fn: Any, x: torch.Tensor) -> torch.Tensor:
    """‖∂fn(x)_i / ∂x_j‖ for every pair of positions of x (T, C), each row scaled to max 1."""
    jacobian = torch.autograd.functional.jacobian(fn, x)  # (T, C, T, C)
    norms = jacobian.pow(2).sum(dim=(1, 3)).sqrt()  # (T, T)
    return norms / norms.amax(dim=1, keepdim=True).clamp(min=1e-30)


def sequence_mixing(length: int = 16, width: int = 16, seed: int = 0, recurrent_gain: float = 0.8) -> SequenceMixing:
    """Compare a tanh RNN, ``h_t = tanh(x_t W_x + h_{t-1} W_h)``, with one freshly initialised
    causal self-attention layer of toygpt, on the same random inputs.

    The RNN's first input reaches output t only through t multiplications by ``W_h`` (gain < 1
    keeps it stable), so its influence fades with distance; attention reads every earlier
    position directly, one step away, however far back it is.
    """
    for name, value in (("length", length), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 64:
            raise ValueError(f"{name}={value!r} must be a whole number from 2 to 64")
    if not 0.0 < recurrent_gain < 2.0:
        raise ValueError(f"recurrent_gain={recurrent_gain!r} must be in (0, 2); try 0.8")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(length, width, generator=generator)
    w_x = torch.randn(width, width, generator=generator) / math.sqrt(width)
    w_h = torch.randn(width, width, generator=generator) * (recurrent_gain / math.sqrt(width))

    def rnn(inputs: torch.Tensor) -> torch.Tensor:
        h, outputs = torch.zeros(width), []
        for t in range(inputs.shape[0]):  # one step after another: the loop cannot be parallel
            h = torch.tanh(inputs[t] @ w_x + h @ w_h)
            outputs.append(h)
        return torch.stack(outputs)

    config = GPTConfig(vocab_size=2, block_size=length, n_layer=1, n_head=1, n_embd=width)
    attention = GPT(config, seed=seed).transformer.h[0].attn
    return SequenceMixing(_influence(rnn, x), _influence(lambda inputs: attention(inputs[None])[0], x))


@dataclass(frozen=True)
class FutureChange:
    """Largest change of any logit at each position after one token was replaced.

    ``change[i]`` = max over the vocabulary of |logits_i(new) − logits_i(old)|. With causal
    attention ``change[:position]`` is exactly 0: earlier positions never see the new token.
    """

    ids: list[int]
    changed_ids: list[int]
    position: int
    change: torch.Tensor  # (T,)

    @property
    def largest_change_before(self) -> float:
        return float(self.change[: self.position].max()) if self.position > 0 else 0.0


def future_change(model: GPT, ids: list[int], position: int, new_id: int) -> FutureChange:
    """Replace token ``position`` of ``ids`` with ``new_id`` and measure how every position's
    logits move. For ids [5, 9, 2, 7] with position 2 replaced, ``change[0]`` and ``change[1]``
    come out exactly 0.0 (they only attend to tokens 0..1), ``change[2]`` and ``change[3]`` not.
    """
    idx = token_tensor(model, ids)
    tokens = idx[0].tolist()
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < len(tokens):
        raise ValueError(f"position={position!r} must be one of the prompt's positions 0..{len(tokens) - 1}")
    if not isinstance(new_id, int) or isinstance(new_id, bool) or not 0 <= new_id < model.config.vocab_size:
        raise ValueError(f"new_id={new_id!r} is outside the vocabulary [0, {model.config.vocab_size - 1}]")
    if tokens[position] == new_id:
        raise ValueError(f"position {position} already holds token {new_id}; pick a different token to see a change")
    changed = list(tokens)
    changed[position] = new_id
    with torch.no_grad():
        before, _ = model(idx)
        after, _ = model(torch.tensor([changed], device=idx.device))
    change = (after[0] - before[0]).abs().amax(dim=-1).float().cpu()
    return FutureChange(tokens, changed, position, change)


def _norm_and_scale_variants(model: GPT, pre_norm: bool, residual_factor: float) -> None:
    """Switch a model's blocks between pre- and post-LN and multiply every residual projection
    (attn.c_proj, mlp.c_proj weights) by ``residual_factor``. Same weights, one change at a time:
    a fresh GPT of the other variant with the same seed draws exactly these numbers."""
    with torch.no_grad():
        for block in model.transformer.h:
            block.pre_norm = pre_norm
            if residual_factor != 1.0:
                block.attn.c_proj.weight.mul_(residual_factor)
                block.mlp.c_proj.weight.mul_(residual_factor)


NORM_VARIANTS = (("pre-LN", True), ("post-LN", False))
INIT_VARIANTS = (("scaled init (GPT-2)", 1.0), ("plain 0.02 init", None))  # None: undo the scaling


MAX_INIT_PARAMS = 200_000_000  # GPT-2 small's blocks (85 M) take ~1 s to draw at random here


def init_model(config: GPTConfig, seed: int = 0, n_tokens: int = 32) -> GPT:
    """A freshly initialised GPT of ``config``'s shape for init-time statistics: vocabulary cut
    to 1024 and block to ``n_tokens`` (neither changes the residual stream's statistics, both
    save seconds for GPT-2-sized configs), pre-LN with GPT-2's scaled init, no dropout."""
    small = config.replace(
        vocab_size=min(config.vocab_size, 1024), block_size=min(config.block_size, n_tokens),
        norm_position="pre", scale_residual_init=True, dropout=0.0,
    )  # fmt: skip
    if total_parameters(small) > MAX_INIT_PARAMS:
        raise ValueError(
            f"a model of this shape has {total_parameters(small):,} parameters even with a small "
            f"vocabulary; initialising it here would take too long: try n_layer × n_embd² under "
            f"{MAX_INIT_PARAMS // 12:,} (GPT-2 small's 12 × 768² fits)"
        )
    model = empty_model(small)  # skips PyTorch's own init, which reset_parameters redoes anyway
    model.reset_parameters(seed)
    return model.eval()


def init_residual_comparison(config: GPTConfig, seed: int = 0, n_tokens: int = 32) -> dict[str, ResidualStats]:
    """Residual-stream size by depth at initialisation, for pre-/post-LN × scaled/plain init.

    Keys are ``"pre-LN, scaled init (GPT-2)"``, ``"post-LN, plain 0.02 init"`` ... All four use
    the same random weights and the same random ``n_tokens`` token ids; the scaled init divides
    the residual projections by sqrt(2·n_layer), which is all that differs.
    """
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or not 1 <= n_tokens <= 256:
        raise ValueError(f"n_tokens={n_tokens!r} must be a whole number from 1 to 256")
    model = init_model(config, seed, n_tokens)
    T = min(n_tokens, model.config.block_size)
    ids = torch.randint(0, model.config.vocab_size, (T,), generator=torch.Generator().manual_seed(seed)).tolist()
    results: dict[str, ResidualStats] = {}
    for init, factor in INIT_VARIANTS:
        # the model starts scaled; multiplying by sqrt(2·n_layer) once gives the plain 0.02 init
        factor = math.sqrt(2 * config.n_layer) if factor is None else factor
        for norm, pre_norm in NORM_VARIANTS:
            _norm_and_scale_variants(model, pre_norm, factor)
            factor = 1.0
            results[f"{norm}, {init}"] = residual_stats(model, ids)
    return results


def cosine_similarity_matrix(table: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every pair of rows of ``table`` (N, C): (N, N), 1 on the diagonal."""
    if table.dim() != 2 or table.shape[0] == 0:
        raise ValueError(f"expected a (rows, channels) table, got shape {tuple(table.shape)}")
    unit = F.normalize(table.detach().float(), dim=-1)
    return unit @ unit.T


def positions_at_init(block_size: int, n_embd: int, seed: int = 0, max_positions: int = 128) -> dict[str, torch.Tensor]:
    """Similarity matrices of the first ``max_positions`` position vectors: the fixed
    sinusoidal table (smooth: nearby positions look alike from the start) and a learned table
    at GPT-2's N(0, 0.02) init (noise: only training gives it structure)."""
    n = min(block_size, max_positions)
    learned = torch.randn(n, n_embd, generator=torch.Generator().manual_seed(seed)) * 0.02
    result = {"learned, at init": cosine_similarity_matrix(learned)}
    if n_embd % 2 == 0:
        result = {"sinusoidal (fixed)": cosine_similarity_matrix(sinusoidal_positions(n, n_embd)), **result}
    return result


def shares_embedding(model: GPT) -> bool:
    """True when lm_head reads and writes through the very same memory as wte (tied weights)."""
    return model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()


@dataclass(frozen=True)
class OutputDistribution:
    """The head's output at the last position, as probabilities over the whole vocabulary."""

    top_ids: list[int]
    top_probs: list[float]
    total: float  # the sum over all vocab_size probabilities: 1 (up to rounding)
    entropy_nats: float  # 0 = certain; ln(vocab_size) = a uniform guess
    vocab_size: int

    @property
    def uniform_entropy_nats(self) -> float:
        return math.log(self.vocab_size)


def output_distribution(model: GPT, ids: list[int], k: int = 10) -> OutputDistribution:
    """softmax(lm_head(last position)): the ``k`` likeliest next tokens, the sum, the entropy."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} must be a whole number ≥ 1; try 10")
    token_tensor(model, ids)  # the same checks (and messages) as every other inspection
    probs = next_token_distribution(model, ids).model_probs.double()
    values, indices = probs.topk(min(k, probs.numel()))
    entropy = float(-(probs * probs.clamp(min=1e-300).log()).sum())
    return OutputDistribution(indices.tolist(), values.tolist(), float(probs.sum()), entropy, probs.numel())


# --------------------------------------------------------------------------------------------
# 5. Figures
# --------------------------------------------------------------------------------------------

VALUE_SCALE, PROBABILITY_SCALE = "RdBu_r", "Viridis"


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=50, b=10),
                      paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)")  # fmt: skip
    return fig


def parameter_treemap_figure(config: GPTConfig) -> go.Figure:
    """Where the parameters are: a treemap of ``parameter_tree`` (area = parameters)."""
    tree = parameter_tree(config)
    fig = go.Figure(
        go.Treemap(
            ids=[n["id"] for n in tree], labels=[n["label"] for n in tree], parents=[n["parent"] for n in tree],
            values=[n["params"] for n in tree], branchvalues="total", maxdepth=3,
            texttemplate="%{label}<br>%{value:,}", hovertemplate="%{label}: %{value:,} parameters"
            "<br>%{percentRoot:.1%} of the model<extra></extra>",
        )
    )  # fmt: skip
    return _layout(fig, f"where the {tree[0]['params']:,} parameters are", 420)


def _cells(matrix: torch.Tensor) -> Any:
    """Heatmap cells as a numpy array (plotly checks a list cell by cell, ~50× slower); masked
    -inf becomes NaN, which plotly writes as null and leaves blank."""
    values = matrix.detach().float().cpu().numpy().copy()
    values[~np.isfinite(values)] = np.nan
    return values


def _heatmap(matrix: torch.Tensor, probability: bool, showscale: bool = True) -> go.Heatmap:
    finite = matrix[torch.isfinite(matrix)]
    bound = float(finite.abs().max()) if finite.numel() else 1.0
    scale = dict(colorscale=PROBABILITY_SCALE, zmin=0, zmax=1) if probability else dict(
        colorscale=VALUE_SCALE, zmid=0, zmin=-bound, zmax=bound)  # fmt: skip
    return go.Heatmap(z=_cells(matrix), showscale=showscale, **scale,
                      hovertemplate="row %{y}, column %{x}: %{z:.4g}<extra></extra>")  # fmt: skip


def step_figure(step: TraceStep, matrix: StepMatrix) -> go.Figure:
    """A small heatmap of one trace step's slice (blank cells are masked, -inf); token ids are
    written into their cells."""
    if step.dims == "(B, T)":
        fig = go.Figure(go.Heatmap(z=_cells(matrix.values), colorscale="Greys", showscale=False, zmin=0,
                                   zmax=2 * float(matrix.values.max()) + 1, texttemplate="%{z:.0f}",
                                   hovertemplate="position %{x}: id %{z:.0f}<extra></extra>"))  # fmt: skip
        fig.update_yaxes(showticklabels=False)
    else:
        fig = go.Figure(_heatmap(matrix.values, "softmax" in step.name))
        fig.update_yaxes(title=matrix.rows, autorange="reversed")
    fig.update_xaxes(title=matrix.cols)
    title = f"{step.name} ({matrix.caption})" if matrix.caption else step.name
    rows = matrix.values.shape[0]
    return _layout(fig, title, height=max(150, min(320, 80 + 6 * rows)))


def attention_steps_figure(scores: torch.Tensor, masked: torch.Tensor, probs: torch.Tensor, title: str) -> go.Figure:
    """One head's (T, T) scores before the mask, after it (blank = -inf), after softmax."""
    fig = make_subplots(1, 3, subplot_titles=["scores q·k/√hs", "after the causal mask", "after softmax"],
                        horizontal_spacing=0.06)  # fmt: skip
    for col, (matrix, probability) in enumerate(((scores, False), (masked, False), (probs, True)), start=1):
        fig.add_trace(_heatmap(matrix.float(), probability, showscale=col == 3), row=1, col=col)
    fig.update_yaxes(autorange="reversed", title_text="query position", row=1, col=1)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="key position")
    return _layout(fig, title, 360)


def part_figures(steps: list[TraceStep], part: str, head: int = 0) -> dict[int | str, go.Figure]:
    """Every figure of one part of a trace (a name from ``trace_parts``): step index → its
    heatmap, plus ``"attention"`` → ``attention_steps_figure`` when the part is a block."""
    parts = dict(trace_parts(steps))
    if part not in parts:
        raise ValueError(f"part={part!r} is not in this trace; choose one of {list(parts)}")
    figures: dict[int | str, go.Figure] = {i: step_figure(steps[i], step_matrix(steps[i], head)) for i in parts[part]}
    named = {steps[i].name.split(": ", 1)[-1]: steps[i] for i in parts[part]}
    if {"scores", "causal mask", "softmax"} <= set(named):
        stages = [step_matrix(named[name], head).values for name in ("scores", "causal mask", "softmax")]
        figures["attention"] = attention_steps_figure(*stages, f"{part}, head {head}: before the mask, after it, after softmax")
    return figures


def sequence_mixing_figure(mixing: SequenceMixing) -> go.Figure:
    """RNN vs attention influence matrices side by side (same colour scale, 0 to 1)."""
    fig = make_subplots(1, 2, subplot_titles=[f"RNN ({mixing.rnn_sequential_steps} steps in a row)",
                                              "self-attention (1 step, all positions)"])  # fmt: skip
    for col, matrix in enumerate((mixing.rnn, mixing.attention), start=1):
        fig.add_trace(go.Heatmap(z=_cells(matrix), colorscale=PROBABILITY_SCALE, zmin=0, zmax=1, showscale=col == 2,
                                 hovertemplate="output %{y} ← input %{x}: %{z:.3f}<extra></extra>"), row=1, col=col)  # fmt: skip
    fig.update_xaxes(title_text="input position")
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(title_text="output position", row=1, col=1)
    return _layout(fig, "how strongly each input can move each output (row-scaled)", 380)


def residual_comparison_figure(
    stats: dict[str, ResidualStats], field: str = "std", title: str = "", log_y: bool = False
) -> go.Figure:
    """One line per variant: the residual stream's ``field`` ("std" or "norm") after each layer."""
    if field not in ("std", "norm"):
        raise ValueError(f"field={field!r}; choose 'std' or 'norm'")
    fig = go.Figure()
    for label, result in stats.items():
        values = getattr(result, field).tolist()
        fig.add_trace(go.Scatter(x=list(range(len(values))), y=values, name=label, mode="lines+markers"))
    names = next(iter(stats.values())).layer_names if stats else []
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(names))), ticktext=names)
    fig.update_yaxes(title="std of the residual stream" if field == "std" else "mean ‖x‖ per position")
    if log_y:
        values = [v for result in stats.values() for v in getattr(result, field).tolist() if v > 0]
        ticks = [m * 10.0**e for e in range(-6, 7) for m in (1, 2, 5)]
        shown = [t for t in ticks if min(values, default=1) / 2 <= t <= max(values, default=1) * 2]
        fig.update_yaxes(type="log", tickmode="array", tickvals=shown, ticktext=[f"{t:g}" for t in shown])
    fig.update_layout(legend=dict(orientation="h", y=-0.2))
    return _layout(fig, title or f"residual stream {field} by depth", 380)


def future_change_figure(result: FutureChange, labels: list[str] | None = None) -> go.Figure:
    """Bars of the largest logit change at each position; the replaced position is highlighted."""
    T = len(result.ids)
    names = labels if labels is not None and len(labels) == T else [str(i) for i in range(T)]
    colours = ["#EF553B" if i == result.position else "#636EFA" for i in range(T)]
    fig = go.Figure(go.Bar(x=list(range(T)), y=result.change.tolist(), marker_color=colours, customdata=names,
                           hovertemplate="position %{x} (%{customdata}): %{y:.3g}<extra></extra>"))  # fmt: skip
    fig.update_xaxes(title="position (label: the original token)", tickmode="array", tickvals=list(range(T)), ticktext=names)
    fig.update_yaxes(title="largest |Δ logit|")
    return _layout(fig, f"replace position {result.position}: which outputs move?", 320)


def output_distribution_figure(result: OutputDistribution, labels: list[str] | None = None) -> go.Figure:
    """The ``k`` likeliest next tokens as probability bars."""
    names = [labels[i] if labels is not None else str(i) for i in result.top_ids]
    fig = go.Figure(go.Bar(x=list(range(len(names))), y=result.top_probs, customdata=names, marker_color="#636EFA",
                           hovertemplate="%{customdata}: %{y:.4f}<extra></extra>"))  # fmt: skip
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(names))), ticktext=names, title="next token")
    fig.update_yaxes(title="probability", range=[0, 1])
    return _layout(fig, f"the top {len(names)} of {result.vocab_size:,} probabilities (all of them sum to {result.total:.4f})", 320)
