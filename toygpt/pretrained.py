"""The real GPT-2 weights in toygpt: downloaded from the hub, or brought by the learner.

``load_gpt2("gpt2")`` downloads the 124M model from the Hugging Face hub once, into
``<toygpt data dir>/pretrained/gpt2`` (``$TOYGPT_PRETRAINED_DIR`` overrides the parent), and
afterwards reads only that folder. Offline it raises ``PretrainedUnavailable`` within seconds.
A learner's own GPT-2 folder or zip is checked, copied (streamed, atomically) and its hash
recorded (``add_pretrained``). The names and layouts are ``toygpt.hf_format``'s; the matching
tokenizer is tiktoken's "gpt2" (``toygpt.tokenizers``); this module does weights.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants as hub_constants
from safetensors import safe_open

from toygpt.checkpoint import (
    CheckpointError,
    copy_weights,
    empty_model,
    json_bytes,
    model_tensors,
    read_json,
)
from toygpt.data import data_dir
from toygpt.hf_format import (
    MASK_BUFFERS,
    TOYGPT_TOKENIZER_FILE,
    config_from_hf,
    hf_state_dict_to_toygpt,
    is_conv1d_weight,
    toygpt_name,
)
from toygpt.model import GPT, GPTConfig
from toygpt.tensor_files import load_tensors, read_safetensors_header
from toygpt.tokenizers import Tokenizer

# toygpt's short name -> (repository on the Hugging Face hub, approximate download size in MB)
HUB_MODELS = {
    "gpt2": ("openai-community/gpt2", 548),
    "gpt2-medium": ("openai-community/gpt2-medium", 1520),
    "gpt2-large": ("openai-community/gpt2-large", 3250),
    "gpt2-xl": ("openai-community/gpt2-xl", 6430),
    "distilgpt2": ("distilbert/distilgpt2", 353),
}
HUB_FILES = ("config.json", "model.safetensors")
DEFAULT_TIMEOUT_S = 5.0


class PretrainedUnavailable(RuntimeError):
    """The pretrained weights cannot be had right now; the message says how to make them available."""


# --------------------------------------------------------------------------------------------
# The local cache
# --------------------------------------------------------------------------------------------


def check_name(name: str) -> tuple[str, int]:
    if name not in HUB_MODELS:
        raise ValueError(f"unknown pretrained model {name!r}; choose one of {sorted(HUB_MODELS)}")
    return HUB_MODELS[name]


def pretrained_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$TOYGPT_PRETRAINED_DIR``, else ``<toygpt data dir>/pretrained``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    explicit = os.environ.get("TOYGPT_PRETRAINED_DIR")
    return Path(explicit).expanduser() if explicit else data_dir() / "pretrained"


def pretrained_folder(name: str = "gpt2", cache_dir: str | Path | None = None) -> Path:
    """Where ``name``'s ``config.json`` and ``model.safetensors`` live once downloaded."""
    check_name(name)
    return pretrained_dir(cache_dir) / name


def is_cached(folder: Path) -> bool:
    return all((folder / filename).is_file() for filename in HUB_FILES)


def how_to_get(name: str, folder: Path) -> str:
    """What to do when ``name``'s weights are not here: bring the file, or download it once."""
    repo, size_mb = check_name(name)
    return (
        f"{name}'s weights are about {size_mb} MB (model.safetensors + config.json of "
        f"huggingface.co/{repo}). If you have them, add them: the explorer's \"Add GPT-2 weights\" "
        f"upload, or `python -m toygpt pretrained add PATH` (a folder, a zip or the two files); "
        f"or let toygpt download them once while online (saved into {folder})."
    )


def offline_reason() -> str | None:
    """Why no download may be tried (HF_HUB_OFFLINE or TOYGPT_OFFLINE set), else None."""
    for variable in ("HF_HUB_OFFLINE", "TOYGPT_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() not in ("", "0", "false", "no", "off"):
            return f"offline mode ({variable}={os.environ[variable]})"
    if hub_constants.HF_HUB_OFFLINE:  # read by huggingface_hub when it was imported
        return "offline mode (HF_HUB_OFFLINE)"
    return None


def pretrained_status(name: str = "gpt2", cache_dir: str | Path | None = None) -> str | None:
    """None if ``load_gpt2(name)`` works right now without the network; else the reason and
    what to do, for the UI to show. Never touches the network."""
    folder = pretrained_folder(name, cache_dir)
    if is_cached(folder):
        return None
    reason = offline_reason()
    if reason:
        return f"{name}'s weights are not on this machine and toygpt is in {reason}. {how_to_get(name, folder)}"
    return f"{name}'s weights are not downloaded yet; loading it will download them. {how_to_get(name, folder)}"


# --------------------------------------------------------------------------------------------
# Download (once) and load
# --------------------------------------------------------------------------------------------


def ask_hub(repo: str, endpoint: str, timeout: float, advice: str) -> str | None:
    """One HEAD request for the weights file, bounded in time; returns its sha256 if the hub
    gives one. Run in a thread because a stuck DNS lookup ignores socket timeouts, and done
    before ``hf_hub_download``, which retries a dead network for ~25 s (minutes if it hangs)."""
    from huggingface_hub import (  # the network stack: only when needed
        get_hf_file_metadata,
        hf_hub_url,
    )
    from huggingface_hub.errors import HfHubHTTPError

    outcome: dict[str, Any] = {}

    def ask() -> None:
        try:
            url = hf_hub_url(repo, "model.safetensors", endpoint=endpoint)
            outcome["metadata"] = get_hf_file_metadata(url, timeout=timeout, endpoint=endpoint)
        except Exception as exc:  # noqa: BLE001 - httpx, OSError, hub errors: all mean "not reachable"
            outcome["error"] = exc

    thread = threading.Thread(target=ask, daemon=True, name="toygpt-hub-probe")
    thread.start()
    thread.join(timeout + 1.0)
    if thread.is_alive() or not outcome:
        raise PretrainedUnavailable(f"no answer from {endpoint} within {timeout:g} s (offline?). {advice}")
    error = outcome.get("error")
    if isinstance(error, HfHubHTTPError):  # the hub answered, with an error
        summary = str(error).splitlines()[0]
        raise PretrainedUnavailable(f"{endpoint} refused {repo}/model.safetensors ({summary}). {advice}")
    if error is not None:
        raise PretrainedUnavailable(f"cannot reach {endpoint}: offline? ({type(error).__name__}: {error}). {advice}")
    etag = outcome["metadata"].etag or ""
    return etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None


def check_sha256(path: Path, expected: str | None, advice: str) -> str:
    """A download must match the checksum the hub published; a bad file is deleted. Returns
    the file's SHA-256 (recorded, so a later change to the file is noticed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    if expected is not None and digest.hexdigest() != expected:
        path.unlink(missing_ok=True)
        raise PretrainedUnavailable(
            f"{path} was damaged in transfer (sha256 {digest.hexdigest()[:12]}…, expected "
            f"{expected[:12]}…) and was deleted; try again. {advice}"
        )
    return digest.hexdigest()


def download(name: str, folder: Path, endpoint: str | None, timeout: float) -> None:
    """Fetch ``config.json`` and ``model.safetensors`` of ``name`` into ``folder``."""
    from huggingface_hub import hf_hub_download
    advice = how_to_get(name, folder)
    reason = offline_reason()
    if reason:
        raise PretrainedUnavailable(f"{name}'s weights are not on this machine and toygpt is in {reason}. {advice}")
    repo, _ = check_name(name)
    endpoint = (endpoint or hub_constants.ENDPOINT).rstrip("/")
    expected_sha256 = ask_hub(repo, endpoint, timeout, advice)
    try:
        for filename in HUB_FILES:
            hf_hub_download(repo, filename, local_dir=folder, endpoint=endpoint, etag_timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - the network stack raises many types; one message
        raise PretrainedUnavailable(f"downloading {name} from {endpoint} failed ({type(exc).__name__}: {exc}). {advice}") from exc
    sha256 = check_sha256(folder / "model.safetensors", expected_sha256, advice)
    record = {"name": name, "source": f"downloaded from {endpoint}/{repo}",
              "files": {"model.safetensors": {"sha256": sha256, "bytes": (folder / "model.safetensors").stat().st_size}},
              "added": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
    (folder / RECORD).write_bytes(json_bytes(record, RECORD))


def load_hf_folder(folder: str | Path) -> GPT:
    """A GPT from a folder holding a Hugging Face GPT-2's ``config.json`` + ``model.safetensors``.
    Raises ValueError (a CheckpointError for unreadable files) naming the file and problem."""
    folder = Path(folder)
    config = config_from_hf(read_json(folder / "config.json"))
    tensors = hf_state_dict_to_toygpt(load_tensors(folder / "model.safetensors"), config)
    model = empty_model(config)
    copy_weights(model, tensors)
    return model.eval()


def load_gpt2(
    name: str = "gpt2",
    cache_dir: str | Path | None = None,
    *,
    endpoint: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> GPT:
    """GPT-2's real weights as a toygpt GPT (eval mode), downloaded on first use.

    Raises ``PretrainedUnavailable`` when the weights are neither cached nor downloadable
    within ``timeout`` seconds, or when the cached files are damaged; the message says what to do.
    ``endpoint`` is the hub's address (default: ``$HF_ENDPOINT`` or https://huggingface.co).
    """
    folder = pretrained_folder(name, cache_dir)
    if not is_cached(folder):
        download(name, folder, endpoint, timeout)
    try:
        verify_recorded_hash(pretrained_info(folder))
        return load_hf_folder(folder)
    except ValueError as exc:  # CheckpointError is a ValueError too
        raise PretrainedUnavailable(
            f"the files of {name} in {folder} cannot be used: {exc}. Delete that folder and load "
            f"again, or copy intact model.safetensors and config.json of {HUB_MODELS[name][0]} there."
        ) from exc


# --------------------------------------------------------------------------------------------
# Weights the learner brings: checked, copied into the cache (streamed, atomically), listed
# --------------------------------------------------------------------------------------------

RECORD = "pretrained.json"  # what toygpt checked and recorded when the weights were added
PRETRAINED_PREFIX = "pretrained:"  # how a run id field names weights of this cache (pretrained:gpt2)
TOKENIZER_FILE = "tokenizer.json"  # toygpt's own format, as in a run folder
MAX_WEIGHTS_BYTES = 8 << 30  # gpt2-xl in float32 is 6.4 GB
COPY_CHUNK = 8 << 20  # bytes read at a time when copying: the file is never whole in memory
NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
# the files a GPT-2 model folder may hold in a zip; everything else in a zip is refused
FOLDER_FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt", TOYGPT_TOKENIZER_FILE,
                "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "generation_config.json", "README.md")  # fmt: skip
PICKLE_FILES = ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "model.ckpt")
HUB_SHAPES = {  # what each hub name must be, so a folder named "gpt2" really is GPT-2 124M
    "gpt2": (12, 12, 768), "gpt2-medium": (24, 16, 1024), "gpt2-large": (36, 20, 1280),
    "gpt2-xl": (48, 25, 1600), "distilgpt2": (6, 12, 768),
}  # fmt: skip
GPT2_ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")
GPT2_VOCAB = 50257


class Opener:
    """One file of a model folder, from wherever it is (a folder, a zip, an upload), opened only
    when it is copied, with the size it claims to have (None: unknown)."""

    def __init__(self, open_binary: Any, size: int | None, where: str) -> None:
        self.open_binary, self.size, self.where = open_binary, size, where


@dataclass(frozen=True)
class PretrainedInfo:
    """One entry of the pretrained cache (``list_pretrained``)."""

    name: str
    folder: Path
    config: GPTConfig
    weights_bytes: int
    sha256: str | None  # recorded when added (or downloaded); None: the files were copied by hand
    source: str
    tokenizer: dict[str, Any]

    @property
    def n_params(self) -> int:
        from toygpt.model import total_parameters

        return total_parameters(self.config)

    @property
    def label(self) -> str:
        c = self.config
        millions = f"{self.n_params / 1e6:.1f}" if self.n_params < 1e7 else f"{self.n_params / 1e6:.0f}"
        return (f"{self.name} (pretrained GPT-2 family, {millions}M parameters, "
                f"{c.n_layer}L/{c.n_head}H/{c.n_embd})")  # fmt: skip


def size_text(n_bytes: int | float) -> str:
    """``548 MB``, ``1.5 GB``: a file size for people."""
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.0f} MB"


def weights_bytes(config: GPTConfig, bytes_per_param: int = 4) -> int:
    """How big ``config``'s weights are as float32 (what an upload of them needs)."""
    from toygpt.model import total_parameters

    return total_parameters(config) * bytes_per_param


def check_pretrained_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a name for pretrained weights; use 1-64 lowercase letters, "
                         "digits, '.', '_' or '-', e.g. distilgpt2 or my-gpt2")  # fmt: skip
    return name


def default_name(origin: str) -> str:
    """A cache name from where the weights came from (``~/Downloads/gpt2/`` → ``gpt2``)."""
    stem = Path(origin.rstrip("/\\")).name.removesuffix(".zip").removesuffix("-hf") or "gpt2-family"
    slug = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")[:64]
    return slug or "gpt2-family"


def suggested_name(config: GPTConfig, origin: str, cache_dir: str | Path | None = None) -> str:
    """The folder's (or zip's) name; for loose uploaded files the hub name of the same shape
    (gpt2, distilgpt2 ...) unless that is taken, else ``gpt2-family``."""
    if origin:
        return default_name(origin)
    shape = (config.n_layer, config.n_head, config.n_embd)
    for hub_name, hub_shape in HUB_SHAPES.items():
        if hub_shape == shape and config.vocab_size == GPT2_VOCAB and not (pretrained_dir(cache_dir) / hub_name).exists():
            return hub_name
    return "gpt2-family"


# ---- where the files come from --------------------------------------------------------------


def files_in_folder(folder: str | Path) -> dict[str, Opener]:
    """The files of a model folder on this machine (others, e.g. pytorch_model.bin, are ignored).
    A path to ``model.safetensors`` or ``config.json`` means the folder that holds it."""
    folder = Path(folder).expanduser()
    if folder.is_file() and folder.suffix == ".zip":
        return files_in_zip(folder)
    if folder.is_file() and folder.name in ("model.safetensors", "config.json"):
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder, a .zip, or a model.safetensors / config.json file")
    found = {}
    for name in FOLDER_FILES:
        path = folder / name
        if path.is_file():
            found[name] = Opener(lambda path=path: open(path, "rb"), path.stat().st_size, str(path))
    return found


def files_in_zip(source: Any, where: str | None = None) -> dict[str, Opener]:
    """The files of a zipped model folder (a path or a binary file object). Refused: paths that
    leave the folder, links, and any file a GPT-2 model folder does not hold."""
    where = where or str(source)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{where} is not a readable zip file ({exc})") from None
    members = [m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
    for member in members:  # the dangerous ones first, so the message names them
        parts = member.filename.replace("\\", "/").split("/")
        if member.filename.startswith(("/", "\\")) or ".." in parts or ":" in member.filename \
                or (member.external_attr >> 28) == 0xA:  # 0xA: a symbolic link
            raise ValueError(f"{where} holds {member.filename!r}, a path that leaves its folder; refused")
    tops = {m.filename.split("/")[0] for m in members}
    strip = len(tops) == 1 and all("/" in m.filename for m in members)  # one folder at the top
    found: dict[str, Opener] = {}
    for member in members:
        inner = member.filename.split("/", 1)[1] if strip else member.filename
        if inner in PICKLE_FILES:
            raise ValueError(f"{where} holds {inner}, a pickle-based format toygpt never opens; "
                             "zip the folder's model.safetensors instead")  # fmt: skip
        if inner not in FOLDER_FILES:
            raise ValueError(f"{where} holds {member.filename!r}, which a GPT-2 model folder does not "
                             f"contain (expected only {', '.join(FOLDER_FILES)}); refused")  # fmt: skip
        found[inner] = Opener(lambda member=member: archive.open(member), member.file_size, f"{where}:{member.filename}")
    return found


def files_from_uploads(uploads: list[tuple[str, Any, int]]) -> dict[str, Opener]:
    """Uploaded files ``(file name, binary file object, size)``: one .zip of a model folder, or
    the folder's files themselves (config.json + model.safetensors ...). The file objects are
    read in chunks from the start and never closed here (the uploader owns them)."""
    if len(uploads) == 1 and uploads[0][0].lower().endswith(".zip"):
        return files_in_zip(uploads[0][1], where=uploads[0][0])
    found = {}
    for filename, handle, size in uploads:
        base = filename.replace("\\", "/").rsplit("/", 1)[-1]
        if base.lower().endswith(".zip"):
            raise ValueError(f"{filename}: upload a zip on its own, or the folder's files without a zip")
        if base not in FOLDER_FILES:
            raise ValueError(f"{filename} is not a file of a GPT-2 model folder (expected {', '.join(FOLDER_FILES)})")
        found[base] = Opener(functools.partial(_borrowed, handle), size, filename)
    return found


@contextlib.contextmanager
def _borrowed(handle: Any) -> Iterator[Any]:
    handle.seek(0)
    yield handle


# ---- checks ---------------------------------------------------------------------------------


def read_small(opener: Opener, limit: int = 64 << 20) -> bytes:
    with opener.open_binary() as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{opener.where} is larger than {limit:,} bytes; that is not a config or tokenizer file")
    return data


def config_from_hf_json(data: bytes, where: str) -> tuple[GPTConfig, dict[str, Any]]:
    """The GPTConfig of a Hugging Face ``config.json``'s bytes; ValueError naming the key."""
    try:
        hf = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{where} is not JSON ({exc})") from None
    return check_hf_config(hf, where), hf


def check_hf_config(hf: Any, where: str) -> GPTConfig:
    """``config_from_hf`` plus the architecture: a language-model head on GPT-2."""
    if not isinstance(hf, dict):
        raise ValueError(f"{where} must be a JSON object")
    architectures = hf.get("architectures") or ["GPT2LMHeadModel"]
    if not isinstance(architectures, list) or not set(architectures) <= set(GPT2_ARCHITECTURES):
        raise ValueError(f"{where}: architectures={architectures!r}; toygpt reads {' or '.join(GPT2_ARCHITECTURES)} "
                         "(a language-model head on GPT-2)")  # fmt: skip
    try:
        return config_from_hf(hf)
    except (TypeError, ValueError) as exc:  # GPTConfig's own checks are ValueErrors too
        raise ValueError(f"{where}: {exc}") from None


def check_hf_weights(path: Path, config: GPTConfig) -> int:
    """Check a GPT-2 ``model.safetensors`` against ``config`` without holding it in memory:
    the header (names, shapes, dtypes, byte ranges: catches a truncated or padded file), then
    each tensor on its own for NaN/inf. Returns the file's size. CheckpointError on a problem."""
    header = read_safetensors_header(path)
    shapes = {}
    for name, info in header.items():
        if name == "__metadata__" or name.endswith(MASK_BUFFERS):
            continue
        ours = toygpt_name(name)
        shape = tuple(info["shape"])
        shapes[ours] = shape[::-1] if is_conv1d_weight(ours) and len(shape) == 2 else shape
        if info["dtype"] not in ("F32", "F16", "BF16", "F64"):
            raise CheckpointError(f"{path}: tensor {name} is {info['dtype']}; weights must be floating point")
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in model_tensors(GPT(config)).items()}
    if config.tie_embeddings:
        shapes.pop("lm_head.weight", None)  # a tied head saved anyway; its values are checked below
    missing, extra = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: missing tensors {missing[:5]}, unexpected tensors {extra[:5]} "
                              "for the shape config.json describes (a different model?)")  # fmt: skip
    for name, shape in expected.items():
        if shapes[name] != shape:
            raise CheckpointError(f"{path}: tensor {name} has shape {shapes[name]}, config.json needs {shape}")
    with safe_open(path, framework="pt") as tensors:
        for name in tensors.keys():  # noqa: SIM118 - safe_open is not a dict
            if not name.endswith(MASK_BUFFERS) and not bool(torch.isfinite(tensors.get_tensor(name)).all()):
                raise CheckpointError(f"{path}: tensor {name} contains NaN or infinite values")
    return path.stat().st_size


def tokenizer_for(files: Mapping[str, Opener], config: GPTConfig) -> dict[str, Any]:
    """Which tokenizer goes with the weights: toygpt's (``toygpt_tokenizer.json``, from
    ``export-hf``), else GPT-2's (vocab.json + merges.txt must then be GPT-2's own files)."""
    from toygpt.tokenizers import tokenizer_from_dict
    from toygpt.tokenizers.tiktoken_ import ENCODING_FILES

    if TOYGPT_TOKENIZER_FILE in files:
        opener = files[TOYGPT_TOKENIZER_FILE]
        try:
            data = json.loads(read_small(opener).decode("utf-8"))
            tokenizer = tokenizer_from_dict(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"{opener.where} is not JSON ({exc})") from None
        if tokenizer.vocab_size > config.vocab_size:
            raise ValueError(f"{opener.where}: the tokenizer has {tokenizer.vocab_size:,} tokens but "
                             f"config.json's vocab_size is {config.vocab_size:,}")  # fmt: skip
        return data
    gpt2_hashes = {"vocab.json": ENCODING_FILES["gpt2"][1][1], "merges.txt": ENCODING_FILES["gpt2"][0][1]}
    for filename, sha256 in gpt2_hashes.items():
        if filename in files and hashlib.sha256(read_small(files[filename])).hexdigest() != sha256:
            raise ValueError(f"{files[filename].where} is not GPT-2's {filename}: this model has its own "
                             "tokenizer, which toygpt cannot read (it pairs GPT-2 weights with GPT-2's tokenizer)")  # fmt: skip
    if config.vocab_size < GPT2_VOCAB:
        raise ValueError(f"config.json: vocab_size={config.vocab_size} is smaller than GPT-2's tokenizer "
                         f"({GPT2_VOCAB:,} tokens) and no toygpt tokenizer came with it")  # fmt: skip
    return {"type": "tiktoken", "encoding": "gpt2"}


def copy_streamed(opener: Opener, target: Path, limit: int) -> tuple[str, int]:
    """Copy one file in chunks, hashing as it goes; (sha256, bytes). Refuses more than ``limit``
    bytes, or more/fewer than the source said it had (a lying zip entry)."""
    digest, copied = hashlib.sha256(), 0
    with opener.open_binary() as source, open(target, "wb") as sink:
        while chunk := source.read(COPY_CHUNK):
            copied += len(chunk)
            if copied > limit:
                raise ValueError(f"{opener.where} is larger than {size_text(limit)}; that is not a GPT-2-family model")
            digest.update(chunk)
            sink.write(chunk)
        sink.flush()
        os.fsync(sink.fileno())
    if opener.size is not None and copied != opener.size:
        raise ValueError(f"{opener.where}: {copied:,} bytes read but {opener.size:,} expected (truncated?)")
    return digest.hexdigest(), copied


def add_pretrained(
    files: Mapping[str, Opener],
    name: str | None = None,
    *,
    origin: str = "",
    expected_sha256: str | None = None,
    cache_dir: str | Path | None = None,
) -> PretrainedInfo:
    """Add GPT-2-family weights to the pretrained cache, checked, all or nothing.

    ``files`` is a model folder's files (``files_in_folder``, ``files_in_zip``, or uploads):
    ``config.json`` + ``model.safetensors``, optionally a tokenizer. The config must be one toygpt's
    GPT-2 can follow (ValueError naming the key otherwise); the weights are copied in chunks
    into a hidden folder in the cache while their SHA-256 is computed (compared with
    ``expected_sha256`` if given), then checked (shapes, truncation, NaN) and renamed into place
    with ``pretrained.json`` recording the hash. On any error nothing is left in the cache.
    """
    for needed in ("config.json", "model.safetensors"):
        if needed not in files:
            pickled = [f for f in PICKLE_FILES if f in files]
            hint = " (toygpt never opens pytorch_model.bin: it is a pickle)" if pickled else ""
            raise ValueError(f"{origin or 'the upload'} has no {needed}; a GPT-2 model folder holds config.json "
                             f"and model.safetensors{hint}")  # fmt: skip
    config_bytes = read_small(files["config.json"])
    config, _ = config_from_hf_json(config_bytes, files["config.json"].where)
    tokenizer = tokenizer_for(files, config)
    name = check_pretrained_name(name or suggested_name(config, origin, cache_dir))
    if name in HUB_SHAPES and (config.n_layer, config.n_head, config.n_embd) != HUB_SHAPES[name]:
        raise ValueError(f"the name {name!r} means {HUB_MODELS[name][0]}, but these weights are "
                         f"{config.n_layer}L/{config.n_head}H/{config.n_embd}; choose another name")  # fmt: skip
    parent = pretrained_dir(cache_dir)
    target = parent / name
    if target.exists():
        raise ValueError(f"pretrained weights named {name!r} are already added; choose another name "
                         f"(or delete {name} first)")  # fmt: skip
    weights = files["model.safetensors"]
    parent.mkdir(parents=True, exist_ok=True)
    if weights.size is not None and shutil.disk_usage(parent).free < weights.size + (64 << 20):
        raise ValueError(f"not enough free disk space for {size_text(weights.size)} of weights in {parent}")
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent))
    try:
        sha256, n_bytes = copy_streamed(weights, staging / "model.safetensors", MAX_WEIGHTS_BYTES)
        if expected_sha256 and sha256 != expected_sha256.strip().lower():
            raise ValueError(f"{weights.where}: sha256 {sha256} does not match the expected {expected_sha256.strip()}")
        check_hf_weights(staging / "model.safetensors", config)
        (staging / "config.json").write_bytes(config_bytes)
        (staging / TOKENIZER_FILE).write_bytes(json_bytes(tokenizer, "the tokenizer"))
        record = {"name": name, "source": f"added from {Path(origin).name or 'an upload'}",
                  "files": {"model.safetensors": {"sha256": sha256, "bytes": n_bytes},
                            "config.json": {"sha256": hashlib.sha256(config_bytes).hexdigest()}},
                  "added": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
        (staging / RECORD).write_bytes(json_bytes(record, RECORD))
        staging.chmod(0o755)
        os.replace(staging, target)  # fails if another add of the same name won the race
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return pretrained_info(target)


# ---- reading the cache ----------------------------------------------------------------------


def pretrained_info(folder: Path) -> PretrainedInfo:
    """What a cache folder holds (config, size, recorded hash, tokenizer); ValueError if unusable."""
    config = check_hf_config(read_json(folder / "config.json"), str(folder / "config.json"))
    record = read_json(folder / RECORD) if (folder / RECORD).is_file() else {}
    recorded = record.get("files", {}).get("model.safetensors", {}) if isinstance(record, dict) else {}
    tokenizer = read_json(folder / TOKENIZER_FILE) if (folder / TOKENIZER_FILE).is_file() else {
        "type": "tiktoken", "encoding": "gpt2"}  # fmt: skip
    source = record.get("source") if isinstance(record, dict) else None
    if source is None:
        source = f"downloaded from huggingface.co/{HUB_MODELS[folder.name][0]}" if folder.name in HUB_MODELS else "copied into the cache"
    return PretrainedInfo(folder.name, folder, config, (folder / "model.safetensors").stat().st_size,
                          recorded.get("sha256"), source, tokenizer)  # fmt: skip


def list_pretrained(cache_dir: str | Path | None = None) -> list[PretrainedInfo]:
    """Every usable entry of the pretrained cache (hub downloads and added weights), by name.
    Hidden folders (an add in progress) and folders without both files are skipped."""
    parent = pretrained_dir(cache_dir)
    if not parent.is_dir():
        return []
    infos = []
    for folder in sorted(parent.iterdir()):
        if folder.name.startswith(".") or not NAME.fullmatch(folder.name) or not is_cached(folder):
            continue
        try:
            infos.append(pretrained_info(folder))
        except (ValueError, OSError):
            continue  # a broken entry is reported when it is loaded, not here
    return infos


_verified_weights: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) whose hash matched


def verify_recorded_hash(info: PretrainedInfo) -> None:
    """The weights file must still have the SHA-256 recorded when it was added."""
    if info.sha256 is None:
        return
    path = info.folder / "model.safetensors"
    stat = path.stat()
    if _verified_weights.get(str(path)) == (stat.st_size, stat.st_mtime_ns):
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(COPY_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != info.sha256:
        raise PretrainedUnavailable(
            f"the weights of {info.name} changed since they were added (sha256 {digest.hexdigest()[:12]}…, "
            f"recorded {info.sha256[:12]}…): delete {info.folder} and add them again"
        )
    _verified_weights[str(path)] = (stat.st_size, stat.st_mtime_ns)


def missing_weights(name: str, cache_dir: str | Path | None = None) -> str:
    """Why weights ``name`` cannot be used (they are not here), their size and how to add them."""
    if name in HUB_MODELS:
        return f"{name}'s weights are not on this machine. {how_to_get(name, pretrained_dir(cache_dir) / name)}"
    return (f"no pretrained weights named {name!r} are on this machine (`python -m toygpt pretrained` lists "
            "them); add a GPT-2-family model folder with `python -m toygpt pretrained add PATH` or the "
            "explorer's \"Add GPT-2 weights\" upload")  # fmt: skip


def pretrained_config(name: str, cache_dir: str | Path | None = None) -> GPTConfig:
    """The shape of cached weights ``name`` (from its config.json; the weights are not read)."""
    folder = pretrained_dir(cache_dir) / check_pretrained_name(name)
    if not is_cached(folder):
        raise PretrainedUnavailable(missing_weights(name, cache_dir))
    return pretrained_info(folder).config


def load_pretrained(name: str, cache_dir: str | Path | None = None) -> tuple[GPT, Tokenizer]:
    """An added (or downloaded) model and its tokenizer, after checking the recorded hash.
    Raises PretrainedUnavailable saying what is missing or wrong and what to do."""
    from toygpt.tokenizers import tokenizer_from_dict

    folder = pretrained_dir(cache_dir) / check_pretrained_name(name)
    if not is_cached(folder):
        raise PretrainedUnavailable(missing_weights(name, cache_dir))
    try:
        info = pretrained_info(folder)
        verify_recorded_hash(info)
        return load_hf_folder(folder), tokenizer_from_dict(info.tokenizer)
    except (ValueError, OSError) as exc:
        raise PretrainedUnavailable(f"the weights of {name} in {folder} cannot be used: {exc}") from exc


@contextlib.contextmanager
def _as_bad_input() -> Iterator[None]:
    """Weights the user named that cannot be had are their input to fix: ``PretrainedUnavailable``
    becomes a ``ValueError`` with the same message, the error the CLI and the jobs report as bad
    input in one line."""
    try:
        yield
    except PretrainedUnavailable as exc:
        raise ValueError(str(exc)) from None


def load_pretrained_reference(reference: str) -> tuple[GPT, Tokenizer]:
    """``load_pretrained`` for ``reference`` = ``pretrained:NAME`` as a user typed it (``sample
    --run``, a fine-tune's source run); ValueError saying what is missing and how to add it."""
    with _as_bad_input():
        return load_pretrained(reference.removeprefix(PRETRAINED_PREFIX))


def pretrained_reference_config(reference: str) -> GPTConfig:
    """``pretrained_config`` for ``reference`` = ``pretrained:NAME`` as a user typed it; the
    same ValueError as ``load_pretrained_reference``."""
    with _as_bad_input():
        return pretrained_config(reference.removeprefix(PRETRAINED_PREFIX))
