"""Save and load runs: safetensors weights + JSON for everything else, and never pickle.

A run directory holds three files::

    model.safetensors   the weights: a JSON header (names, dtypes, shapes) + raw bytes
    config.json         {"format_version", "toygpt_version", "model": {...GPTConfig...},
                         "step", "metrics", "created", ...extra}
    tokenizer.json      the dict a tokenizer gives for itself (``{"type": ..., ...}``)

Why not ``torch.save``? It pickles, and unpickling a file can run any code the file's author
wrote. A checkpoint shared by someone else must be *data*: safetensors and JSON are.

Every write goes to a temporary file beside its target, is flushed to disk (fsync) and then
renamed over the target. A rename within one folder is atomic, so a crash or a full disk
mid-save leaves the previous file exactly as it was. Several files that belong together (the
weights, config.json and the optimizer state of one step) are committed as one unit through a
small journal written between "all staged" and "all renamed" (``StagedFiles.commit``);
``recover_commit`` finishes or drops an interrupted commit. Every read checks what it gets and
raises ``CheckpointError`` naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from toygpt import __version__
from toygpt.limits import (
    LOAD_SHARE,
    LimitError,
    MemoryBudgetError,
    check_json_shape,
    check_memory,
    file_limit,
)
from toygpt.model import GPT, GPTConfig, total_parameters
from toygpt.positions import sinusoidal_positions
from toygpt.tensor_files import (
    CheckpointError,
    check_tensor_name,
    is_count,
    load_tensors,
)

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TOKENIZER_NAME = "tokenizer.json"

MAX_JSON_BYTES = 64 * 2**20  # a 50k-token BPE tokenizer is a few MB; 64 MB is "not a config"
RESERVED_KEYS = ("format_version", "toygpt_version", "model", "step", "metrics", "created")



# --------------------------------------------------------------------------------------------
# Atomic writes: temp file beside the target → fsync → rename
# --------------------------------------------------------------------------------------------


JOURNAL_NAME = ".commit.json"  # present only while a multi-file commit is being renamed into place


class StagedFiles:
    """Write several files so that either all of them replace their targets or none does.

    Each ``write`` goes to a hidden temp file in the target's folder (same filesystem, so the
    final rename is atomic) and is fsynced. Leaving the ``with`` block normally renames them all
    into place; an exception deletes the temp files and leaves the old files untouched.

    A process killed between two renames would leave a mix of new and old files. So, for more
    than one file, ``commit`` first writes a journal (``.commit.json``, itself written to a temp
    file and renamed: it exists whole or not at all) listing every rename, then renames, then
    deletes it. The journal is the commit point: ``recover_commit`` redoes the renames of a
    journal it finds (every temp file was complete before the journal was written) and deletes
    temp files that no journal names (a commit that never reached its commit point).

    >>> with StagedFiles() as files:                      # doctest: +SKIP
    ...     files.write(Path("run/a.json"), lambda tmp: tmp.write_text("{}"))
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []  # (temp file, final path)

    def write(self, path: str | Path, writer: Callable[[Path], None]) -> None:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot write here ({exc.strerror or exc})") from exc
        temp = Path(name)
        self.pending.append((temp, path))
        try:
            writer(temp)
            os.chmod(temp, 0o644)  # mkstemp makes 0600 files; a checkpoint is not a secret
            with open(temp, "rb+") as handle:
                os.fsync(handle.fileno())  # the bytes are on disk before the rename makes them live
        except OSError as exc:
            raise CheckpointError(
                f"{path}: write failed ({exc.strerror or exc}); check free disk space and "
                "permissions (the previous file, if any, is unchanged)"
            ) from exc

    def discard(self) -> None:
        for temp, _ in self.pending:
            temp.unlink(missing_ok=True)
        self.pending.clear()

    def commit(self) -> None:
        journal = self._write_journal() if len(self.pending) > 1 else None
        for temp, path in self.pending:
            os.replace(temp, path)
        for folder in {path.parent for _, path in self.pending}:
            fsync_folder(folder)
        if journal is not None:
            journal.unlink()
            fsync_folder(journal.parent)
        self.pending.clear()

    def _write_journal(self) -> Path:
        """The list of renames, relative to the first target's folder, made durable."""
        home = self.pending[0][1].parent
        renames = [[os.path.relpath(temp, home), os.path.relpath(path, home)] for temp, path in self.pending]
        journal = home / JOURNAL_NAME
        fd, name = tempfile.mkstemp(prefix=f".{JOURNAL_NAME}.", suffix=".tmp", dir=home)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            json.dump({"renames": renames}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, journal)
        fsync_folder(home)
        return journal

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        if exc_type is None:
            try:
                self.commit()
            finally:
                self.discard()  # only non-empty if a rename failed
        else:
            self.discard()


def recover_commit(folder: str | Path, subfolders: tuple[str, ...] = ()) -> str | None:
    """Finish or undo a commit that a crash interrupted in ``folder``; return what was done.

    A journal (see ``StagedFiles``) means every new file was complete: its renames are redone.
    Temp files that no journal names are from a commit that never reached that point (or from a
    single-file write cut short): they are deleted, and the previous files stand. Run it before
    reading a folder that no process is writing to (e.g. before resuming a run)."""
    folder = Path(folder)
    done = None
    journal = folder / JOURNAL_NAME
    if journal.is_file():
        try:
            renames = json.loads(journal.read_text(encoding="ascii"))["renames"]
            pairs = [(folder / temp, folder / final) for temp, final in renames]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{JOURNAL_NAME}: an interrupted save's journal is unreadable ({exc})") from None
        if not all(_inside(folder, p) for pair in pairs for p in pair):
            raise CheckpointError(f"{JOURNAL_NAME}: names a file outside the run; delete it by hand")
        for temp, final in pairs:
            if temp.exists():
                os.replace(temp, final)
        fsync_folder(folder)
        journal.unlink()
        done = f"finished an interrupted save ({len(pairs)} files)"
    leftovers = [p for sub in ("", *subfolders) for p in (folder / sub).glob(".*.tmp") if p.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers and done is None:
        done = f"removed {len(leftovers)} unfinished file(s) of an interrupted save"
    return done


def _inside(folder: Path, path: Path) -> bool:
    return os.path.commonpath([folder.resolve(), path.resolve()]) == str(folder.resolve())


def fsync_folder(folder: Path) -> None:
    """Persist a rename: the new directory entry must reach the disk too (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows cannot open folders; the rename is still atomic there
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; nothing more we can do
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` all at once: readers see the old bytes or the new, never half."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"atomic_write needs bytes, got {type(data).__name__}; encode text first")
    with StagedFiles() as files:
        files.write(path, lambda temp: temp.write_bytes(data))


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def json_bytes(obj: Any, what: str = "object") -> bytes:
    """Strict JSON (no NaN/Infinity, which other readers reject), ASCII-escaped so that even
    lone surrogates from odd Unicode survive the round trip."""
    try:
        return (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode("ascii")
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"cannot write {what} as JSON: {exc}; use dicts, lists, strings, finite numbers, "
            "booleans and None only"
        ) from exc


def write_json_atomic(path: str | Path, obj: Any) -> None:
    atomic_write(path, json_bytes(obj, str(path)))


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; anything wrong (missing, huge, not UTF-8, not JSON) is a CheckpointError.

    Its size and how many arrays/objects it holds are checked against the limits for its kind
    of file (``toygpt.run_schema``: run.json, config.json, tokenizer.json ...) before parsing."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    size = path.stat().st_size
    limit = min(MAX_JSON_BYTES, file_limit(path.name) or MAX_JSON_BYTES)
    if size > limit:
        raise CheckpointError(f"{path}: {size:,} bytes is too large for a {path.name} (limit {limit:,})")
    try:
        raw = path.read_bytes()
        check_json_shape(path.name, raw)  # before json.loads builds millions of lists
        return json.loads(raw.decode("utf-8"))
    except LimitError as exc:
        raise CheckpointError(f"{path}: {str(exc).split(': ', 1)[-1]}") from None
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise CheckpointError(f"{path}: JSON nested too deeply to read") from exc
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from exc


# --------------------------------------------------------------------------------------------
# Tensors (safetensors)
# --------------------------------------------------------------------------------------------


def save_tensors(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
    staged: StagedFiles | None = None,
) -> None:
    """Write tensors to a safetensors file, atomically (or into ``staged``, committed with the
    other files of that transaction).

    Tensors that share memory (a tied weight saved under two names) are copied, because the
    format stores each tensor's bytes separately."""
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise ValueError("safetensors metadata must map strings to strings; json.dumps other values first")
    prepared: dict[str, torch.Tensor] = {}
    seen_storage: set[int] = set()
    for name, tensor in tensors.items():
        check_tensor_name(name)
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{name} is a {type(tensor).__name__}, not a torch.Tensor")
        tensor = tensor.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage in seen_storage and tensor.numel():
            tensor = tensor.clone()
        seen_storage.add(storage)
        prepared[name] = tensor
    if staged is not None:
        staged.write(path, lambda temp: save_file(prepared, temp, metadata=metadata))
        return
    with StagedFiles() as files:
        files.write(path, lambda temp: save_file(prepared, temp, metadata=metadata))


# --------------------------------------------------------------------------------------------
# A model's weights
# --------------------------------------------------------------------------------------------


def model_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint stores: the state dict, with a tied ``lm_head.weight`` left out
    (it *is* ``transformer.wte.weight``; the load re-ties it)."""
    return stored_tensors(model.config, model.state_dict())


def stored_tensors(config: GPTConfig, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model_tensors`` from a state dict and its config (the trainer hands a saver values)."""
    tensors = {name: t.detach() for name, t in state.items()}
    if config.tie_embeddings:
        tensors.pop("lm_head.weight", None)
    return tensors


def check_weights_fit(model: GPT, tensors: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The tensors to copy into ``model``, after checking names, shapes, dtypes and values.

    A tied ``lm_head.weight`` saved anyway (``save_tensors(path, model.state_dict())``) is
    accepted if it equals the token embedding, and dropped."""
    expected = model_tensors(model)
    tensors = dict(tensors)
    tied_head = tensors.get("lm_head.weight") if model.config.tie_embeddings else None
    if tied_head is not None and "transformer.wte.weight" in tensors:
        if not torch.equal(tied_head, tensors["transformer.wte.weight"]):
            raise CheckpointError(f"{source}: lm_head.weight differs from transformer.wte.weight, but the config ties them")
        del tensors["lm_head.weight"]
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing:
        raise CheckpointError(f"{source}: missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if extra:
        raise CheckpointError(f"{source}: unexpected tensors {extra[:5]}{' ...' if len(extra) > 5 else ''} (a different model?)")
    for name, target in expected.items():
        check_tensor_value(source, name, tensors[name], target.shape)
    return tensors


def check_tensor_value(source: str, name: str, tensor: torch.Tensor, shape: torch.Size) -> None:
    if tensor.shape != shape:
        raise CheckpointError(f"{source}: tensor {name} has shape {tuple(tensor.shape)}, the config needs {tuple(shape)}")
    if not tensor.is_floating_point():
        raise CheckpointError(f"{source}: tensor {name} has dtype {tensor.dtype}; weights must be floating point")
    if not bool(torch.isfinite(tensor).all()):
        raise CheckpointError(f"{source}: tensor {name} contains NaN or infinite values (did training diverge?)")


def load_weights_into(model: GPT, path: str | Path) -> None:
    """Fill ``model`` in place from a safetensors file, after checking every tensor fits."""
    tensors = check_weights_fit(model, load_tensors(path), str(path))
    copy_weights(model, tensors)


def copy_weights(model: GPT, tensors: dict[str, torch.Tensor]) -> None:
    """Copy already-checked tensors into the model (a tied head follows wte by itself)."""
    targets = model_tensors(model)
    with torch.no_grad():
        for name, target in targets.items():
            target.copy_(tensors[name])


def model_bytes(config: GPTConfig) -> int:
    """Bytes a model of ``config`` takes once loaded for inference: float32 weights, plus the
    position tables it computes (sinusoid: block × n_embd; RoPE: cos and sin of block × head
    size in every layer, counted in full). Training adds gradients, AdamW and activations:
    ``toygpt.estimates.estimate``."""
    table = 0
    if config.pos_encoding == "sinusoidal":
        table = 4 * config.block_size * config.n_embd
    elif config.pos_encoding == "rope":
        table = 4 * 2 * config.n_layer * config.block_size * config.head_size
    return 4 * total_parameters(config) + table


def check_model_fits(config: GPTConfig, what: str = "this model") -> None:
    """Refuse to build a model that would take more than a quarter of the budget."""
    check_memory(model_bytes(config), what, LOAD_SHARE)


def empty_model(config: GPTConfig) -> GPT:
    """A GPT whose weights are uninitialised memory, for a load to fill.

    ``GPT(config)`` draws every weight at random first, which takes seconds for GPT-2's 124M
    parameters only to be overwritten. Building on the "meta" device allocates nothing; then
    ``to_empty`` gives real but unfilled memory. Moving breaks the lm_head/wte tie and leaves the
    fixed sinusoid table empty, so both are redone here.
    """
    with torch.device("meta"):
        model = GPT(config)
    model.to_empty(device="cpu")
    unsaved = {name for name, _ in model.named_buffers()} - set(model.state_dict())
    if unsaved - {"sinusoid"}:  # a buffer we would not know how to refill: take the slow way
        return GPT(config, seed=0)
    if config.tie_embeddings:
        model.lm_head.weight = model.transformer.wte.weight
    if "sinusoid" in unsaved:
        model.sinusoid.copy_(sinusoidal_positions(config.block_size, config.n_embd))
    return model


# --------------------------------------------------------------------------------------------
# Run directories
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedCheckpoint:
    model: GPT  # in eval mode
    config: GPTConfig
    tokenizer: dict[str, Any] | None  # rebuild with toygpt.tokenizers.tokenizer_from_dict
    meta: dict[str, Any]  # the whole config.json

    @property
    def step(self) -> int:
        return self.meta["step"]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.meta["metrics"]


def check_weights_name(weights_name: str) -> None:
    if not isinstance(weights_name, str) or Path(weights_name).name != weights_name or not weights_name.endswith(".safetensors"):
        raise ValueError(f"weights_name={weights_name!r} must be a plain file name ending in .safetensors")


def check_tokenizer_dict(tokenizer: Any, source: str) -> None:
    if not isinstance(tokenizer, dict) or not isinstance(tokenizer.get("type"), str):
        raise CheckpointError(f"{source}: a tokenizer must be a JSON object with a \"type\" string (tokenizer.to_dict())")


def check_tokenizer_fits(tokenizer: dict[str, Any], config: GPTConfig, source: str) -> Any:
    """The tokenizer a ``tokenizer.json`` describes, after checking it rebuilds and its ids stay
    inside the model's vocabulary: a 5,000-character tokenizer beside a 65-token model would
    index past the embedding table at the first unusual character. Raises ``CheckpointError``.

    A tiktoken encoding that cannot be fetched offline is checked by its known size and
    returned as None (using it later says it is unavailable)."""
    from toygpt.tokenizers import TokenizerError, TokenizerUnavailable, tokenizer_from_dict
    from toygpt.tokenizers.catalog import TIKTOKEN_VOCAB_SIZES

    built = None
    try:
        built = tokenizer_from_dict(tokenizer)
        vocab_size = built.vocab_size
    except TokenizerUnavailable:
        vocab_size = TIKTOKEN_VOCAB_SIZES.get(str(tokenizer.get("encoding")), 0)
    except TokenizerError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    if vocab_size > config.vocab_size:
        raise CheckpointError(
            f"{source}: the tokenizer has {vocab_size:,} tokens but the model's vocabulary only "
            f"{config.vocab_size:,}; tokenizer.json and the weights come from different runs"
        )
    return built


def save_checkpoint(directory: str | Path, model: GPT, tokenizer: dict | None = None, **options: Any) -> Path:
    """Save ``model`` (its config and weights) as ``save_weights`` does; same options."""
    return save_weights(directory, model.config, model.state_dict(), tokenizer, **options)


def save_weights(
    directory: str | Path,
    config: GPTConfig,
    state: dict[str, torch.Tensor],
    tokenizer: dict | None = None,
    *,
    step: int = 0,
    metrics: dict | None = None,
    extra: dict | None = None,
    weights_name: str = WEIGHTS_NAME,
    staged: StagedFiles | None = None,
) -> Path:
    """Save a run: weights (a model's ``state_dict()`` and its ``config``), config.json and (if
    given) tokenizer.json, all or nothing (with ``staged``: as part of that larger transaction,
    committed when it is).

    ``tokenizer=None`` leaves a tokenizer.json already in the folder alone. Weights with NaN or
    inf are refused: such a model cannot be loaded (and usually means training diverged).
    """
    directory = Path(directory)
    check_weights_name(weights_name)
    if not is_count(step):
        raise ValueError(f"step={step!r} must be a whole number ≥ 0")
    clash = sorted(set(extra or {}) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"extra keys {clash} clash with config.json's own keys; rename them")
    if tokenizer is not None:
        check_tokenizer_dict(tokenizer, "tokenizer")
    tensors = stored_tensors(config, state)
    for name, tensor in tensors.items():
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name} contains NaN or inf: training diverged; lower the learning rate and retrain")
    meta = {
        "format_version": FORMAT_VERSION,
        "toygpt_version": __version__,
        "model": config.to_dict(),
        "step": step,
        "metrics": finite_or_none(dict(metrics or {})),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    config_bytes = json_bytes(meta, "config.json")  # fail before writing anything
    tokenizer_bytes = None if tokenizer is None else json_bytes(tokenizer, "tokenizer.json")
    prepared = {name: t.cpu().contiguous() for name, t in tensors.items()}
    with contextlib.nullcontext(staged) if staged is not None else StagedFiles() as files:
        files.write(directory / weights_name, lambda temp: save_file(prepared, temp, metadata={"format": "pt"}))
        if tokenizer_bytes is not None:
            files.write(directory / TOKENIZER_NAME, lambda temp: temp.write_bytes(tokenizer_bytes))
        files.write(directory / CONFIG_NAME, lambda temp: temp.write_bytes(config_bytes))
    return directory


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: a diverged loss in the metrics is stored as null.

    >>> finite_or_none({"loss": float("nan"), "steps": [1, 2.5]})
    {'loss': None, 'steps': [1, 2.5]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def read_meta(directory: Path) -> dict[str, Any]:
    """config.json, checked: a known format version, a valid model config, a step, metrics."""
    path = directory / CONFIG_NAME
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: must be a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version")
    if version is None:
        raise CheckpointError(f"{path}: no format_version; this is not a toygpt checkpoint")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version!r} is unknown; this toygpt ({__version__}) reads "
            f"version {FORMAT_VERSION} (a newer toygpt wrote it? upgrade toygpt)"
        )
    if not is_count(meta.get("step")):
        raise CheckpointError(f"{path}: step must be a whole number ≥ 0, got {meta.get('step')!r}")
    if not isinstance(meta.get("metrics"), dict):
        raise CheckpointError(f"{path}: metrics must be a JSON object, got {meta.get('metrics')!r}")
    return meta


def read_model_config(directory: Path, meta: dict[str, Any]) -> GPTConfig:
    try:
        return GPTConfig.from_dict(meta.get("model"))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{directory / CONFIG_NAME}: invalid model config: {exc}") from exc


def load_checkpoint(directory: str | Path, weights_name: str = WEIGHTS_NAME) -> LoadedCheckpoint:
    """Load a run saved by ``save_checkpoint``; the model comes back in eval mode.

    A ``CheckpointError`` names the file inside ``directory`` (``config.json: ...``), never the
    folder's place on disk: the message may be shown to a visitor of a shared server."""
    try:
        return _load_checkpoint(Path(directory), weights_name)
    except CheckpointError as exc:
        raise CheckpointError(strip_folder(str(exc), Path(directory))) from None


def strip_folder(message: str, folder: Path) -> str:
    """``message`` without the path of ``folder`` (``/srv/runs/x/config.json: ...`` → ``config.json: ...``)."""
    for prefix in {str(folder), str(folder.resolve())}:
        message = message.replace(prefix + os.sep, "").replace(prefix, "the checkpoint folder")
    return message


def _load_checkpoint(directory: Path, weights_name: str) -> LoadedCheckpoint:
    check_weights_name(weights_name)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint folder not found")
    meta = read_meta(directory)
    config = read_model_config(directory, meta)
    try:  # before a single weight is allocated
        check_model_fits(config, "the model in config.json")
    except MemoryBudgetError as exc:
        raise CheckpointError(f"{directory / CONFIG_NAME}: {exc}") from None
    tokenizer = None
    if (directory / TOKENIZER_NAME).exists():
        tokenizer = read_json(directory / TOKENIZER_NAME)
        check_tokenizer_dict(tokenizer, str(directory / TOKENIZER_NAME))
        check_tokenizer_fits(tokenizer, config, str(directory / TOKENIZER_NAME))
    model = empty_model(config)
    load_weights_into(model, directory / weights_name)
    return LoadedCheckpoint(model=model.eval(), config=config, tokenizer=tokenizer, meta=meta)
