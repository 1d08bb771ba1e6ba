"""Reading a safetensors file that may be hostile: its header checked field by field before
any tensor byte is read (each lie gets its own message), then the tensors themselves, copied into
memory — never pickle. ``toygpt.checkpoint`` writes these files and builds models from them.

    8 bytes        little-endian length N of the header
    N bytes        JSON: {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                          ..., "__metadata__": {"key": "text"}}
    the rest       every tensor's bytes, back to back, exactly as the offsets say
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from toygpt.limits import LimitError, check_json_shape, memory_budget

MAX_HEADER_BYTES = 16 * 2**20  # GPT-2's safetensors header is ~15 kB

# safetensors dtype codes toygpt accepts, with their size in bytes; anything else is refused
SAFETENSORS_DTYPES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip
# tensor names are dict keys, but they get shown to people and may end up in paths: keep them plain
TENSOR_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,256}")


class CheckpointError(ValueError):
    """A checkpoint (or one of its files) cannot be used; the message names the file and why."""


def check_tensor_name(name: Any) -> None:
    if not isinstance(name, str) or not TENSOR_NAME.fullmatch(name):
        raise ValueError(
            f"tensor name {name!r} is not allowed; use 1-256 letters, digits, '_', '.' or '-'"
        )


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """Read and check a safetensors header before any tensor bytes are touched.

    The layout: 8 bytes little-endian header length N, N bytes of JSON
    ``{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}``, then the
    data. A hostile file may lie in any field; each lie gets its own message here, so the Rust
    reader only ever sees a file already known to be consistent.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: {size} bytes is too short to be a safetensors file (truncated?)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > MAX_HEADER_BYTES or header_len > size - 8:
            raise CheckpointError(
                f"{path}: header claims {header_len:,} bytes but the file has {size:,} "
                f"(limit {MAX_HEADER_BYTES:,}); truncated or not a safetensors file"
            )
        raw = handle.read(header_len)
    try:
        check_json_shape("safetensors header", raw)
        header = json.loads(raw.decode("utf-8"))
    except LimitError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: the safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header must be a JSON object")
    check_header_entries(path, header, data_len=size - 8 - header_len)
    return header


def check_header_entries(path: Path, header: dict[str, Any], data_len: int) -> None:
    """Names plain, dtypes known, shapes non-negative whole numbers, and the tensors' byte
    ranges tiling the data region exactly (as the safetensors format requires)."""
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: __metadata__ must map strings to strings")
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            check_tensor_name(name)
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        spans.append((*tensor_span(path, name, info), name))
    offset = 0
    for begin, end, name in sorted(spans):
        if begin != offset:
            raise CheckpointError(f"{path}: tensor {name} starts at byte {begin}, expected {offset} (overlap or gap)")
        offset = end
    if offset != data_len:
        raise CheckpointError(
            f"{path}: the header describes {offset:,} bytes of tensor data but the file holds "
            f"{data_len:,} (truncated or padded file)"
        )


def tensor_span(path: Path, name: str, info: Any) -> tuple[int, int]:
    """(begin, end) of one tensor's bytes, after checking its dtype and shape agree with them."""
    if not isinstance(info, dict):
        raise CheckpointError(f"{path}: header entry for {name} must be an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
        raise CheckpointError(f"{path}: tensor {name} has unsupported dtype {dtype!r}; toygpt reads {sorted(SAFETENSORS_DTYPES)}")
    if not isinstance(shape, list) or len(shape) > 8 or not all(is_count(d) for d in shape):
        raise CheckpointError(f"{path}: tensor {name} has an invalid shape {shape!r}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(is_count(o) for o in offsets):
        raise CheckpointError(f"{path}: tensor {name} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    if end - begin != math.prod(shape) * SAFETENSORS_DTYPES[dtype]:
        raise CheckpointError(
            f"{path}: tensor {name} is {dtype} {shape}, which needs "
            f"{math.prod(shape) * SAFETENSORS_DTYPES[dtype]:,} bytes, but data_offsets give {end - begin:,}"
        )
    return begin, end


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; never unpickles. Anything wrong is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    size, limit = path.stat().st_size, memory_budget() // 2
    if size > limit:  # the largest file a run holds is AdamW's two moments: 2 × the weights
        raise CheckpointError(
            f"{path}: {size:,} bytes would be read into memory, above half of this server's memory "
            f"budget ({limit:,} bytes; see toygpt.limits)"
        )
    try:
        read_safetensors_header(path)
        # pread copies the bytes into memory: unlike mmap, a file changed later cannot crash us
        return load_file(path, backend="pread")
    except CheckpointError:
        raise
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (SafetensorError, RuntimeError, ValueError) as exc:  # the header check should catch all
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
