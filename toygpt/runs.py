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
import json
import math
import os
import re
import shutil
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
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
    model_tensors,
    read_json,
    read_meta,
    read_model_config,
    recover_commit,
    save_checkpoint,
    save_tensors,
    save_weights,
    stored_tensors,
    write_json_atomic,
)
from toygpt.limits import MAX_ROW_BYTES, check_json_shape, check_size
from toygpt.model import GPT, GPTConfig
from toygpt.run_schema import check_event_row, check_run_info
from toygpt.status import HAS_MODEL, Status
from toygpt.tensor_files import load_tensors
from toygpt.train import Event, TrainConfig, thin_snapshots
from toygpt.trainer import Tensors, TrainState

DEMO_RUN = "demo-shakespeare-char"
RUN_FILE, LATEST, BEST, OPTIMIZER = "run.json", "model.safetensors", "best.safetensors", "optimizer.safetensors"
METRICS, SAMPLES, CORPUS, SNAPSHOTS = "metrics.jsonl", "samples.jsonl", "corpus.txt", "snapshots"
MAX_EVAL_BATCHES = 10_000  # batches of 12 for Run.evaluate: 2.4 M windows is plenty for a mean
RUN_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?")
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


def unique_folder(base: str) -> Path:
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
    return quantized(model_tensors(model))


def quantized(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``snapshot_tensors`` of stored weights (``checkpoint.stored_tensors``)."""
    tensors = {}
    for name, tensor in weights.items():
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


def finite_json(value: Any) -> Any:
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
    """A run folder as pages read it: ``info`` (run.json, and ``update_info`` to change it),
    configs, tokenizer, corpus, ``load_model``, ``training_state``, metrics, snapshots. What
    training writes into it is ``RunWriter``."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = Path(path)
        self.id = DEMO_RUN if read_only and self.path == demo_run_dir() else self.path.name
        self.read_only = read_only

    def __repr__(self) -> str:
        return f"Run({self.id!r})"

    # ---- run.json ------------------------------------------------------------------------

    def reading_files(self) -> contextlib.AbstractContextManager[None]:
        return reading(self.path, f"run {self.id}")

    def info(self) -> dict[str, Any]:
        """run.json, checked field by field (``toygpt.run_schema``); ``RunError`` if it fails."""
        with self.reading_files():
            return check_run_info(read_json(self.path / RUN_FILE), RUN_FILE)

    def update_info(self, **changes: Any) -> dict[str, Any]:
        self._writable()
        info = {**self.info(), **{k: finite_json(v) for k, v in changes.items()}, "updated": _now()}
        write_json_atomic(self.path / RUN_FILE, info)
        return info

    def _writable(self) -> None:
        if self.read_only:
            raise RunError(f"run {self.id} is read-only (the shipped demo); fine-tune it into a new run instead")

    def model_config(self) -> GPTConfig:
        with self.reading_files():
            return read_model_config(self.path, read_meta(self.path))

    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.info()["train_config"])  # checked by info()

    def tokenizer(self) -> Any:
        """The run's tokenizer, checked to fit its model (no id beyond the model's vocabulary)."""
        from toygpt.tokenizers import tokenizer_from_dict

        config = self.model_config()
        with self.reading_files():
            data = read_json(self.path / "tokenizer.json")
            return check_tokenizer_fits(data, config, "tokenizer.json") or tokenizer_from_dict(data)

    def corpus_text(self) -> str:
        """The text this run trained on: its own copy (your text) or the named corpus."""
        from toygpt import data

        with self.reading_files():
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

    # ---- reading ---------------------------------------------------------------------------

    def load_model(self, which: str = "best") -> LoadedCheckpoint:
        """The run's model: ``"best"`` (lowest val loss; the latest if there is no best file) or
        ``"latest"``. Raises ``CheckpointError`` for a broken file."""
        if which not in ("best", "latest"):
            raise ValueError(f"which={which!r}; choose 'best' or 'latest'")
        name = BEST if which == "best" and (self.path / BEST).exists() else LATEST
        with self.reading_files():
            return load_checkpoint(self.path, weights_name=name)

    def training_state(self) -> tuple[TrainState, dict[str, torch.Tensor]]:
        """The trainer counters and optimizer tensors saved with the latest weights."""
        path = self.path / OPTIMIZER
        if not path.exists():
            raise RunError(f"run {self.id} has no optimizer state, so it cannot be resumed; start a new run with init_from={self.id!r}")
        with self.reading_files():
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
        with self.reading_files():
            return read_jsonl(self.path / METRICS)

    def read_samples(self) -> list[dict[str, Any]]:
        with self.reading_files():
            return read_jsonl(self.path / SAMPLES)

    def list_snapshots(self) -> list[int]:
        """Steps whose weights can be loaded: the log-spaced snapshots, then the latest weights
        (so a run always ends its "watch it learn" timeline with the model as it is now)."""
        steps = set(self.snapshot_files())
        latest = self._latest_step()
        if latest is not None:
            steps.add(latest)
        return sorted(steps)

    def snapshot_path(self, step: int) -> Path:
        """The file ``load_snapshot(step)`` reads: that step's snapshot, or the latest weights
        for the latest step (a page keys its caches by this file's modification time)."""
        path = self.snapshot_files().get(int(step))
        if path is None and int(step) == self._latest_step():
            path = self.path / LATEST
        if path is None:
            raise RunError(f"run {self.id} has no snapshot at step {step}; it has {self.list_snapshots()}")
        return path

    def snapshot_files(self) -> dict[int, Path]:
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
        with self.reading_files():
            return read_meta(self.path)["step"]

    def load_snapshot(self, step: int) -> GPT:
        """The model as it was at ``step`` (float32, eval mode): a snapshot (stored as int8,
        dequantized here) or, for the latest step, the latest weights."""
        path = self.snapshot_path(step)
        if path == self.path / LATEST:
            return self.load_model("latest").model
        model = empty_model(self.model_config())
        with self.reading_files():
            weights = dequantize(load_tensors(path), model_tensors(model))
            copy_weights(model, check_weights_fit(model, weights, str(path)))
        return model.eval()


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from toygpt.tensor_files import read_safetensors_header

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


class RunWriter(Run):
    """What training writes into a run folder: the ``RunSaver`` of ``toygpt.trainer`` (handed
    weights, optimizer state and counters, never the trainer), the event logs, and the repairs
    resume makes first (``recover``, ``truncate_after``). Made by ``create_run`` and ``resume``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, read_only=Path(path) == demo_run_dir())
        self._writable()  # the shipped demo is never written: every method below may write

    def recover(self) -> str | None:
        """Finish or drop a save that a crash interrupted (``toygpt.checkpoint.recover_commit``);
        call it only when no process is training this run (resume does)."""
        with self.reading_files():
            return recover_commit(self.path, (SNAPSHOTS,))

    def save_latest(self, weights: Tensors, optimizer_state: Tensors, state: TrainState) -> None:
        """Weights, optimizer state with the trainer's counters, config.json and run.json of one
        step: everything resume needs, committed as one unit (``StagedFiles``' journal), so a
        kill at any moment leaves this step's set or the previous one's, never a mix."""
        meta = {"trainer_state": json.dumps(state.to_dict(), allow_nan=False)}
        metrics = {"val_loss": state.last_val_loss, "best_val_loss": state.best_val_loss, "train_loss": state.last_train_loss}
        changes = {"step": state.step, "best_val_loss": finite_json(state.best_val_loss), "elapsed": state.elapsed}
        info = {**self.info(), **changes, "updated": _now()}
        config = self.model_config()
        with StagedFiles() as files:
            save_tensors(self.path / OPTIMIZER, optimizer_state, meta, staged=files)
            save_weights(self.path, config, weights, step=state.step, metrics=metrics, extra={"run_id": self.id}, staged=files)
            files.write(self.path / RUN_FILE, lambda temp: temp.write_bytes(json_bytes(info, RUN_FILE)))

    def save_best(self, weights: Tensors, state: TrainState) -> None:
        meta = {"step": str(state.step), "val_loss": repr(state.best_val_loss)}
        save_tensors(self.path / BEST, stored_tensors(self.model_config(), weights), meta)
        self.update_info(best_val_loss=state.best_val_loss, best_step=state.step)

    def save_snapshot(self, weights: Tensors, step: int, keep: int) -> None:
        """Save this step's weights as a snapshot (int8), then thin the folder to ``keep``."""
        stored = stored_tensors(self.model_config(), weights)
        save_tensors(self.path / SNAPSHOTS / snapshot_name(step), quantized(stored), {"step": str(step)})
        for old in thin_snapshots(sorted(self.snapshot_files()), keep):
            (self.path / SNAPSHOTS / snapshot_name(old)).unlink(missing_ok=True)

    def on_event(self, event: Event) -> None:
        """Append events to metrics.jsonl / samples.jsonl as they happen; keep run.json current."""
        kind = event.get("type")
        if kind == "sample":
            self._append(SAMPLES, event)
        elif kind in ("step", "eval", "log", "end", "start", "preparing", "prepared"):
            self._append(METRICS, {**event, "time": time.time()})
        if kind == "start":
            self.update_info(status=Status.RUNNING, message="")
        elif kind == "end":
            self.update_info(status=event["status"], message=event["message"], step=event["step"],
                             best_val_loss=event["best_val_loss"], val_loss=event["val_loss"])  # fmt: skip

    def _append(self, name: str, row: dict[str, Any]) -> None:
        line = json.dumps({k: finite_json(v) for k, v in row.items()}, ensure_ascii=True)
        with open(self.path / name, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def mark_failed(self, message: str) -> None:
        if (self.path / RUN_FILE).exists():
            self.update_info(status=Status.FAILED, message=message[:2000])

    def truncate_after(self, step: int) -> None:
        """Drop logged rows past ``step`` (written after the checkpoint a resume starts from)."""
        for name in (METRICS, SAMPLES):
            with self.reading_files():
                rows = [r for r in read_jsonl(self.path / name) if r["step"] <= step and r["type"] != "end"]
            text = "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in rows)
            if (self.path / name).exists():
                from toygpt.checkpoint import atomic_write

                atomic_write(self.path / name, text.encode("ascii"))


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
) -> RunWriter:
    """A new run folder with run.json, config.json, tokenizer.json and the initial weights."""
    path = unique_folder(new_run_id_base(name, corpus, tokenizer_spec))
    run = RunWriter(path)
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
