"""From a prompt to text: the model's next-token distribution, and ``generate()`` that loops.

Each step runs the model on the context, then picks a token through the stages of
``toygpt.sampling`` (temperature → top-k → top-p → draw), all set by one ``SamplingConfig``.
``generate()`` repeats that, one token at a time, reusing the keys and values of earlier
positions (a KV cache) so each new token costs one position's worth of work, not a whole pass.
Every step records how long it took to compute; ``GenerationStats`` sums a generation up
(time to the first token, time per token after it, tokens per second).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from toygpt.model import GPT, CausalSelfAttention, KVCache
from toygpt.sampling import (
    SamplingConfig,
    SamplingStages,
    filtered_probs,
    sample_from,
    stages_from_logits,
)
from toygpt.stopping import check_stop
from toygpt.tokenizers.base import check_model_vocab_size

# The model's own top candidates that every generation step reports.
DEFAULT_CANDIDATES = 5


# --------------------------------------------------------------------------------------------
# Prompts: token ids in, checked; the start token; cropping to block_size
# --------------------------------------------------------------------------------------------


def start_token_id(tokenizer: Any | None = None, model: GPT | None = None) -> int:
    """The token an empty prompt starts from: a context the model was trained on, so that what
    follows is the start of a text, not the middle of one.

    ``model.config.bos_token_id`` when the model records one (GPT-2 imported from Hugging Face:
    ``<|endoftext|>``, which separates documents in its training data; a run trained here: the
    token its data starts texts after, see ``toygpt.data.start_token_for``). Otherwise a newline
    when that is one token: every corpus here starts its lines, examples and speeches after one.
    ``<|endoftext|>`` comes only after that, because toygpt encodes training text without
    special tokens, so a model trained here has never seen it (its first token after it scored
    11.65 nats, worse than uniform, against 0.70 after a newline). Then id 0 (also when no
    tokenizer is given).
    """
    recorded = getattr(model.config, "bos_token_id", None) if model is not None else None
    if recorded is not None:
        return int(recorded)
    if tokenizer is None:
        return 0
    try:
        newline = tokenizer.encode("\n")
    except ValueError:  # a char vocabulary without "\n"
        newline = []
    if len(newline) == 1:
        return int(newline[0])
    special = getattr(tokenizer, "special_tokens", {}) or {}
    return int(special.get("<|endoftext|>", 0))


def as_token_list(ids: Sequence[int] | torch.Tensor, vocab_size: int) -> list[int]:
    """Token ids as a plain list, checked against the vocabulary (one sequence, any length)."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() == 2 and ids.shape[0] == 1:
            ids = ids[0]
        if ids.dim() != 1:
            raise ValueError(f"expected one sequence of token ids, shape (T,) or (1, T); got {tuple(ids.shape)}")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise ValueError(f"token ids must be integers, got dtype {ids.dtype}")
        ids = ids.tolist()
    if isinstance(ids, str | bytes):
        raise ValueError("expected token ids, got text; encode it first (tokenizer.encode(text))")
    out = []
    for token_id in ids:
        if isinstance(token_id, bool) or not hasattr(token_id, "__index__"):
            raise ValueError(f"token ids must be whole numbers, got {token_id!r}")
        if not 0 <= int(token_id) < vocab_size:
            raise ValueError(f"token id {token_id} is outside the model's vocabulary [0, {vocab_size - 1}]")
        out.append(int(token_id))
    return out


def crop_context(ids: list[int], block_size: int) -> tuple[list[int], int]:
    """Keep the last ``block_size`` ids (all the model can read); return them and how many were
    dropped from the front, so the caller can say "your prompt was cut to its last N tokens"."""
    dropped = max(0, len(ids) - block_size)
    return ids[dropped:], dropped


def encode_prompt(tokenizer: Any, prompt: str, model: GPT | None = None) -> list[int]:
    """Text → ids for generation; an empty prompt becomes ``[start_token_id(tokenizer, model)]``
    (pass the ``model`` that will read them, so its recorded start token is used).

    Characters a character vocabulary cannot encode raise the tokenizer's
    ``UnknownCharactersError`` (a ``ValueError`` that names them).
    """
    if not isinstance(prompt, str):
        raise ValueError(f"the prompt must be text (str), got {type(prompt).__name__}")
    ids = tokenizer.encode(prompt) if prompt else []
    return ids or [start_token_id(tokenizer, model)]


def unusable_ids(model: GPT, tokenizer: Any | None) -> torch.Tensor | None:
    """The ids ``model`` must never emit with ``tokenizer``: those it has no text for
    (``tokenizer.unused_ids()``, e.g. the holes in a tiktoken encoding), as a tensor for
    ``mask_unusable``, or None when every id decodes. A model and tokenizer whose vocabularies
    differ in size are refused here, where they are put together (``TokenizerError``)."""
    if tokenizer is None:
        return None
    check_model_vocab_size(tokenizer, model.config.vocab_size)
    unused = tokenizer.unused_ids() if hasattr(tokenizer, "unused_ids") else ()
    return torch.tensor(unused, dtype=torch.long, device=model_device(model)) if unused else None


def mask_unusable(logits: torch.Tensor, unusable: torch.Tensor | None) -> torch.Tensor:
    """``logits`` (vocab_size,) with ``-inf`` at the ``unusable`` ids: probability 0 in every
    sampling stage, the model's own distribution included (it is renormalised over the rest)."""
    return logits if unusable is None else logits.index_fill(0, unusable, float("-inf"))


# --------------------------------------------------------------------------------------------
# One step of the model
# --------------------------------------------------------------------------------------------


def check_sampling(sampling: Any) -> SamplingConfig:
    """``sampling`` if it is a ``SamplingConfig``; else a ValueError that shows how to make one."""
    if not isinstance(sampling, SamplingConfig):
        raise ValueError(f"sampling={sampling!r} must be a SamplingConfig, e.g. "
                         "sampling=SamplingConfig(temperature=0.8, top_k=40)")  # fmt: skip
    return sampling


def next_token_distribution(
    model: GPT,
    ids: Sequence[int] | torch.Tensor,
    sampling: SamplingConfig = SamplingConfig(),  # frozen: one shared default is safe
    tokenizer: Any | None = None,
) -> SamplingStages:
    """Run the model on ``ids`` (an empty prompt uses ``start_token_id(tokenizer, model)``;
    longer than ``block_size`` keeps the last ``block_size``, reported as ``context_dropped``)
    and return every sampling stage of ``sampling``. With ``tokenizer``, ids it cannot decode
    get probability 0 (as in ``generate``)."""
    config = check_sampling(sampling)
    unusable = unusable_ids(model, tokenizer)
    tokens = as_token_list(ids, model.config.vocab_size) or [start_token_id(tokenizer, model)]
    tokens, dropped = crop_context(tokens, model.config.block_size)
    with torch.no_grad():
        logits, _ = model(torch.tensor([tokens], device=model_device(model)))
    return replace(stages_from_logits(mask_unusable(logits[0, -1], unusable), config), context_dropped=dropped)


def model_device(model: GPT) -> torch.device:
    return model.transformer.wte.weight.device


class StepBlock(NamedTuple):
    """What ``decode_step`` reads of one block, looked up once per generation: its parameters by
    their GPT-2 names (``"attn.c_attn.weight"``, ...; a missing ``.bias`` reads as None), where
    its norms sit, and its attention module (for RoPE's ``rotate`` and ALiBi's ``position_bias``).
    ``block.attn.c_attn.weight`` walks three ``nn.Module`` attribute lookups (~0.5 µs each) and a
    token needs over a hundred of them."""

    params: dict[str, torch.Tensor]
    pre_norm: bool
    attn: CausalSelfAttention


def step_parameters(model: GPT) -> list[StepBlock]:
    """Every block as a ``StepBlock``, in order."""
    return [StepBlock(dict(block.named_parameters()), block.pre_norm, block.attn) for block in model.transformer.h]


def decode_step(
    model: GPT, token_id: int, cache: KVCache, params: list[StepBlock] | None = None
) -> torch.Tensor:
    """Logits (vocab_size,) for what follows ``token_id``, read at position ``cache.length``.

    ``GPT.forward`` on one new token with a cache, its blocks written out for speed: at one
    token per step the arithmetic is tiny and the cost is Python — ~50 ``nn.Module`` calls,
    ~100 attribute walks, dropout layers that do nothing in eval — so this runs the blocks as
    plain functions on ``step_parameters`` and the single query needs no causal mask (it may
    see every cached key). ``bench/generate.py`` measures both ways in one run ("cache" vs
    "cache, fwd": ~1.8-2x here). Shared with the model, not copied: the position encoding
    (``GPT.position_encoding``), RoPE and ALiBi (the attention's ``rotate``/``position_bias``)
    and the head (``GPT.head``). Dropout is off, as in ``model.eval()``; hook points inside the
    blocks are not called (``generate`` takes ``GPT.forward`` when this thread has hooks
    attached). A hypothesis test checks it against ``GPT.forward`` for every config variant.
    """
    params = step_parameters(model) if params is None else params
    config, position = model.config, cache.length
    if position >= config.block_size and not config.any_length:
        raise IndexError(f"position {position} is past block_size={config.block_size}; move the window (window_start)")
    x = model.transformer.wte.weight[token_id].view(1, -1)  # (T=1, C): 2-D input is cheaper for linear layers
    if model.token_scale != 1.0:
        x = x * model.token_scale  # sinusoidal positions: as GPT.embed
    positions = model.position_encoding(position, 1)  # (1, C) or None
    if positions is not None:
        x = x + positions
    for layer, block in enumerate(params):
        x = _block_step(block, x, cache, layer)
    return model.head(x).view(-1)


def _norm(x: torch.Tensor, p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], p[name + ".weight"], p.get(name + ".bias"))


def _linear(x: torch.Tensor, p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return F.linear(x, p[name + ".weight"], p.get(name + ".bias"))


def _block_step(block: StepBlock, x: torch.Tensor, cache: KVCache, layer: int) -> torch.Tensor:
    """``Block.forward`` for one token (pre-LN as GPT-2, or post-LN)."""
    p = block.params
    if block.pre_norm:
        x = x + _attention_step(p, _norm(x, p, "ln_1"), cache, layer, block.attn)
        return x + _mlp_step(p, _norm(x, p, "ln_2"))
    x = _norm(x + _attention_step(p, x, cache, layer, block.attn), p, "ln_1")
    return _norm(x + _mlp_step(p, x), p, "ln_2")


def _attention_step(
    p: dict[str, torch.Tensor], x: torch.Tensor, cache: KVCache, layer: int, attn: CausalSelfAttention
) -> torch.Tensor:
    """``CausalSelfAttention.forward`` for one token: its query against every cached key. RoPE
    and ALiBi are the attention module's own ``rotate`` and ``position_bias``."""
    qkv = _linear(x, p, "attn.c_attn")  # (1, 3C): q, k, v side by side, each head after head
    q, k, v = qkv.view(3, 1, attn.n_head, 1, attn.head_size).unbind(0)  # 3 × (B=1, nh, T=1, hs)
    start = cache.cached(layer)
    if attn.pos_encoding == "rope":
        q, k = attn.rotate(q, k, start)
    k, v = cache.update(layer, k, v)  # (1, nh, T_so_far, hs)
    if attn.pos_encoding == "alibi":  # (nh, 1, T_so_far): one query may see every key, no mask
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn.position_bias(start, 1).to(q.dtype))
    else:
        y = F.scaled_dot_product_attention(q, k, v)  # (1, nh, 1, hs)
    return _linear(y.reshape(1, -1), p, "attn.c_proj")


def _mlp_step(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``MLP.forward``: widen, GELU (tanh approximation, as ``MLP.gelu``), narrow."""
    return _linear(F.gelu(_linear(x, p, "mlp.c_fc"), approximate="tanh"), p, "mlp.c_proj")


# --------------------------------------------------------------------------------------------
# The context window: what the model reads once the text outgrows block_size
# --------------------------------------------------------------------------------------------


def window_start(n_tokens: int, start: int, block_size: int, keep: int) -> int:
    """Index of the first token the model reads, given the previous window ``start``.

    The window stays put while ``n_tokens - start ≤ block_size``. When the text outgrows it, the
    window jumps forward to the last ``keep`` tokens. Jumping (rather than sliding one token per
    step) is a deliberate choice: with learned or sinusoidal positions every token's position,
    and so every cached key and value, changes when the window moves, so the cache must be
    recomputed from scratch. Sliding by one would recompute at every step and the cache would
    save nothing; jumping by ``block_size - keep`` recomputes once per that many tokens. The
    price: right after a jump the model reads ``keep`` tokens of context instead of
    ``block_size``. ``keep=block_size`` gives the classic "crop to the last block_size tokens
    at every step". Generation with and without the cache uses the same windows.

    >>> [window_start(n, 0, block_size=4, keep=2) for n in (3, 4, 5)]
    [0, 0, 3]
    """
    if n_tokens - start <= block_size:
        return start
    return n_tokens - keep


class _Decoder:
    """Logits for the next token, with a KV cache (rebuilt when the window moves) or without."""

    def __init__(self, model: GPT, use_cache: bool) -> None:
        self.model = model
        self.use_cache = use_cache
        self.device = model_device(model)
        self.params = step_parameters(model)
        self.cache: KVCache | None = None
        self.cache_start = -1

    def next_logits(self, tokens: list[int], start: int) -> tuple[torch.Tensor, bool]:
        """(logits (vocab_size,), whether the whole window was run through the model)."""
        if self.use_cache and self.cache is not None and start == self.cache_start:
            if self.model.hook_points.attached_here():  # this thread's hooks apply to every token
                last = torch.tensor([tokens[-1:]], device=self.device)
                return self.model(last, kv_cache=self.cache)[0][0, -1], False
            return decode_step(self.model, tokens[-1], self.cache, self.params), False
        window = torch.tensor([tokens[start:]], device=self.device)  # (1, T)
        self.cache = KVCache(self.model.config.n_layer) if self.use_cache else None
        self.cache_start = start
        logits, _ = self.model(window, kv_cache=self.cache)  # (1, T, vocab_size)
        return logits[0, -1], True


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationStep:
    """One generated token and how it was chosen.

    ``probability`` is the token's probability in the distribution it was drawn from (1.0 when
    greedy); ``model_probability`` and ``rank`` (1 = the favourite) are in the model's own
    distribution; ``candidates`` are the model's top ``(token_id, probability)`` pairs.
    ``context_start``/``context_length`` locate the tokens the model read, as indices into
    prompt + generated tokens; ``recomputed`` is True when this step ran the whole window (the
    first step, every step without a cache, and after a window jump). ``stop_reason`` is set on
    the last step only. ``text`` is this token decoded on its own: a byte token that holds part
    of a character reads as U+FFFD, so decode the ids together to show the text. ``seconds`` is
    the time spent computing this step inside ``generate`` (what the caller does with a step
    between two of them does not count).
    """

    index: int
    token_id: int
    text: str | None
    probability: float
    model_probability: float
    rank: int
    candidates: list[tuple[int, float]]
    context_start: int
    context_length: int
    recomputed: bool
    prompt_dropped: int
    stop_reason: str | None = None
    stages: SamplingStages | None = field(default=None, repr=False)
    seconds: float = 0.0


def _choose(
    logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator, n_candidates: int
) -> tuple[int, float, float, int, list[tuple[int, float]]]:
    """Pick the next token: (id, probability drawn with, model probability, rank, candidates)."""
    model_probs = F.softmax(logits, dim=-1)
    top_probs, top_ids = torch.topk(model_probs, min(n_candidates, model_probs.shape[-1]))
    candidates = list(zip(top_ids.tolist(), top_probs.tolist(), strict=True))
    if not math.isfinite(candidates[0][1]):  # NaN sorts first in topk, so this sees any NaN
        raise ValueError("the model produced NaN logits; its weights are probably corrupt (reload or retrain it)")
    if config.greedy:  # argmax, as apply_temperature(·, 0): the first of tied maxima
        token, probability = int(logits.argmax()), 1.0
    else:
        probs = model_probs if config.plain else filtered_probs(logits, config)
        token = sample_from(probs, generator)
        probability = float(probs[token])
    for rank, (candidate, p) in enumerate(candidates, start=1):
        if candidate == token:
            return token, probability, p, rank, candidates
    model_probability = float(model_probs[token])
    rank = int((model_probs > model_probability).sum()) + 1
    return token, probability, model_probability, rank, candidates


def _make_generator(seed: int | torch.Generator | None) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    generator = torch.Generator()
    if seed is None:
        generator.seed()  # a fresh random seed, for "surprise me" sampling
    else:
        generator.manual_seed(int(seed))
    return generator


def _check_generation_args(
    model: GPT, max_new_tokens: int, window_keep: int | None, n_candidates: int, stop: Any, tokenizer: Any
) -> int:
    """Validate the arguments that SamplingConfig does not cover; return ``keep``."""
    if model.training and model.config.dropout > 0:
        raise ValueError("the model is in training mode with dropout on; call model.eval() before generating")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be a whole number ≥ 0; try 200")
    block_size = model.config.block_size
    keep = max(1, block_size // 2) if window_keep is None else window_keep
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= block_size:
        raise ValueError(f"window_keep={window_keep!r} must be between 1 and block_size={block_size}")
    if isinstance(n_candidates, bool) or not isinstance(n_candidates, int) or n_candidates < 1:
        raise ValueError(f"n_candidates={n_candidates!r} must be a whole number ≥ 1; try 5")
    if stop and tokenizer is None:
        raise ValueError("stop strings need text: pass tokenizer= so generated tokens can be decoded")
    return keep


def _stop_strings(stop: str | Sequence[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not isinstance(s, str) or not s for s in stops):
        raise ValueError(f"stop must be a non-empty string or a list of them, got {stop!r}")
    return stops


def generate(
    model: GPT,
    ids: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    *,
    sampling: SamplingConfig = SamplingConfig(),  # frozen: one shared default is safe
    seed: int | torch.Generator | None = None,
    use_cache: bool = True,
    stop: str | Sequence[str] | None = None,
    tokenizer: Any | None = None,
    window_keep: int | None = None,
    n_candidates: int = DEFAULT_CANDIDATES,
    record_stages: bool = False,
) -> Iterator[GenerationStep]:
    """Yield one ``GenerationStep`` per new token, so a page can stream or step through them.

    ``sampling`` says how each token is picked (temperature, top-k, top-p: one
    ``SamplingConfig``; the default samples from the model's own distribution). Stops after
    ``max_new_tokens`` or once the generated text contains a ``stop`` string (needs
    ``tokenizer``). With ``tokenizer`` the model only emits ids it can decode (see
    ``unusable_ids``; its vocabulary must be the model's size). An empty prompt starts from
    ``start_token_id(tokenizer, model)``; a prompt longer than ``block_size`` keeps its last
    ``block_size`` tokens (``step.prompt_dropped`` says how many went). Beyond ``block_size``
    the context window jumps to the last ``window_keep`` tokens (default ``block_size // 2``;
    see ``window_start``). The same ``seed`` gives the same tokens with and without the cache.
    ``record_stages=True`` attaches every sampling stage.
    """
    config = check_sampling(sampling)
    keep = _check_generation_args(model, max_new_tokens, window_keep, n_candidates, stop, tokenizer)
    stops = _stop_strings(stop)
    unusable = unusable_ids(model, tokenizer)
    tokens = as_token_list(ids, model.config.vocab_size) or [start_token_id(tokenizer, model)]
    # checked above, before the first step: a bad argument raises here, at the call
    return _steps(model, tokens, max_new_tokens, config, _make_generator(seed), use_cache, stops, tokenizer, keep,
                  n_candidates, record_stages, unusable)  # fmt: skip


def _steps(
    model: GPT, tokens: list[int], max_new_tokens: int, config: SamplingConfig, generator: torch.Generator,
    use_cache: bool, stops: list[str], tokenizer: Any, keep: int, n_candidates: int, record_stages: bool,
    unusable: torch.Tensor | None = None,
) -> Iterator[GenerationStep]:  # fmt: skip
    """The generation loop behind ``generate`` (arguments already checked)."""
    n_prompt, block_size = len(tokens), model.config.block_size
    start = dropped = window_start(n_prompt, 0, block_size, keep=block_size)  # crop the prompt
    decoder = _Decoder(model, use_cache)
    for index in range(max_new_tokens):
        started = time.perf_counter()  # after the caller's turn: only this step's work counts
        start = window_start(len(tokens), start, block_size, keep)
        with torch.inference_mode():  # entered per step: a generator must not leak it to its caller
            logits, recomputed = decoder.next_logits(tokens, start)
            logits = mask_unusable(logits, unusable)
            token, probability, model_probability, rank, candidates = _choose(logits, config, generator, n_candidates)
            stages = stages_from_logits(logits, config) if record_stages else None
        tokens.append(token)
        text = None if tokenizer is None else tokenizer.decode([token])
        reason = _stop_reason(tokenizer, tokens[n_prompt:], stops) if stops else None
        if reason is None and index == max_new_tokens - 1:
            reason = "max_new_tokens"
        yield GenerationStep(
            index, token, text, probability, model_probability, rank, candidates,
            start, len(tokens) - 1 - start, recomputed, dropped, reason, stages, time.perf_counter() - started,
        )  # fmt: skip
        if reason is not None:
            return


def _stop_reason(tokenizer: Any, generated: list[int], stops: list[str]) -> str | None:
    """``"stop string '…'"`` once the generated text contains one of ``stops``.

    Only the tail is decoded, so a long generation does not decode everything at every step.
    A stop string that just appeared ends at the newest token; its L characters are at most
    4·L UTF-8 bytes and every token holds at least one byte, so it lies within the last
    4·L + 1 tokens (the +1 for a token that starts before it). Earlier appearances would
    already have stopped generation.
    """
    tail_tokens = 4 * max(len(s) for s in stops) + 1
    text = tokenizer.decode(generated[-tail_tokens:])
    for s in stops:
        if s in text:
            return f"stop string {s!r}"
    return None


# --------------------------------------------------------------------------------------------
# A whole generation: its text and how long it took
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationStats:
    """How long a generation took, from its steps' own ``seconds``.

    The first step reads the whole prompt (with or without a cache): ``first_token_seconds`` is
    the time to the first token. ``seconds_per_token`` is the mean of the steps after it, the cost
    of one more token once generation is under way (a one-token generation: its only step).
    ``recomputed_steps`` counts the steps that ran the whole window (see ``GenerationStep``).
    """

    tokens: int
    first_token_seconds: float
    seconds_per_token: float
    total_seconds: float
    recomputed_steps: int

    @property
    def tokens_per_second(self) -> float:
        """Speed once under way: ``1 / seconds_per_token``."""
        return 1.0 / self.seconds_per_token if self.seconds_per_token > 0 else math.inf

    @classmethod
    def of(cls, steps: Sequence[GenerationStep]) -> GenerationStats:
        """The stats of ``steps`` (at least one), as ``generate`` yielded them."""
        if not steps:
            raise ValueError("no steps were generated, so there is nothing to time; ask for at least 1 token")
        seconds = [step.seconds for step in steps]
        later = seconds[1:] or seconds
        return cls(len(steps), seconds[0], statistics.fmean(later), math.fsum(seconds),
                   sum(step.recomputed for step in steps))  # fmt: skip


@dataclass(frozen=True)
class Generation:
    """A finished generation: ``text`` (without the prompt, cut before a stop string; None when
    made without a tokenizer), the new ``tokens`` (ids), why it stopped, how many prompt tokens
    the model could not read, whether the KV cache was on, and its ``stats``."""

    text: str | None
    tokens: list[int]
    stop_reason: str | None
    prompt_dropped: int
    use_cache: bool
    stats: GenerationStats


def generation_of(
    steps: Sequence[GenerationStep], tokenizer: Any | None = None, *, use_cache: bool,
    stop: str | Sequence[str] | None = None,
) -> Generation:  # fmt: skip
    """A ``Generation`` from the steps ``generate`` yielded (at least one): the ids decoded
    together (a character split over byte tokens comes out whole), cut before a ``stop`` string."""
    stats = GenerationStats.of(steps)
    ids = [step.token_id for step in steps]
    text = None if tokenizer is None else tokenizer.decode(ids)
    for s in _stop_strings(stop) if text is not None else ():
        text = text.split(s, 1)[0]
    return Generation(text, ids, steps[-1].stop_reason, steps[0].prompt_dropped, use_cache, stats)


def generate_text(
    model: GPT,
    tokenizer: Any,
    prompt: str,
    max_new_tokens: int = 200,
    *,
    sampling: SamplingConfig = SamplingConfig(),  # frozen: one shared default is safe
    seed: int | torch.Generator | None = None,
    stop: str | Sequence[str] | None = None,
    use_cache: bool = True,
) -> Generation:
    """The continuation of ``prompt``: its text (``.text``, without the prompt, cut before a
    stop string), ids and timing (``.stats``). ``max_new_tokens=0`` gives empty text.

    >>> generate_text(model, tokenizer, "ROMEO:", 50, seed=0).text  # doctest: +SKIP
    """
    ids = encode_prompt(tokenizer, prompt, model)
    steps = []
    for step in generate(model, ids, max_new_tokens, sampling=sampling, seed=seed, use_cache=use_cache, stop=stop,
                         tokenizer=tokenizer):  # fmt: skip
        check_stop()  # inside a job (training samples), Stop ends a long sample here
        steps.append(step)
    if not steps:
        return Generation("", [], None, 0, use_cache, GenerationStats(0, 0.0, 0.0, 0.0, 0))
    return generation_of(steps, tokenizer, use_cache=use_cache, stop=stop)
