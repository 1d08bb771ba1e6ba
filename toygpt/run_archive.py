"""A run as one file: a zip of its folder (export; import, checked file by file before anything
becomes a run), a compact read-only copy for shipping (``pack_run``: how the demo was made), and
Hugging Face's GPT-2 layout (``export_run_hf``). Run folders themselves are ``toygpt.runs``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from toygpt.checkpoint import (
    check_weights_fit,
    read_json,
    save_checkpoint,
    write_json_atomic,
)
from toygpt.limits import LOAD_SHARE, check_size, memory_budget
from toygpt.model import GPT
from toygpt.runs import (
    BEST,
    CORPUS,
    METRICS,
    OPTIMIZER,
    RUN_FILE,
    SAMPLES,
    SNAPSHOTS,
    Run,
    RunError,
    finite_json,
    inside_run,
    open_run,
    read_jsonl,
    runs_dir,
    slugify,
    snapshot_name,
    unique_folder,
)
from toygpt.status import Status
from toygpt.tensor_files import load_tensors

MAX_IMPORT_BYTES = 512 * 2**20  # a run zip above this (unpacked) is refused


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
    value = finite_json(loss)
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
    files = run.snapshot_files()
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
        with run.reading_files():
            check_weights_fit(shapes, load_tensors(folder / BEST), BEST)
    for step in run.snapshot_files():
        run.load_snapshot(step)
    if (folder / OPTIMIZER).exists():
        _, tensors = run.training_state()
        check_optimizer_tensors(shapes, tensors)
        del tensors
    for name in (METRICS, SAMPLES):
        with run.reading_files():
            read_jsonl(folder / name, strict=True)
    if (folder / CORPUS).exists():
        run.corpus_text()
    if (folder / "lab.json").exists():
        with run.reading_files():
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
        final = unique_folder(slugify(str(wanted)) or "imported")
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
