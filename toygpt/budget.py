"""One memory budget for the whole server, checked *before* memory is spent.

A shared Streamlit app runs every visitor in one process with 1-3 GB of memory. Whatever a
visitor asks for — a training run, a model to load, a run zip to import — is costed from its
configuration first (parameters from the config and the real vocabulary, activations from
batch × context) and refused when it does not fit, with the number and the budget:

    >>> check_memory(3 * 2**30, "this run", share=JOB_SHARE, budget=2 * 2**30)
    Traceback (most recent call last):
    ...
    toygpt.budget.MemoryBudgetError: this run needs about 3.0 GiB, above the 1.0 GiB one training job may use (half of this server's memory budget of 2.0 GiB); ...

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

ENV_VAR = "TOYGPT_MEMORY_BUDGET"
FALLBACK = 2 * 2**30
JOB_SHARE = 0.5
LOAD_SHARE = 0.25
UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
         "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}  # fmt: skip
SHARE_WORDS = {JOB_SHARE: "half", LOAD_SHARE: "a quarter", 1.0: "all"}


class MemoryBudgetError(ValueError):
    """Something would need more memory than this server allows; the message says how much."""


def human_bytes(n: float) -> str:
    """``1536 → '1.5 KiB'``, ``3 * 2**30 → '3.0 GiB'``."""
    units, i = ("bytes", "KiB", "MiB", "GiB", "TiB"), 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.0f} bytes" if i == 0 else f"{n:.1f} {units[i]}"


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
            f"{what} needs about {human_bytes(need)}, above the {human_bytes(allowed)} one "
            f"{'training job' if share == JOB_SHARE else 'model'} may use ({portion} of this "
            f"server's memory budget of {human_bytes(budget)}); choose a smaller model, batch or "
            f"context (the budget is set by {ENV_VAR} or the machine's memory)"
        )


def model_bytes(config: object) -> int:
    """Bytes a model of ``config`` takes once loaded for inference: float32 weights, plus the
    sinusoid table when it has one. (Training adds gradients, AdamW and activations:
    ``toygpt.train.estimate``.)"""
    from toygpt.model import total_parameters

    table = 4 * config.block_size * config.n_embd if config.pos_encoding == "sinusoidal" else 0  # type: ignore[attr-defined]
    return 4 * total_parameters(config) + table  # type: ignore[arg-type]


def check_model_fits(config: object, what: str = "this model") -> None:
    """Refuse to build a model that would take more than a quarter of the budget."""
    check_memory(model_bytes(config), what, LOAD_SHARE)
