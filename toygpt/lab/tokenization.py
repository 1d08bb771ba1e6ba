"""Experiment 4, "byte-level trades vocab for length": several tokenizers on one text — tokens
per character, context per block, embedding cost, and bits per byte after the same training time."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from toygpt import data as corpora
from toygpt.certainty import single_measurement
from toygpt.lab.reporter import Reporter
from toygpt.lab.setup import (
    LAB_COMPILE,
    TRAIN_PRESETS,
    ExperimentParams,
    ExperimentSpec,
    LabError,
    ProgressFn,
    check_number,
    check_whole,
    corpus_names,
    plain,
    rounded,
)
from toygpt.lab.variants import Artifacts, train_variant
from toygpt.model import GPT, GPTConfig, preset, total_parameters
from toygpt.tokenizers import (
    CharTokenizer,
    Tokenizer,
    TokenizerError,
    get_tokenizer,
    parse_tokenizer_name,
)
from toygpt.train import TrainConfig
from toygpt.viz import PALETTE, base_layout

DEFAULT_TOKENIZERS = ("char", "byte", "bpe-300", "bpe-512", "gpt2")
MAX_TOKENIZE_CHARS = 400_000  # the lab measures and trains on at most this much of the text


@dataclass(frozen=True)
class TokenizationParams(ExperimentParams):
    """Several tokenizers on one text: cost in tokens, context per block, embedding parameters,
    and (``train_seconds`` > 0) validation loss per byte after the same training time each.

    ``text`` is your own text (None: the ``corpus`` by name). BPE is trained on the text itself."""

    corpus: str = "toy-english"
    text: str | None = None
    tokenizers: tuple[str, ...] = DEFAULT_TOKENIZERS
    preset: str = "nano"
    block_size: int = 64
    train_seconds: float = 15.0
    learning_rate: float = 3e-3
    batch_size: int = 12
    eval_batches: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.tokenizers, list):
            object.__setattr__(self, "tokenizers", tuple(self.tokenizers))
        if not isinstance(self.corpus, str) or (self.text is None and self.corpus not in corpus_names()):
            raise LabError(f"corpus={self.corpus!r}; choose one of {corpus_names()}, or give your own text")
        if self.text is not None and (not isinstance(self.text, str) or not self.text.strip()):
            raise LabError("the text is empty; paste or upload some text (a few thousand characters at least)")
        if not self.tokenizers or len(self.tokenizers) > 8:
            raise LabError("choose 1 to 8 tokenizers, e.g. ('char', 'byte', 'bpe-512', 'gpt2')")
        for name in self.tokenizers:
            _check_tokenizer_name(name)
        if self.preset not in TRAIN_PRESETS:
            raise LabError(f"preset={self.preset!r}; choose one of {TRAIN_PRESETS}")
        check_whole("block_size", self.block_size, 4, 1024)
        check_number("train_seconds", self.train_seconds, 0.0, 600.0, " (0 skips training)")
        check_number("learning_rate", self.learning_rate, 1e-6, 1.0, "; try 3e-3")
        check_whole("batch_size", self.batch_size, 1, 256)
        check_whole("eval_batches", self.eval_batches, 1, 200)
        check_whole("seed", self.seed, 0, 2**31 - 1)

    timing = ', most of it the training time set here'  # where the cost's seconds come from

    def cost(self) -> tuple[float, str]:
        bpe = [n for n in self.tokenizers if parse_tokenizer_name(n).kind == "bpe"]
        seconds = len(self.tokenizers) * self.train_seconds + 4.0 * len(bpe) + 2.0
        text = f"{len(self.tokenizers)} tokenizers measured on the text"
        if bpe:
            text += f" ({len(bpe)} BPE vocabularies trained on it first)"
        if self.train_seconds > 0:
            text += f", then a {self.preset}-shaped model trained for {self.train_seconds:g} s with each"
        return seconds, text

    def to_dict(self) -> dict[str, Any]:
        """Everything but the text itself (kept as the run's corpus.txt): its length instead."""
        data = {f.name: plain(getattr(self, f.name)) for f in fields(self) if f.name != "text"}
        data["text_chars"] = None if self.text is None else len(self.text)
        return data


def _check_tokenizer_name(name: Any) -> None:
    """The lab's choice among the names ``parse_tokenizer_name`` reads: char, byte, gpt2, and
    BPE sizes a text of a few hundred thousand characters can train in seconds."""
    try:
        parsed = parse_tokenizer_name(name)
    except TokenizerError:
        parsed = None
    if parsed is None or not (name in ("char", "byte", "gpt2") or (parsed.kind == "bpe" and 257 <= parsed.vocab_size <= 8192)):
        raise LabError(f"tokenizer {name!r}: use char, byte, gpt2 or bpe-N with N from 257 to 8192 (e.g. bpe-512)")


@dataclass(frozen=True)
class TokenizationResult:
    params: dict[str, Any]
    corpus: str
    chars: int
    bytes: int
    block_size: int
    n_embd: int
    rows: list[dict[str, Any]]  # one per tokenizer (see ``tokenizer_row``)
    elapsed: float
    experiment: str = "tokenization"
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)  # never saved


def _bpe_size(name: str) -> int | None:
    """The vocabulary size a bpe-N name asks for; None for every other name."""
    parsed = parse_tokenizer_name(name)
    return parsed.vocab_size if parsed.kind == "bpe" else None


def bits_per_byte(nats_per_token: float, tokens: int, n_bytes: int) -> float:
    """Convert a loss in nats per token to bits per byte of text, so that models with different
    tokenizers compare fairly: a token covering 4 bytes may cost 4× as much as a 1-byte token.

    bits/byte = (nats/token) × (tokens / bytes) / ln 2

    >>> bits_per_byte(math.log(256), tokens=10, n_bytes=10)   # uniform over bytes: 8 bits each
    8.0
    >>> round(bits_per_byte(2.0, tokens=25, n_bytes=100), 4)  # 4 bytes per token
    0.7213
    """
    if tokens < 1 or n_bytes < 1:
        raise LabError(f"need at least one token and one byte, got tokens={tokens}, n_bytes={n_bytes}")
    return nats_per_token * tokens / n_bytes / math.log(2)


def tokenizer_row(name: str, tokenizer: Tokenizer, text: str, block_size: int, model_config: GPTConfig) -> dict[str, Any]:
    """How one tokenizer encodes ``text``: tokens per character, characters a block covers,
    and what its vocabulary costs in embedding parameters (shared with the head: tied)."""
    tokens = len(tokenizer.encode(text))
    config = model_config.replace(vocab_size=tokenizer.vocab_size, block_size=block_size)
    embedding = tokenizer.vocab_size * config.n_embd
    return {
        "tokenizer": name, "vocab_size": tokenizer.vocab_size, "tokens": tokens,
        "tokens_per_char": rounded(tokens / len(text)), "chars_per_block": rounded(block_size * len(text) / tokens),
        "embedding_params": embedding, "total_params": total_parameters(config),
        "embedding_share": rounded(embedding / total_parameters(config)), "error": None,
    }  # fmt: skip


def val_bytes(tokenizer: Tokenizer, data: corpora.TokenData) -> int:
    """Bytes of text the validation split's tokens stand for (counted token by token, so a split
    that starts inside a multi-byte character is still counted exactly)."""
    return sum(len(tokenizer.token_bytes(i)) for i in data.val.tolist())


def _train_for_time(params: TokenizationParams, name: str, tokenizer: Tokenizer, text: str, reporter: Reporter) -> tuple[dict[str, Any], GPT | None]:
    """Train a fresh model with this tokenizer for ``train_seconds``; its val loss per byte."""
    data = corpora.prepare(text, tokenizer, cache=False)
    if params.block_size > data.max_block_size:
        return {"train_note": f"not trained: the text is too short for block_size={params.block_size} with {name}"}, None
    model = GPT(preset(params.preset, vocab_size=tokenizer.vocab_size, block_size=params.block_size), seed=params.seed)
    config = TrainConfig(max_steps=None, max_seconds=params.train_seconds, batch_size=params.batch_size,
                         learning_rate=params.learning_rate, warmup_steps=20, eval_interval=10**9,
                         eval_batches=params.eval_batches, log_interval=10, checkpoint_interval=0,
                         max_snapshots=0, seed=params.seed, compile=LAB_COMPILE)  # fmt: skip
    run = train_variant(name, model, data, config, reporter)
    nats = run.final_loss  # the trainer's final evaluation: eval_batches validation batches
    if nats is None:
        return {"steps": run.end["step"], "train_note": "diverged (the loss became NaN)"}, model
    bpb = bits_per_byte(nats, len(data.val), val_bytes(tokenizer, data))
    return {"steps": run.end["step"], "val_nats_per_token": rounded(nats), "bits_per_byte": rounded(bpb),
            "bits_per_char": rounded(bpb * len(text.encode("utf-8")) / len(text))}, model  # fmt: skip


def _tokenization_text(params: TokenizationParams) -> tuple[str, str]:
    text = params.text if params.text is not None else corpora.load_corpus(params.corpus)
    label = "your text" if params.text is not None else params.corpus
    return text[:MAX_TOKENIZE_CHARS], label


def run(
    params: TokenizationParams, progress: ProgressFn | None = None, stop: threading.Event | None = None
) -> TokenizationResult:
    """Measure every tokenizer on the text, then (optionally) train one model per tokenizer for
    the same time and compare validation loss in bits per byte."""
    started = time.perf_counter()
    reporter = Reporter(progress, stop, len(params.tokenizers) * (1 + params.train_seconds))
    text, label = _tokenization_text(params)
    model_config = preset(params.preset)
    rows, kept = [], None
    for name in params.tokenizers:
        reporter.begin(f"{name}: building and measuring", weight=1)
        try:
            tokenizer = get_tokenizer(name, corpus_text=text)
            row = tokenizer_row(name, tokenizer, text, params.block_size, model_config)
        except TokenizerError as exc:
            rows.append({"tokenizer": name, "error": str(exc)})
            continue
        if params.train_seconds > 0:
            reporter.begin(f"{name}: training for {params.train_seconds:g} s", weight=params.train_seconds)
            measured, model = _train_for_time(params, name, tokenizer, text, reporter)
            row.update(measured)
            kept = kept or (model and (model, tokenizer, name))
        rows.append(row)
    result = TokenizationResult(
        params=params.to_dict(), corpus=label, chars=len(text), bytes=len(text.encode("utf-8")),
        block_size=params.block_size, n_embd=model_config.n_embd, rows=rows,
        elapsed=rounded(time.perf_counter() - started),
    )  # fmt: skip
    return _tokenization_artifacts(result, params, text, kept)


def _tokenization_artifacts(result: TokenizationResult, params: TokenizationParams, text: str, kept: Any) -> TokenizationResult:
    """A model to keep with the saved result: the first trained one, else an untrained char model."""
    if not kept:
        tokenizer = CharTokenizer.from_text(text)
        config = preset(params.preset, vocab_size=tokenizer.vocab_size, block_size=params.block_size)
        kept = (GPT(config, seed=params.seed), tokenizer, "char")
    model, tokenizer, name = kept
    config = TrainConfig(max_steps=None, max_seconds=max(params.train_seconds, 0.001), seed=params.seed,
                         compile=LAB_COMPILE)
    corpus = params.corpus if params.text is None else "your text"
    return replace(result, artifacts=Artifacts(model, tokenizer, corpus, name, config, [], params.text))


def reading(result: TokenizationResult) -> str:
    ok = [r for r in result.rows if r.get("error") is None]
    if not ok:
        return "No tokenizer could encode this text: " + "; ".join(f"{r['tokenizer']}: {r['error']}" for r in result.rows)
    per_char = ", ".join(f"{r['tokenizer']} {r['tokens_per_char']:.2f}" for r in ok)
    covers = ", ".join(f"{r['tokenizer']} {r['chars_per_block']:.0f}" for r in ok)
    emb = ", ".join(f"{r['tokenizer']} {r['embedding_params']:,} ({100 * r['embedding_share']:.0f}%)" for r in ok)
    size = f"its first {result.chars:,} characters" if result.chars >= MAX_TOKENIZE_CHARS else f"{result.chars:,} characters"
    text = (f"On {result.corpus} ({size}), tokens per character: {per_char}. "
            f"A {result.block_size}-token block therefore covers this many characters: {covers}. "
            f"The embedding table costs (share of the model's parameters): {emb}.")  # fmt: skip
    trained = [r for r in ok if r.get("bits_per_byte") is not None]
    if trained:
        seconds = result.params.get("train_seconds", 0)
        bpb = ", ".join(f"{r['tokenizer']} {r['bits_per_byte']:.3f}" for r in trained)
        best = min(trained, key=lambda r: r["bits_per_byte"])
        text += f" After {seconds:g} s of training each, validation bits per byte: {bpb} — lowest: {best['tokenizer']}."
        if len(trained) > 1:
            text += single_measurement(result.params.get("eval_batches"))
    short = [r for r in ok if _bpe_size(r["tokenizer"]) and r["vocab_size"] < _bpe_size(r["tokenizer"])]
    for r in short:
        text += f" {r['tokenizer']} stopped at {r['vocab_size']} tokens: every word of this text was already a single token."
    failed = [r for r in result.rows if r.get("error")]
    if failed:
        text += " Left out: " + "; ".join(f"{r['tokenizer']} ({_first_line(r['error'])})" for r in failed) + "."
    return text


def _first_line(message: str, limit: int = 160) -> str:
    line = message.strip().splitlines()[0].rstrip(".") if message.strip() else "no reason given"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def figures(result: TokenizationResult) -> list[go.Figure]:
    ok = [r for r in result.rows if r.get("error") is None]
    names = [r["tokenizer"] for r in ok]
    panels = [("tokens per character", "tokens_per_char"), (f"characters per {result.block_size}-token block", "chars_per_block"),
              ("embedding parameters", "embedding_params"), ("val bits per byte (lower is better)", "bits_per_byte")]  # fmt: skip
    fig = make_subplots(2, 2, subplot_titles=[title for title, _ in panels], vertical_spacing=0.18)
    for i, (title, key) in enumerate(panels):
        values = [r.get(key) for r in ok]
        fig.add_trace(go.Bar(x=names, y=values, name=title, marker_color=PALETTE[i], showlegend=False,
                             hovertemplate="%{x}: %{y:.4g}<extra></extra>"), row=i // 2 + 1, col=i % 2 + 1)  # fmt: skip
    return [base_layout(fig, "tokenizers side by side on the same text", height=620)]


EXPERIMENT = ExperimentSpec(
    name="tokenization",
    title="Tokenization trade-offs",
    claim="Bigger vocabularies (BPE) make sequences shorter and contexts longer, at the price of a bigger embedding table; byte-level models trade vocabulary for sequence length.",
    params_type=TokenizationParams,
    result_type=TokenizationResult,
    run=run,
    reading=reading,
    figures=figures,
    tiny=dict(tokenizers=("char", "byte", "bpe-300", "gpt2"), train_seconds=0.5, block_size=16, batch_size=4, eval_batches=2),
)  # fmt: skip
