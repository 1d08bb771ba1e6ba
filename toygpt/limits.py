"""How big any input may be, checked *before* it is parsed or allocated.

Two kinds of limit, both refused with the number and the limit:

**Sizes of files.** Each kind of file a run holds has a byte limit (``MAX_FILE_BYTES``), checked
against a zip's directory and the file on disk before reading; JSON also has a limit on how many
arrays/objects it may hold (``check_json_shape``), counted before ``json.loads`` builds them: a
64 MB ``[[0],[0],...]`` would become ~16 million Python lists, several GB.

**One memory budget for the whole server.** A shared Streamlit app runs every visitor in one
process with 1-3 GB of memory. Whatever a visitor asks for — a training run, a model to load, a
run zip to import — is costed from its configuration first (parameters from the config and the
real vocabulary, activations from batch × context) and refused when it does not fit:

    >>> check_memory(3 * 2**30, "this run", share=JOB_SHARE, budget=2 * 2**30)
    Traceback (most recent call last):
    ...
    toygpt.limits.MemoryBudgetError: this run needs about 3.0 GiB, above the 1.0 GiB one training job may use (half of this server's memory budget of 2.0 GiB); ...

The budget (``memory_budget()``), in order of preference:

1. ``$TOYGPT_MEMORY_BUDGET`` (bytes, or with a unit: ``1.5GiB``, ``800MB``);
2. the container's memory limit (cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``);
3. the memory available when first asked (``MemAvailable`` in ``/proc/meminfo``) plus what
   this process already holds;
4. 2 GiB when none of these can be read.

Shares of it: one training job may use half (``JOB_SHARE``: the pages, cached models and the
server itself need the rest), one loaded or imported model a quarter (``LOAD_SHARE``: the
pages cache a few models at once).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from toygpt.formatting import human_bytes

ENV_VAR = "TOYGPT_MEMORY_BUDGET"
FALLBACK = 2 * 2**30
JOB_SHARE = 0.5
LOAD_SHARE = 0.25
UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
         "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}  # fmt: skip
SHARE_WORDS = {JOB_SHARE: "half", LOAD_SHARE: "a quarter", 1.0: "all"}

KIB, MIB = 2**10, 2**20
# byte limits per file, checked before reading; weights are bounded by the model's size instead
MAX_FILE_BYTES = {
    "run.json": 1 * MIB,  # a real one is ~1.5 kB
    "config.json": 1 * MIB,  # ~0.5 kB
    "lab.json": 8 * MIB,  # a lab result's numbers, tens of kB
    "tokenizer.json": 16 * MIB,  # a 50,000-merge BPE is ~2 MB; a 1.1M-character char vocab ~9 MB
    "metrics.jsonl": 32 * MIB,  # 100,000 logged steps are ~30 MB
    "samples.jsonl": 16 * MIB,
    "corpus.txt": 20_000_000,  # toygpt.data.DEFAULT_MAX_BYTES: the most text a run trains on
}
# JSON arrays + objects a file may hold: what json.loads allocates most of (about 60-100 bytes
# each). A 50,000-merge BPE tokenizer has ~50,000; a run.json a few.
MAX_JSON_CONTAINERS = {
    "run.json": 1_000, "config.json": 1_000, "lab.json": 200_000, "tokenizer.json": 300_000,
    "safetensors header": 100_000,  # 3 per tensor (entry, shape, offsets); GPT-2 has ~150 tensors
    "trainer state": 1_000, "log row": 100,  # flat objects: one container (brackets in text aside)
}  # fmt: skip
MAX_ROW_BYTES = 1 * MIB  # one line of metrics.jsonl / samples.jsonl


class LimitError(ValueError):
    """An input is larger than this program reads; the message says the size and the limit."""


class MemoryBudgetError(LimitError):
    """Something would need more memory than this server allows; the message says how much."""


def parse_bytes(text: str) -> int:
    """``"2GiB" → 2147483648``, ``"1.5 GB" → 1500000000``, ``"123" → 123``; ValueError otherwise."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in UNITS:
        raise ValueError(f"{ENV_VAR}={text!r} is not a size; write e.g. 2GiB, 1500MB or 2147483648")
    value = int(float(match.group(1)) * UNITS[match.group(2).lower()])
    if value < 64 * 2**20:
        raise ValueError(f"{ENV_VAR}={text!r} is below 64 MiB; the server alone needs more than that")
    return value


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 2**60:  # "max" or a huge number: no limit set
            return int(raw)
    return None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss() -> int | None:
    """This process's resident memory now, in bytes (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@functools.lru_cache(maxsize=4)
def _machine_budget() -> int:
    limit = _cgroup_limit()
    if limit is not None:
        return limit
    available = _meminfo_available()
    if available is not None:
        return available + (current_rss() or 0)
    return FALLBACK


def memory_budget() -> int:
    """This server's memory budget in bytes (see the module docstring for where it comes from)."""
    explicit = os.environ.get(ENV_VAR)
    return parse_bytes(explicit) if explicit else _machine_budget()


def check_memory(need: int, what: str, share: float = 1.0, budget: int | None = None) -> None:
    """Raise ``MemoryBudgetError`` when ``need`` bytes exceed ``share`` of the budget."""
    budget = memory_budget() if budget is None else budget
    allowed = int(budget * share)
    if need > allowed:
        portion = SHARE_WORDS.get(share, f"{share:.0%}")
        raise MemoryBudgetError(
            f"{what} needs about {human_bytes(need, decimals=1)}, above the {human_bytes(allowed, decimals=1)} one "
            f"{'training job' if share == JOB_SHARE else 'model'} may use ({portion} of this "
            f"server's memory budget of {human_bytes(budget, decimals=1)}); choose a smaller model, batch or "
            f"context (the budget is set by {ENV_VAR} or the machine's memory)"
        )


# --------------------------------------------------------------------------------------------
# Sizes, before reading
# --------------------------------------------------------------------------------------------


def file_limit(name: str) -> int | None:
    """The byte limit of a run file (by its name inside the run), None for weights."""
    return MAX_FILE_BYTES.get(name)


def check_size(name: str, size: int) -> None:
    """Refuse a file bigger than its limit, before anything reads it."""
    limit = file_limit(name)
    if limit is not None and size > limit:
        raise LimitError(f"{name}: {size:,} bytes is above the {limit:,}-byte limit for this file")


def check_json_shape(name: str, raw: bytes) -> None:
    """Refuse JSON that would build more arrays/objects than its kind of file needs, before
    ``json.loads`` builds them. Counting ``[`` and ``{`` bytes over-counts (brackets inside
    strings), which only errs on the side of refusing."""
    limit = MAX_JSON_CONTAINERS.get(name)
    if limit is None:
        return
    containers = raw.count(b"[") + raw.count(b"{")
    if containers > limit:
        raise LimitError(
            f"{name}: holds {containers:,} JSON arrays/objects, above the {limit:,} a {name} needs; "
            "refused before parsing (it would take far more memory than its size)"
        )
