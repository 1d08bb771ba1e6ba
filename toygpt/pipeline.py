"""The training pipeline every entry point shares, and what a run will cost before it starts.

``TrainSpec`` says what to train (corpus, tokenizer, model shape, training settings; a new run,
fine-tuning from a run or pretrained weights, or resuming one); ``build_training(spec)`` turns it
into a ready ``Trainer`` and its ``RunWriter``; ``run_training`` runs it and returns the end
event. The CLI calls these directly, a job thread calls them, and a worker process
(``toygpt.worker``) calls them for the dashboard, so there is one way to train.

Before anything is built, ``memory_parts``/``estimated_memory`` (bytes by part) and
``estimated_seconds`` (seconds by part) cost a spec, so a job can be refused with the number
and the limit. ``curve_rows`` turns trainer events into loss-curve rows.
"""

from __future__ import annotations

import math
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from toygpt import data as corpora
from toygpt.distributed import PLAIN, DistributedContext
from toygpt.estimates import estimate
from toygpt.limits import JOB_SHARE, check_memory
from toygpt.model import GPT, GPTConfig, preset
from toygpt.resume import resume
from toygpt.runs import Run, create_run, open_run
from toygpt.status import Status
from toygpt.stopping import StopRequested, stop_scope
from toygpt.tokenizers import TokenizerError, parse_tokenizer_name
from toygpt.train import Event, TrainConfig
from toygpt.trainer import Trainer

MAX_TAGS, MAX_TAG_CHARS = 20, 40


@dataclass(frozen=True)
class TrainSpec:
    """Everything needed to start a run, as plain values (so a page can build and show it).

    ``model`` defaults to the ``small`` preset; its ``vocab_size`` is taken from the tokenizer.
    ``train`` defaults to ``TrainConfig()``. With ``init_from`` (a run id) the model and the
    tokenizer come from that run (fine-tuning); with ``resume`` the whole run continues, and
    ``train=None`` keeps its saved config. ``corpus_text`` trains on your own text (``corpus``
    is then only its label).
    """

    corpus: str = "shakespeare"
    tokenizer: str = "char"
    model: GPTConfig | None = None
    train: TrainConfig | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()
    init_from: str | None = None
    resume: str | None = None
    corpus_text: str | None = None
    corpus_seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.tags, list):
            object.__setattr__(self, "tags", tuple(self.tags))
        if not isinstance(self.tags, tuple) or len(self.tags) > MAX_TAGS:
            raise ValueError(f"tags must be a tuple of at most {MAX_TAGS} short strings")
        for tag in self.tags:
            if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG_CHARS:
                raise ValueError(f"tag {tag!r} must be non-empty text of at most {MAX_TAG_CHARS} characters")
        if self.init_from and self.resume:
            raise ValueError("give init_from (fine-tune into a new run) or resume (continue a run), not both")
        if self.corpus_text is not None and (not isinstance(self.corpus_text, str) or not self.corpus_text.strip()):
            raise ValueError("corpus_text is empty; give some text, or leave it None to use a named corpus")
        if self.model is not None and not isinstance(self.model, GPTConfig):
            raise ValueError("model must be a GPTConfig, e.g. preset('small')")
        if self.train is not None and not isinstance(self.train, TrainConfig):
            raise ValueError("train must be a TrainConfig")

    @property
    def train_config(self) -> TrainConfig:
        return self.train or TrainConfig()

    @property
    def model_config(self) -> GPTConfig:
        return self.model or preset("small")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (how a job's own process receives it; ``from_dict`` reads it back)."""
        return {
            "corpus": self.corpus, "tokenizer": self.tokenizer, "model": self.model.to_dict() if self.model else None,
            "train": self.train.to_dict() if self.train else None, "name": self.name, "tags": list(self.tags),
            "init_from": self.init_from, "resume": self.resume, "corpus_text": self.corpus_text,
            "corpus_seed": self.corpus_seed,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSpec:
        model, train = data.get("model"), data.get("train")
        return cls(**{**data, "model": GPTConfig.from_dict(model) if model is not None else None,
                      "train": TrainConfig.from_dict(train) if train is not None else None})  # fmt: skip


# --------------------------------------------------------------------------------------------
# From a spec to a ready trainer
# --------------------------------------------------------------------------------------------


def corpus_text_of(spec: TrainSpec) -> str:
    return spec.corpus_text if spec.corpus_text is not None else corpora.load_corpus(spec.corpus, spec.corpus_seed)


def _tokenizer_for(spec: TrainSpec, text: str, dist: DistributedContext) -> Any:
    """Build the tokenizer on rank 0 only (training BPE can take a while) and share it as JSON."""
    from toygpt.tokenizers import get_tokenizer, tokenizer_from_dict

    tokenizer = get_tokenizer(spec.tokenizer, corpus_text=text) if dist.is_main else None
    shared = dist.broadcast_json(tokenizer.to_dict() if tokenizer else None)
    return tokenizer or tokenizer_from_dict(shared)


def _fine_tune_source(run_id: str, text: str) -> tuple[GPT, Any]:
    """The model and tokenizer of run ``run_id`` (or of pretrained weights ``pretrained:NAME``),
    after checking the tokenizer can encode the new text (a char vocabulary lacks characters it
    never saw)."""
    from toygpt.pretrained import PRETRAINED_PREFIX, load_pretrained_reference

    if run_id.startswith(PRETRAINED_PREFIX):
        return load_pretrained_reference(run_id)
    source = open_run(run_id)
    tokenizer = source.tokenizer()
    try:
        tokenizer.encode(text)
    except ValueError as exc:
        raise ValueError(
            f"run {run_id}'s tokenizer cannot encode this corpus: {exc} — fine-tune on text made "
            "of the same characters, or train a new model from scratch"
        ) from None
    return source.load_model("best").model, tokenizer


def build_training(
    spec: TrainSpec,
    on_event: Any = None,
    stop_event: threading.Event | None = None,
    dist: DistributedContext = PLAIN,
) -> tuple[Trainer, Run | None]:
    """A ``Trainer`` ready to ``run()`` and, on rank 0, the ``Run`` it writes to."""
    if spec.resume:
        return _build_resume(spec, on_event, stop_event, dist)
    text = corpus_text_of(spec)
    config = spec.train_config
    if spec.init_from:
        check_job_memory(source_config(spec.init_from), config, text, f"fine-tuning {spec.init_from}")
        model, tokenizer = _fine_tune_source(spec.init_from, text)
    else:
        tokenizer = _tokenizer_for(spec, text, dist)
        model_config = spec.model_config.replace(vocab_size=tokenizer.vocab_size)
        check_job_memory(model_config, config, text, "this run")  # before the model exists
    token_data = corpora.prepare(text, tokenizer)
    if not spec.init_from:  # the run records where its samples start: a context its data has
        start = corpora.start_token_for(token_data, tokenizer)
        model = GPT(model_config.replace(bos_token_id=start), seed=config.seed)
    token_data.check_block_size(config.block_size or model.config.block_size)
    run = None
    if dist.is_main:
        run = create_run(
            name=spec.name, corpus=spec.corpus, tokenizer=tokenizer, model=model,
            tokenizer_spec=getattr(tokenizer, "name", spec.tokenizer) if spec.init_from else spec.tokenizer,
            train_config=config, tags=spec.tags, corpus_seed=spec.corpus_seed,
            corpus_text=spec.corpus_text, init_from=spec.init_from,
        )  # fmt: skip
    try:
        trainer = Trainer(model, token_data, config, tokenizer=tokenizer, on_event=on_event,
                          stop_event=stop_event, saver=run, dist=dist)  # fmt: skip
    except BaseException:
        if run is not None:  # a config the trainer refuses leaves no half-made run behind
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    return trainer, run


def _build_resume(
    spec: TrainSpec, on_event: Any, stop_event: threading.Event | None, dist: DistributedContext
) -> tuple[Trainer, Run | None]:
    def check(model_config: GPTConfig, config: TrainConfig, text: str) -> None:
        check_job_memory(model_config, config, text, f"resuming {spec.resume}")

    resumed = resume(spec.resume, spec.train, write=dist.is_main, check=check)
    trainer = Trainer(resumed.model, resumed.data, resumed.plan.config, tokenizer=resumed.tokenizer,
                      on_event=on_event, stop_event=stop_event, saver=resumed.run, state=resumed.state,
                      optimizer_state=resumed.optimizer_state, dist=dist)  # fmt: skip
    return trainer, resumed.run


def run_training(
    spec: TrainSpec,
    on_event: Any = None,
    stop_event: threading.Event | None = None,
    dist: DistributedContext = PLAIN,
    on_run: Any = None,
    prepare_grace: float = 0.0,
) -> Event:
    """Build and run; the run is marked failed if training raises. ``on_run(run)`` is called
    once the run folder exists (the job uses it to learn the run id early).

    Stop (``stop_event``) is honoured while the data is prepared too (building a BPE
    tokenizer, encoding the corpus: ``toygpt.stopping``), ``prepare_grace`` seconds after it
    is first seen there; stopped then, no run is made and the "end" event says so."""
    try:
        with stop_scope(stop_event, grace=prepare_grace):
            trainer, run = build_training(spec, on_event, stop_event, dist)
    except StopRequested:
        return stopped_before_training()
    if on_run is not None and run is not None:
        on_run(run)
    try:
        return trainer.run()
    except BaseException as exc:
        if run is not None:
            run.mark_failed(f"{type(exc).__name__}: {exc}")
        raise


def stopped_before_training() -> Event:
    """The "end" event of a run stopped while its data was being prepared (nothing saved)."""
    return {
        "type": "end", "status": Status.STOPPED, "message": "stopped while preparing the data; nothing was saved",
        "step": 0, "elapsed": 0.0, "tokens_seen": 0, "val_loss": None, "best_val_loss": None, "train_loss": None,
    }  # fmt: skip





def curve_rows(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Trainer events → rows for ``toygpt.viz.loss_curves_figure``: ``{"step", "train_loss"}``
    per logged step and ``{"step", "val_loss"}`` per evaluation (non-finite values dropped,
    six significant digits: the rows are also saved as JSON, which has no NaN)."""
    rows = []
    for event in events:
        key, source = {"step": ("train_loss", "loss"), "eval": ("val_loss", "val_loss")}.get(event.get("type"), (None, None))
        value = event.get(source) if source else None
        if key and isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            rows.append({"step": int(event["step"]), key: float(f"{value:.6g}")})
    return rows




# --------------------------------------------------------------------------------------------
# What a spec will cost, before anything is built
# --------------------------------------------------------------------------------------------



def job_memory(model_config: GPTConfig, config: TrainConfig, text: str | None = None) -> int:
    """Bytes a training run needs: weights, gradients, AdamW and activations
    (``toygpt.estimates.estimate``), plus the token ids of its corpus (int64, at most one per UTF-8
    byte) when the text is known."""
    return sum(job_memory_parts(model_config, config, text).values())


def job_memory_parts(model_config: GPTConfig, config: TrainConfig, text: str | None = None) -> dict[str, int]:
    """``job_memory`` by part: weights, gradients, adam, activations, token ids."""
    parts = {part: int(size) for part, size in estimate(model_config, config)["memory_bytes"].items()}
    parts["token ids"] = 8 * len(text.encode("utf-8", "replace")) if text is not None else 0
    return parts


def source_config(run_id: str) -> GPTConfig:
    """The model shape of run ``run_id``, or of pretrained weights ``pretrained:NAME``."""
    from toygpt.pretrained import PRETRAINED_PREFIX, pretrained_reference_config

    if run_id.startswith(PRETRAINED_PREFIX):
        return pretrained_reference_config(run_id)
    return open_run(run_id).model_config()


def check_job_memory(model_config: GPTConfig, config: TrainConfig, text: str | None, what: str) -> None:
    """Refuse a run that needs more than a training job's share of the server's memory budget."""
    check_memory(job_memory(model_config, config, text), what, JOB_SHARE)


def estimated_memory(spec: TrainSpec) -> int:
    """Bytes a spec's run needs (``job_memory``), before anything is built. The vocabulary is
    the real one where it can be known cheaply: a fine-tuned or resumed run's model (or the
    pretrained weights it starts from), the distinct characters of your own text for the char
    tokenizer (0.75 MB of Chinese has ~68,000, not the 65 of Shakespeare), the size a tokenizer
    name states (bpe-N, gpt2)."""
    return sum(memory_parts(spec).values())


def memory_parts(spec: TrainSpec, text: str | None = None) -> dict[str, int]:
    """``estimated_memory`` by part (``job_memory_parts``): weights, gradients and AdamW's
    moments (of the parameters that learn), activations, token ids (of ``text`` when given,
    else of your own text when the spec has it)."""
    text = spec.corpus_text if text is None else text
    if spec.resume or spec.init_from:
        model_config = source_config(spec.resume or spec.init_from)
        config = spec.train or (open_run(spec.resume).train_config() if spec.resume else TrainConfig())
    else:
        model_config, config = spec.model_config, spec.train_config
        try:
            vocab = parse_tokenizer_name(spec.tokenizer).vocab_size  # None: char, or a saved file
        except TokenizerError:
            vocab = None  # an unknown name fails where the tokenizer is built, with its message
        if spec.tokenizer == "char" and text is not None:
            vocab = len(set(text))  # one token per distinct character
        if vocab:
            model_config = model_config.replace(vocab_size=vocab)
    return job_memory_parts(model_config, config, text)


MAX_JOB_SECONDS = 2 * 3600.0  # the longest job this server starts: one job holds the only slot
SECONDS_PER_SAMPLED_TOKEN = 5e-4  # generation's per-token overhead here (~2,000 tokens/s, KV cache)
BPE_SECONDS_PER_BYTE_MERGE = 9e-8  # a merge rescans each chunk holding its pair (bench/bpe_train.py)


def estimated_seconds(spec: TrainSpec) -> dict[str, float]:
    """Rough seconds of each part of a run before it starts, from the configs alone
    (``toygpt.estimates.estimate``'s assumed throughput): training steps, evaluations (two splits of
    ``eval_batches`` forward passes each), samples (``sample_tokens`` each) and, for ``bpe-N``
    on your own text, learning the merges (each rescans the longest pre-tokenized chunk: a text
    without spaces is one chunk)."""
    model_config, config = spec.model_config, spec.train_config
    if spec.resume or spec.init_from:
        model_config = source_config(spec.resume or spec.init_from)
        config = spec.train or (open_run(spec.resume).train_config() if spec.resume else TrainConfig())
    est = estimate(model_config, config)
    steps = est["steps"] or 0
    forward = est["seconds_per_step"] / 3  # training is forward + backward ≈ 3 forwards
    evals = steps // config.eval_interval + 2
    samples = steps // config.sample_interval if config.sample_interval else 0
    parts = {
        "training": float(est["seconds"]),
        "evaluation": evals * 2 * config.eval_batches * forward,
        "sampling": samples * config.sample_tokens * SECONDS_PER_SAMPLED_TOKEN,
        "tokenizer": 0.0,
    }
    name = parse_tokenizer_name(spec.tokenizer) if not (spec.resume or spec.init_from) else None
    if name is not None and name.kind == "bpe" and spec.corpus_text is not None:
        from toygpt.tokenizers.bpe import pre_tokenize

        longest = max((len(c.encode("utf-8")) for c in pre_tokenize(spec.corpus_text)), default=0)
        parts["tokenizer"] = (name.vocab_size or 0) * longest * BPE_SECONDS_PER_BYTE_MERGE
    return parts
