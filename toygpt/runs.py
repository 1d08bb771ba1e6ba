"""Runs: one folder per training run, so a run can be watched, resumed, opened and shared.

    $TOYGPT_RUNS_DIR/<run id>/        (default ./runs)
      run.json              what the run is: name, corpus, tokenizer, configs, status, best val loss
      config.json           model config + step + metrics (toygpt.checkpoint)
      tokenizer.json        the tokenizer, as its to_dict()
      model.safetensors     the latest weights (what resume continues from)
      best.safetensors      the weights with the lowest val loss so far
      optimizer.safetensors AdamW's moments + the trainer's counters (safetensors, never pickle)
      metrics.jsonl         one event per line (step, eval, log, end), appended as they happen
      samples.jsonl         text sampled during training
      snapshots/step-0000200.safetensors   weights at log-spaced steps, stored as int8
      corpus.txt            the training text, only when it was your own (so resume can find it)

Run ids are slugs made here (``shakespeare-char-20250101-120000`` or a sanitised name); nothing
a user types ever becomes a path by itself. The shipped demo model (``checkpoints/
shakespeare-char``) appears as the read-only run ``DEMO_RUN``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import tempfile
import time
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from toygpt.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    StagedFiles,
    check_tokenizer_fits,
    check_weights_fit,
    copy_weights,
    empty_model,
    json_bytes,
    load_checkpoint,
    load_tensors,
    model_tensors,
    read_json,
    read_meta,
    read_model_config,
    recover_commit,
    save_checkpoint,
    save_tensors,
    write_json_atomic,
)
from toygpt.limits import LOAD_SHARE, MAX_ROW_BYTES, check_json_shape, check_size, memory_budget
from toygpt.model import GPT, GPTConfig
from toygpt.run_schema import check_event_row, check_run_info
from toygpt.status import HAS_MODEL, Status
from toygpt.train import Event, optimizer_tensors
from toygpt.trainer import Trainer, TrainState

DEMO_RUN = "demo-shakespeare-char"
RUN_FILE, LATEST, BEST, OPTIMIZER = "run.json", "model.safetensors", "best.safetensors", "optimizer.safetensors"
METRICS, SAMPLES, CORPUS, SNAPSHOTS = "metrics.jsonl", "samples.jsonl", "corpus.txt", "snapshots"
MAX_EVAL_BATCHES = 10_000  # batches of 12 for Run.evaluate: 2.4 M windows is plenty for a mean
RUN_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?")
MAX_IMPORT_BYTES = 512 * 2**20  # a run zip above this (unpacked) is refused
# A run whose weights are only a by-product of numbers kept beside them (e.g. the last of 8 depth
# variants of a lab experiment): not a model to pick. Single-example learning keeps a real model.
RESULT_ONLY_TAG = "lab:result-only"


class RunError(ValueError):
    """A run cannot be found, written or imported; the message says why and what to do."""


# --------------------------------------------------------------------------------------------
# Where runs live, and their names
# --------------------------------------------------------------------------------------------


def runs_dir() -> Path:
    """``$TOYGPT_RUNS_DIR``, default ``./runs``."""
    return Path(os.environ.get("TOYGPT_RUNS_DIR") or "runs").expanduser()


def demo_run_dir() -> Path:
    """The shipped demo checkpoint (read-only); ``$TOYGPT_DEMO_DIR`` points elsewhere (a test
    that wants an empty run list sets it to a folder that does not exist)."""
    explicit = os.environ.get("TOYGPT_DEMO_DIR")
    if explicit:
        return Path(explicit).expanduser().resolve()
    return Path(__file__).resolve().parents[1] / "checkpoints" / "shakespeare-char"


def slugify(text: str, max_len: int = 60) -> str:
    """A safe folder name from anything a user types: ASCII letters, digits and dashes only.

    >>> slugify("  My Run: ../../etc/passwd ")
    'my-run-etc-passwd'
    >>> slugify("Ünïcödé ✨")
    'unicode'
    """
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_len].strip("-")


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise RunError(f"{run_id!r} is not a run id (lowercase letters, digits and dashes); see `python -m toygpt runs`")
    return run_id


def _unique_folder(base: str) -> Path:
    """Create and return runs/<base> (or <base>-2, -3, ...): mkdir is atomic, so two runs
    started at once never share a folder and no existing run is ever overwritten."""
    root = runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        candidate = base if n == 1 else f"{base[:70]}-{n}"
        if candidate == DEMO_RUN:
            continue
        try:
            (root / candidate).mkdir()
        except FileExistsError:
            continue
        return root / candidate
    raise RunError(f"too many runs named {base!r}; pick another name")


def new_run_id_base(name: str | None, corpus: str, tokenizer: str) -> str:
    if name and slugify(name):
        return slugify(name)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{slugify(corpus, 30) or 'text'}-{slugify(tokenizer, 20) or 'tok'}-{stamp}"


def clean_name(name: str | None) -> str | None:
    """A display name: printable characters only, at most 100 of them."""
    if name is None:
        return None
    kept = "".join(ch for ch in str(name) if unicodedata.category(ch)[0] != "C")
    return kept.strip()[:100] or None


# --------------------------------------------------------------------------------------------
# Snapshots: int8 weights (a quarter of float32) at log-spaced steps
# --------------------------------------------------------------------------------------------


def quantize_rows(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: ``w ≈ q * scale`` with ``q`` in [-127, 127], one scale per row.

    >>> q, s = quantize_rows(torch.tensor([[0.5, -1.0], [2.0, 0.0]]))
    >>> q.tolist(), s.flatten().tolist()
    ([[64, -127], [127, 0]], [0.007874015718698502, 0.015748031437397003])
    """
    rows = tensor.detach().float().reshape(tensor.shape[0], -1)
    scale = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
    return torch.round(rows / scale).clamp(-127, 127).to(torch.int8), scale


def snapshot_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """Matrices as int8 + per-row scales; vectors (biases, LayerNorm) stay float32 (tiny)."""
    tensors = {}
    for name, tensor in model_tensors(model).items():
        if tensor.dim() >= 2:
            tensors[f"{name}.int8"], tensors[f"{name}.scale"] = quantize_rows(tensor)
        else:
            tensors[name] = tensor.detach().float().cpu()
    return tensors


def dequantize(tensors: dict[str, torch.Tensor], like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Float32 weights back from ``snapshot_tensors``' output, shaped like the model's."""
    weights = {}
    for name, target in like.items():
        if f"{name}.int8" in tensors and f"{name}.scale" in tensors:
            q, scale = tensors[f"{name}.int8"], tensors[f"{name}.scale"]
            if q.dtype != torch.int8 or q.numel() != target.numel() or scale.shape != (target.shape[0], 1):
                raise CheckpointError(f"snapshot tensor {name} does not fit the model's {tuple(target.shape)}")
            weights[name] = (q.float() * scale.float()).reshape(target.shape)
        elif name in tensors:
            weights[name] = tensors[name]
    return weights


def snapshot_name(step: int) -> str:
    return f"step-{step:07d}.safetensors"


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _finite(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


def inside_run(message: str, folder: Path, label: str) -> str:
    """``message`` with the server's path of ``folder`` (and of the runs folder) taken out: a
    file is named by where it sits inside the run (``config.json: ...``), never by the disk."""
    for prefix in {str(folder), str(folder.resolve())}:
        message = message.replace(prefix + os.sep, "").replace(prefix, label)
    for prefix in {str(runs_dir()), str(runs_dir().resolve())}:
        message = message.replace(prefix + os.sep, "").replace(prefix, "the runs folder")
    return message


def without_server_paths(message: str) -> str:
    """``message`` with the runs folder's and the data folder's place on disk taken out (a job's
    error is shown to every visitor of a shared server)."""
    from toygpt.data import data_dir

    for folder, label in ((runs_dir(), "runs"), (data_dir(), "data")):
        for prefix in {str(folder), str(folder.resolve())}:
            message = message.replace(prefix + os.sep, f"{label}/").replace(prefix, f"the {label} folder")
    return message


@contextlib.contextmanager
def reading(folder: Path, label: str) -> Iterator[None]:
    """Turn whatever reading a run's files raises (bad JSON, wrong types, NaN, a file too big,
    nesting that exhausts the parser) into a ``RunError`` (or ``CheckpointError``) whose
    message names the file inside the run."""
    try:
        yield
    except CheckpointError as exc:
        raise CheckpointError(inside_run(str(exc), folder, label)) from None
    except (ValueError, TypeError, KeyError, RecursionError, OSError, UnicodeDecodeError) as exc:
        text = str(exc) if isinstance(exc, ValueError | OSError) else f"{type(exc).__name__}: {exc}"
        raise RunError(inside_run(text, folder, label)) from None


class Run:
    """A run folder. As a ``RunSaver`` it stores what the trainer hands it; the reading side
    (``info``, ``load_model``, ``read_metrics``, snapshots) serves the explorer pages."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = Path(path)
        self.id = DEMO_RUN if read_only and self.path == demo_run_dir() else self.path.name
        self.read_only = read_only

    def __repr__(self) -> str:
        return f"Run({self.id!r})"

    # ---- run.json ------------------------------------------------------------------------

    def _reading(self) -> contextlib.AbstractContextManager[None]:
        return reading(self.path, f"run {self.id}")

    def info(self) -> dict[str, Any]:
        """run.json, checked field by field (``toygpt.run_schema``); ``RunError`` if it fails."""
        with self._reading():
            return check_run_info(read_json(self.path / RUN_FILE), RUN_FILE)

    def update_info(self, **changes: Any) -> dict[str, Any]:
        self._writable()
        info = {**self.info(), **{k: _finite(v) for k, v in changes.items()}, "updated": _now()}
        write_json_atomic(self.path / RUN_FILE, info)
        return info

    def recover(self) -> str | None:
        """Finish or drop a save that a crash interrupted (``toygpt.checkpoint.recover_commit``);
        call it only when no process is training this run (resume does)."""
        self._writable()
        with self._reading():
            return recover_commit(self.path, (SNAPSHOTS,))

    def _writable(self) -> None:
        if self.read_only:
            raise RunError(f"run {self.id} is read-only (the shipped demo); fine-tune it into a new run instead")

    def model_config(self) -> GPTConfig:
        with self._reading():
            return read_model_config(self.path, read_meta(self.path))

    def train_config(self) -> Any:
        from toygpt.train import TrainConfig

        return TrainConfig.from_dict(self.info()["train_config"])  # checked by info()

    def tokenizer(self) -> Any:
        """The run's tokenizer, checked to fit its model (no id beyond the model's vocabulary)."""
        from toygpt.tokenizers import tokenizer_from_dict

        config = self.model_config()
        with self._reading():
            data = read_json(self.path / "tokenizer.json")
            return check_tokenizer_fits(data, config, "tokenizer.json") or tokenizer_from_dict(data)

    def corpus_text(self) -> str:
        """The text this run trained on: its own copy (your text) or the named corpus."""
        from toygpt import data

        with self._reading():
            if (self.path / CORPUS).exists():
                check_size(CORPUS, (self.path / CORPUS).stat().st_size)
                return data.read_user_text(self.path / CORPUS)
            info = self.info()
            return data.load_corpus(str(info.get("corpus")), int(info.get("corpus_seed") or 0))

    def evaluate(self, which: str = "latest", batches: int = 200, seed: int = 1234) -> dict[str, float]:
        """Train and val loss of the run's model on ``batches`` random batches of its own corpus
        (batch 12, the model's block_size; float32) — the figure the demo's README quotes."""
        from toygpt import data
        from toygpt.train import estimate_loss

        if isinstance(batches, bool) or not isinstance(batches, int) or not 1 <= batches <= MAX_EVAL_BATCHES:
            raise RunError(f"batches={batches!r} must be a whole number from 1 to {MAX_EVAL_BATCHES:,}")
        model = self.load_model(which).model
        token_data = data.prepare(self.corpus_text(), self.tokenizer())
        return estimate_loss(model, token_data, 12, model.config.block_size, batches, seed)

    # ---- saving (the RunSaver protocol of toygpt.train) ------------------------------------

    def save_latest(self, trainer: Trainer) -> None:
        """Weights, optimizer state with the trainer's counters, config.json and run.json of one
        step: everything resume needs, committed as one unit (``StagedFiles``' journal), so a
        kill at any moment leaves this step's set or the previous one's, never a mix."""
        self._writable()
        state = trainer.state
        meta = {"trainer_state": json.dumps(state.to_dict(), allow_nan=False)}
        metrics = {"val_loss": state.last_val_loss, "best_val_loss": state.best_val_loss, "train_loss": state.last_train_loss}
        changes = {"step": state.step, "best_val_loss": _finite(state.best_val_loss), "elapsed": state.elapsed}
        info = {**self.info(), **changes, "updated": _now()}
        with StagedFiles() as files:
            save_tensors(self.path / OPTIMIZER, optimizer_tensors(trainer.model, trainer.optimizer), meta, staged=files)
            save_checkpoint(self.path, trainer.model, step=state.step, metrics=metrics, extra={"run_id": self.id}, staged=files)
            files.write(self.path / RUN_FILE, lambda temp: temp.write_bytes(json_bytes(info, RUN_FILE)))

    def save_best(self, trainer: Trainer) -> None:
        self._writable()
        state = trainer.state
        meta = {"step": str(state.step), "val_loss": repr(state.best_val_loss)}
        save_tensors(self.path / BEST, model_tensors(trainer.model), meta)
        self.update_info(best_val_loss=state.best_val_loss, best_step=state.step)

    def save_snapshot(self, trainer: Trainer) -> None:
        """Save this step's weights as a snapshot, then thin the folder to ``max_snapshots``."""
        from toygpt.train import thin_snapshots

        self._writable()
        step = trainer.state.step
        save_tensors(self.path / SNAPSHOTS / snapshot_name(step), snapshot_tensors(trainer.model), {"step": str(step)})
        for old in thin_snapshots(sorted(self._snapshot_files()), trainer.config.max_snapshots):
            (self.path / SNAPSHOTS / snapshot_name(old)).unlink(missing_ok=True)

    def on_event(self, event: Event) -> None:
        """Append events to metrics.jsonl / samples.jsonl as they happen; keep run.json current."""
        kind = event.get("type")
        if kind == "sample":
            self._append(SAMPLES, event)
        elif kind in ("step", "eval", "log", "end", "start"):
            self._append(METRICS, {**event, "time": time.time()})
        if kind == "start":
            self.update_info(status=Status.RUNNING, message="")
        elif kind == "end":
            self.update_info(status=event["status"], message=event["message"], step=event["step"],
                             best_val_loss=event["best_val_loss"], val_loss=event["val_loss"])  # fmt: skip

    def _append(self, name: str, row: dict[str, Any]) -> None:
        self._writable()
        line = json.dumps({k: _finite(v) for k, v in row.items()}, ensure_ascii=True)
        with open(self.path / name, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def mark_failed(self, message: str) -> None:
        if not self.read_only and (self.path / RUN_FILE).exists():
            self.update_info(status=Status.FAILED, message=message[:2000])

    def truncate_after(self, step: int) -> None:
        """Drop logged rows past ``step`` (written after the checkpoint a resume starts from)."""
        for name in (METRICS, SAMPLES):
            with self._reading():
                rows = [r for r in read_jsonl(self.path / name) if r["step"] <= step and r["type"] != "end"]
            text = "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in rows)
            if (self.path / name).exists():
                from toygpt.checkpoint import atomic_write

                atomic_write(self.path / name, text.encode("ascii"))

    # ---- reading ---------------------------------------------------------------------------

    def load_model(self, which: str = "best") -> LoadedCheckpoint:
        """The run's model: ``"best"`` (lowest val loss; the latest if there is no best file) or
        ``"latest"``. Raises ``CheckpointError`` for a broken file."""
        if which not in ("best", "latest"):
            raise ValueError(f"which={which!r}; choose 'best' or 'latest'")
        name = BEST if which == "best" and (self.path / BEST).exists() else LATEST
        with self._reading():
            return load_checkpoint(self.path, weights_name=name)

    def training_state(self) -> tuple[TrainState, dict[str, torch.Tensor]]:
        """The trainer counters and optimizer tensors saved with the latest weights."""
        path = self.path / OPTIMIZER
        if not path.exists():
            raise RunError(f"run {self.id} has no optimizer state, so it cannot be resumed; start a new run with init_from={self.id!r}")
        with self._reading():
            tensors = load_tensors(path)
            saved = _safetensors_metadata(path).get("trainer_state")
            if saved is None:
                raise RunError(f"{OPTIMIZER} holds no trainer state; start a new run with init_from={self.id!r}")
            check_json_shape("trainer state", saved.encode("utf-8"))
            state = TrainState.from_dict(json.loads(saved))
            saved_step = read_meta(self.path)["step"]
        if saved_step != state.step:
            raise RunError(
                f"run {self.id}: the weights are from step {saved_step} but the optimizer state from "
                f"step {state.step} (interrupted while saving?); start a new run with init_from={self.id!r}"
            )
        return state, tensors

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every event row of metrics.jsonl that passes its checks (see ``read_jsonl``)."""
        with self._reading():
            return read_jsonl(self.path / METRICS)

    def read_samples(self) -> list[dict[str, Any]]:
        with self._reading():
            return read_jsonl(self.path / SAMPLES)

    def list_snapshots(self) -> list[int]:
        """Steps whose weights can be loaded: the log-spaced snapshots, then the latest weights
        (so a run always ends its "watch it learn" timeline with the model as it is now)."""
        steps = set(self._snapshot_files())
        latest = self._latest_step()
        if latest is not None:
            steps.add(latest)
        return sorted(steps)

    def snapshot_path(self, step: int) -> Path:
        """The file ``load_snapshot(step)`` reads: that step's snapshot, or the latest weights
        for the latest step (a page keys its caches by this file's modification time)."""
        path = self._snapshot_files().get(int(step))
        if path is None and int(step) == self._latest_step():
            path = self.path / LATEST
        if path is None:
            raise RunError(f"run {self.id} has no snapshot at step {step}; it has {self.list_snapshots()}")
        return path

    def _snapshot_files(self) -> dict[int, Path]:
        folder = self.path / SNAPSHOTS
        files = {}
        for path in folder.glob("step-*.safetensors") if folder.is_dir() else []:
            digits = path.name[len("step-") : -len(".safetensors")]
            if digits.isdigit():
                files[int(digits)] = path
        return files

    def _latest_step(self) -> int | None:
        if not (self.path / LATEST).exists() or not (self.path / "config.json").exists():
            return None
        with self._reading():
            return read_meta(self.path)["step"]

    def load_snapshot(self, step: int) -> GPT:
        """The model as it was at ``step`` (float32, eval mode): a snapshot (stored as int8,
        dequantized here) or, for the latest step, the latest weights."""
        path = self.snapshot_path(step)
        if path == self.path / LATEST:
            return self.load_model("latest").model
        model = empty_model(self.model_config())
        with self._reading():
            weights = dequantize(load_tensors(path), model_tensors(model))
            copy_weights(model, check_weights_fit(model, weights, str(path)))
        return model.eval()


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from toygpt.checkpoint import read_safetensors_header

    return read_safetensors_header(path).get("__metadata__", {})


def read_jsonl(path: Path, strict: bool = False) -> list[dict[str, Any]]:
    """Every event row of a .jsonl file (``toygpt.run_schema.check_event_row``).

    The file's size is checked before reading. A line that is not a valid row (cut short by a
    crash, a wrong type, nesting that exhausts the parser) is skipped, so a page always gets
    clean rows; ``strict=True`` (import) refuses the file instead, except for an unfinished
    last line, which is what a crash mid-write leaves.
    """
    if not path.exists():
        return []
    check_size(path.name, path.stat().st_size)
    rows = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                if len(line) > MAX_ROW_BYTES:
                    raise ValueError(f"{len(line):,} characters is longer than a row may be ({MAX_ROW_BYTES:,})")
                check_json_shape("log row", line.encode("utf-8", "replace"))  # before json.loads
                rows.append(check_event_row(json.loads(line)))
            except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
                if strict and line.endswith("\n"):
                    reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
                    raise RunError(f"{path.name} line {number}: {reason}") from None
    return rows


def create_run(
    *,
    name: str | None,
    corpus: str,
    tokenizer_spec: str,
    tokenizer: Any,
    model: GPT,
    train_config: Any,
    tags: tuple[str, ...] = (),
    corpus_seed: int = 0,
    corpus_text: str | None = None,
    init_from: str | None = None,
) -> Run:
    """A new run folder with run.json, config.json, tokenizer.json and the initial weights."""
    path = _unique_folder(new_run_id_base(name, corpus, tokenizer_spec))
    run = Run(path)
    try:
        if corpus_text is not None:
            from toygpt.checkpoint import atomic_write

            atomic_write(path / CORPUS, corpus_text.encode("utf-8"))
        save_checkpoint(path, model, tokenizer.to_dict(), step=0, extra={"run_id": run.id})
        write_json_atomic(path / RUN_FILE, {
            "id": run.id, "name": clean_name(name) or run.id, "corpus": corpus, "corpus_seed": corpus_seed,
            "tokenizer": tokenizer_spec, "tags": list(tags), "init_from": init_from,
            "model_config": model.config.to_dict(), "train_config": train_config.to_dict(),
            "status": Status.RUNNING, "message": "", "step": 0, "best_val_loss": None,
            "created": _now(), "updated": _now(),
        })  # fmt: skip
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return run


# --------------------------------------------------------------------------------------------
# All runs: list, open, delete, export, import
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """One row of ``list_runs()``."""

    id: str
    name: str
    corpus: str
    tokenizer: str
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    steps: int
    best_val_loss: float | None
    created: str
    updated: str
    tags: tuple[str, ...]
    status: str
    message: str = ""
    read_only: bool = False
    path: Path = field(default_factory=Path)


def _run_info(run: Run) -> RunInfo:
    """The listing's row for ``run``; a run whose run.json fails its checks is listed with the
    status "unreadable" and the reason (so it can be seen and deleted), never raised."""
    try:
        info = run.info()
    except (ValueError, OSError) as exc:  # RunError, CheckpointError
        return RunInfo(run.id, run.id, "?", "?", {}, {}, 0, None, "", "", (), Status.UNREADABLE, str(exc), run.read_only, run.path)
    best = info.get("best_val_loss")
    return RunInfo(
        id=run.id, name=str(info.get("name") or run.id), corpus=str(info.get("corpus", "?")),
        tokenizer=str(info.get("tokenizer", "?")), model_config=dict(info.get("model_config") or {}),
        train_config=dict(info.get("train_config") or {}), steps=int(info.get("step") or 0),
        best_val_loss=float(best) if isinstance(best, int | float) else None,
        created=str(info.get("created", "")), updated=str(info.get("updated", "")),
        tags=tuple(str(t) for t in info.get("tags") or ()), status=str(info.get("status", "?")),
        message=str(info.get("message") or ""), read_only=run.read_only, path=run.path,
    )  # fmt: skip


def status_now(info: RunInfo, training: set[str]) -> str:
    """A run's status as of now, given the ids this process is ``training``: a run.json still
    saying "running" that nothing here trains was cut off (server stopped, crash; or it trains
    in another process, e.g. the CLI) and is ``interrupted``: it can resume from its last save."""
    return Status.INTERRUPTED if info.status == Status.RUNNING and info.id not in training else info.status


def resume_config(run: Run, more_steps: int) -> Any:
    """The ``TrainConfig`` that resumes ``run`` for ``more_steps`` more steps: its own settings
    with a new end (its step counter, schedule and batches continue; the learning-rate schedule
    stretches to the new end; no time budget)."""
    if isinstance(more_steps, bool) or not isinstance(more_steps, int) or more_steps < 1:
        raise RunError(f"more_steps={more_steps!r}: resume adds a whole number of steps, at least 1")
    step = run.info().get("step")
    step = step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else 0
    return run.train_config().replace(max_steps=step + more_steps, max_seconds=None)


def usable_as_model(info: RunInfo) -> bool:
    """Whether a run is a model to load and look at (the one rule every model picker uses):
    its training ended with weights worth keeping (finished, stopped, or diverged with its last
    good save: ``status.HAS_MODEL``), a weights file is there, and its weights are not only the
    by-product of a lab result (``RESULT_ONLY_TAG``)."""
    path = Path(info.path)
    has_weights = (path / BEST).exists() or (path / LATEST).exists()
    return info.status in HAS_MODEL and RESULT_ONLY_TAG not in info.tags and has_weights


def list_runs(include_demo: bool = True) -> list[RunInfo]:
    """Every run, newest first, then the shipped demo (when present)."""
    root = runs_dir()
    runs = [Run(p) for p in root.iterdir() if p.is_dir() and RUN_ID.fullmatch(p.name)] if root.is_dir() else []
    infos = sorted((_run_info(r) for r in runs if (r.path / RUN_FILE).exists()), key=lambda i: i.created, reverse=True)
    if include_demo and (demo_run_dir() / RUN_FILE).exists():
        infos.append(_run_info(Run(demo_run_dir(), read_only=True)))
    return infos


def open_run(run_id: str) -> Run:
    """The run ``run_id`` (``DEMO_RUN`` gives the shipped checkpoint, read-only)."""
    if run_id == DEMO_RUN:
        if not (demo_run_dir() / RUN_FILE).exists():
            raise RunError("the demo model is missing (checkpoints/shakespeare-char); reinstall toygpt or train your own run")
        return Run(demo_run_dir(), read_only=True)
    path = runs_dir() / check_run_id(run_id)
    if not (path / RUN_FILE).exists():
        raise RunError(f"there is no run {run_id!r}; `python -m toygpt runs` lists them")
    return Run(path)


def read_metrics(run_id: str) -> list[dict[str, Any]]:
    return open_run(run_id).read_metrics()


def list_snapshots(run_id: str) -> list[int]:
    return open_run(run_id).list_snapshots()


def load_snapshot(run_id: str, step: int) -> GPT:
    return open_run(run_id).load_snapshot(step)


def delete_run(run_id: str) -> None:
    """Delete a run folder (never the demo)."""
    run = open_run(run_id)
    run._writable()
    shutil.rmtree(run.path)


def export_zip(run_id: str) -> bytes:
    """The whole run folder as a zip (``<run id>/...`` inside), e.g. for a download button."""
    run = open_run(run_id)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(run.path.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                archive.write(path, f"{run.id}/{path.relative_to(run.path).as_posix()}")
    return buffer.getvalue()


def hf_export_parts(run_id: str, which: str = "best") -> tuple[GPT, Any, dict[str, Any]]:
    """What ``hf_format.export_hf`` needs for a run: its weights, tokenizer and a description."""
    run = open_run(run_id)
    checkpoint = run.load_model(which)
    info = run.info()
    about = {"run": run.id, "weights": which, "step": checkpoint.step, "corpus": info.get("corpus"),
             "tokenizer": info.get("tokenizer"), "best_val_loss": _rounded(info.get("best_val_loss"))}  # fmt: skip
    return checkpoint.model, run.tokenizer(), about


def _rounded(loss: Any) -> float | None:
    value = _finite(loss)
    return round(value, 4) if isinstance(value, float) else value


def export_run_hf(run_id: str, folder: str | os.PathLike[str], which: str = "best") -> Path:
    """Write a run as a Hugging Face GPT-2 folder (see ``toygpt.hf_format.export_hf``)."""
    from toygpt.hf_format import export_hf

    model, tokenizer, about = hf_export_parts(run_id, which)
    return export_hf(model, tokenizer, folder, about)


def export_run_hf_zip(run_id: str, which: str = "best") -> bytes:
    """``export_run_hf`` as a zip with one folder ``<run id>-hf/`` (for a download button)."""
    from toygpt.hf_format import export_hf_zip

    model, tokenizer, about = hf_export_parts(run_id, which)
    return export_hf_zip(model, tokenizer, f"{run_id}-hf", about)


def pack_run(run_id: str, destination: str | os.PathLike[str], snapshots: list[int] | None = None,
             metrics_every: int = 50, overwrite: bool = False) -> Path:  # fmt: skip
    """Write a compact, read-only copy of a run for shipping (how the demo model was made).

    Keeps the latest weights in float16 (half the bytes; the val loss moves in the 4th decimal),
    the chosen int8 ``snapshots`` (default: all), tokenizer, run.json, samples and the metrics
    (step rows thinned to every ``metrics_every`` steps). No optimizer state: a packed run is
    opened, sampled and inspected, never resumed.
    """
    if isinstance(metrics_every, bool) or not isinstance(metrics_every, int) or metrics_every < 1:
        raise RunError(f"metrics_every={metrics_every!r} must be a whole number ≥ 1 (keep every Nth step row)")
    run = open_run(run_id)
    target = Path(destination)
    if target.exists() and any(target.iterdir()):
        if not overwrite or not (target / RUN_FILE).exists():
            raise RunError(f"{target} is not empty; pick a new folder (or overwrite=True for an earlier pack)")
        shutil.rmtree(target)
    checkpoint = run.load_model("latest")
    info = run.info()
    step = checkpoint.step
    files = run._snapshot_files()
    chosen = sorted(files) if snapshots is None else snapshots
    missing = [s for s in chosen if s not in files]
    if missing:
        raise RunError(f"run {run.id} has no snapshot files at steps {missing}; it has {sorted(files)}")
    metrics = {"val_loss": info.get("val_loss"), "best_val_loss": info.get("best_val_loss")}
    save_checkpoint(target, checkpoint.model.half(), checkpoint.tokenizer, step=step, metrics=metrics,
                    extra={"run_id": run.id, "weights_dtype": "float16"})  # fmt: skip
    for s in chosen:
        (target / SNAPSHOTS).mkdir(exist_ok=True)
        shutil.copyfile(files[s], target / SNAPSHOTS / snapshot_name(s))
    rows = [r for r in run.read_metrics() if r["type"] != "step" or r["step"] % metrics_every == 0]
    (target / METRICS).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if (run.path / SAMPLES).exists():
        shutil.copyfile(run.path / SAMPLES, target / SAMPLES)
    packed = {**info, "step": step, "status": Status.FINISHED, "packed_from": run.id, "weights_dtype": "float16"}
    write_json_atomic(target / RUN_FILE, packed)
    return target


ALLOWED_MEMBER = re.compile(
    r"(run\.json|config\.json|tokenizer\.json|model\.safetensors|best\.safetensors|optimizer\.safetensors"
    r"|metrics\.jsonl|samples\.jsonl|corpus\.txt|lab\.json|snapshots/step-\d{7}\.safetensors)"  # lab.json: toygpt.lab
)


def _member_names(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Map each member to its name inside the run folder, refusing anything that could escape
    it (absolute paths, '..', links) or that a run does not contain."""
    infos = [i for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
    if not infos:
        raise RunError("the zip is empty; export a run with the Runs page or `python -m toygpt runs export`")
    for info in infos:  # the dangerous ones first, so the message names them
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or ":" in info.filename:
            raise RunError(f"the zip holds {info.filename!r}, a path that leaves its folder (zip slip); refused")
    tops = {PurePosixPath(i.filename).parts[0] for i in infos}
    strip = len(tops) == 1 and all(len(PurePosixPath(i.filename).parts) > 1 for i in infos)
    members = {}
    for info in infos:
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise RunError(f"the zip holds a symbolic link ({info.filename!r}); refused")
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts[1 if strip else 0 :]
        name = "/".join(parts)
        if not ALLOWED_MEMBER.fullmatch(name):
            raise RunError(f"unexpected file {info.filename!r} in the zip; a toygpt run holds only run.json, config.json, weights and logs")
        members[name] = info
        _check_member_size(name, info.file_size)
    if sum(i.file_size for i in members.values()) > MAX_IMPORT_BYTES:
        raise RunError(f"the zip unpacks to more than {MAX_IMPORT_BYTES:,} bytes; refused")
    return members


def _check_member_size(name: str, size: int) -> None:
    """Each file's size, from the zip's directory, before anything is unpacked: the logs and
    JSON files have their own limits (``toygpt.run_schema``), weights a quarter of the server's
    memory budget (float32 weights are loaded as they are), optimizer state half (two moments)."""
    if name.endswith(".safetensors"):
        share = 2 * LOAD_SHARE if name == OPTIMIZER else LOAD_SHARE
        limit = int(memory_budget() * share)
        if size > limit:
            raise RunError(f"{name}: {size:,} bytes is above the {limit:,} bytes this server can load for it "
                           "(a share of its memory budget; see the deploy notes)")  # fmt: skip
    else:
        check_size(name, size)


def _extract(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], folder: Path) -> None:
    """Copy members out with a byte budget, overall and per file: sizes in a zip header can lie."""
    budget = MAX_IMPORT_BYTES
    for name, info in members.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with archive.open(info) as source, open(target, "wb") as out:
            while chunk := source.read(1 << 20):
                budget -= len(chunk)
                written += len(chunk)
                if budget < 0:
                    raise RunError(f"the zip unpacks to more than {MAX_IMPORT_BYTES:,} bytes; refused")
                _check_member_size(name, written)
                out.write(chunk)


def _validate_import(folder: Path) -> dict[str, Any]:
    """Every file of an unpacked run must pass the checks its reader makes: run.json against
    its schema, the checkpoint, a tokenizer that fits the model, best weights, snapshots, the
    optimizer state with its counters, every line of the logs, the corpus and a lab result.

    One weights file is held at a time (the shapes to check against come from a model on
    torch's "meta" device, which allocates nothing), so the peak is about two copies of the
    weights: what was loaded and what it is compared with."""
    run = Run(folder)
    run.id = "upload"  # messages say "run upload: ...", not the staging folder's name
    info = run.info()
    checkpoint = run.load_model("latest")
    if checkpoint.tokenizer is None:
        raise RunError("the run has no tokenizer.json")
    if info["model_config"] != checkpoint.config.to_dict():
        raise RunError("run.json's model_config differs from config.json's model; the files come from different runs")
    with torch.device("meta"):
        shapes = GPT(checkpoint.config)
    del checkpoint
    if (folder / BEST).exists():
        with run._reading():
            check_weights_fit(shapes, load_tensors(folder / BEST), BEST)
    for step in run._snapshot_files():
        run.load_snapshot(step)
    if (folder / OPTIMIZER).exists():
        _, tensors = run.training_state()
        check_optimizer_tensors(shapes, tensors)
        del tensors
    for name in (METRICS, SAMPLES):
        with run._reading():
            read_jsonl(folder / name, strict=True)
    if (folder / CORPUS).exists():
        run.corpus_text()
    if (folder / "lab.json").exists():
        with run._reading():
            read_json(folder / "lab.json")  # its numbers are checked by toygpt.lab when opened
    return info


def check_optimizer_tensors(model: GPT, tensors: dict[str, torch.Tensor]) -> None:
    """AdamW state as ``toygpt.train.optimizer_tensors`` writes it: ``<param>.step`` (1 number),
    ``<param>.exp_avg`` and ``.exp_avg_sq`` (the parameter's shape), all finite floats."""
    params = dict(model.named_parameters())
    for name, tensor in tensors.items():
        param, _, key = name.rpartition(".")
        if param not in params or key not in ("step", "exp_avg", "exp_avg_sq"):
            raise RunError(f"{OPTIMIZER}: unexpected tensor {name} (not AdamW state of this model)")
        shape = (1,) if key == "step" else tuple(params[param].shape)
        if tuple(tensor.shape) != shape or not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
            raise RunError(f"{OPTIMIZER}: tensor {name} must be finite floats of shape {shape}")


def import_zip(data: bytes, name: str | None = None) -> str:
    """Unpack a run exported by ``export_zip`` into a new run folder; return its id.

    The zip is checked before anything becomes a run: only known file names (no paths that
    leave the folder, no links), a size budget, and every file must pass its reader's checks.
    A bad zip raises ``RunError`` with the reason (naming files inside the run, never the
    server's folders) and leaves nothing behind.
    """
    if len(data) > MAX_IMPORT_BYTES:
        raise RunError(f"the file is {len(data):,} bytes, above the {MAX_IMPORT_BYTES:,}-byte limit")
    root = runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            _extract(archive, _member_names(archive), staging)
        try:
            info = _validate_import(staging)
        except (ValueError, KeyError, TypeError, OSError, RuntimeError, RecursionError) as exc:  # CheckpointError is a ValueError
            raise RunError(f"the zip is not a usable run: {exc}") from None
        wanted = name or info.get("name") or info.get("id") or "imported"
        final = _unique_folder(slugify(str(wanted)) or "imported")
        try:
            status = info.get("status")  # a run exported mid-training is not running here
            Run(staging).update_info(id=final.name, status=Status.STOPPED if status == Status.RUNNING else status)
            final.rmdir()
            os.replace(staging, final)
        except BaseException:
            with contextlib.suppress(OSError):
                final.rmdir()
            raise
    except zipfile.BadZipFile as exc:
        raise RunError(f"not a zip file ({exc}); export a run with `python -m toygpt runs export`") from None
    except (ValueError, OSError) as exc:  # RunError, CheckpointError; the message names no server folder
        raise RunError(inside_run(str(exc), staging, "the run")) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final.name
