"""Whether a training run uses ``torch.compile``, where its compiled kernels are kept, and how
long compiling took here before (what the pages say while a job is "preparing…").

``torch.compile`` traces the model's forward pass (and, through AOTAutograd, its backward) into
one graph and has Inductor write fused C++ kernels for everything between the matrix products:
LayerNorm, GELU, the residual adds and the loss become a few loops instead of dozens of
separate passes over memory. It needs a C++ compiler on a CPU (``g++``, ``clang++``; ``cl`` on
Windows) and takes tens of seconds the first time; Inductor keeps what it built in a cache
folder (``compile_cache_dir``), so a later run of the same shape compiles in a few seconds.

The step that compiles is not counted in the run's clock (``elapsed``, a ``max_seconds``
budget, the learning-rate schedule in seconds) nor in its pace: like building the tokenizer
and encoding the text, preparing comes on top, and the page says so while it happens.

``TrainConfig.compile``: ``True`` always tries (and falls back to eager with a logged reason
when compiling fails), ``False`` never, ``"auto"`` (the default) compiles where it is likely to
work and pay — see ``compile_choice``. ``$TOYGPT_COMPILE`` = ``0`` or ``1`` makes ``"auto"``
mean eager or compiled everywhere (the test suite sets 0: a compile per tiny test would cost
minutes); an explicit True/False is never overridden.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

COMPILE_ENV = "TOYGPT_COMPILE"
INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"  # Inductor's own variable: where its cache lives
TIMES_FILE = "compile_seconds.json"
MAX_TIMES = 200  # remembered compile times (one per model shape and setting)


def forced_compile() -> bool | None:
    """``$TOYGPT_COMPILE``: ``1`` → True, ``0`` → False, unset or empty → None."""
    value = os.environ.get(COMPILE_ENV, "").strip()
    if not value:
        return None
    if value not in ("0", "1"):
        raise ValueError(f"{COMPILE_ENV}={value!r}; set it to 1 (compile) or 0 (eager), or unset it")
    return value == "1"


def cpp_compiler() -> str | None:
    """The C++ compiler Inductor would call on a CPU (``$CXX``, else ``g++``; ``clang++`` on
    macOS, ``cl`` on Windows) when it is on the PATH, else None."""
    default = "cl" if sys.platform == "win32" else "clang++" if sys.platform == "darwin" else "g++"
    return shutil.which(os.environ.get("CXX") or default)


def compile_choice(
    setting: bool | str, device: torch.device, model: Any, data_parallel: bool = False
) -> tuple[bool, str]:
    """Whether to compile this run, and why (a sentence for the run's log). ``model``: the model
    or its config.

    ``"auto"`` compiles a GPT (the model measured in ``bench/train_speed.py``) on a CPU with a
    C++ compiler and fast bf16 (``compile_pays_on_this_cpu``) or on a CUDA GPU with Triton; not on Apple's MPS (Inductor's Metal backend is
    new), not for other models (the LSTM of ``toygpt.recurrent``) and not for a data-parallel
    run (DDP under compile was never measured here; ``compile=True`` still asks for it).
    """
    if isinstance(setting, bool):
        return setting, "torch.compile was asked for" if setting else "eager (compile=False)"
    forced = forced_compile()
    if forced is not None:
        return forced, f"{'torch.compile' if forced else 'eager'} ({COMPILE_ENV}={int(forced)})"
    from toygpt.model import GPT, GPTConfig  # (the model comes before training in reading order)

    if not isinstance(model, GPT | GPTConfig):
        return False, f"eager: compile='auto' compiles GPT models, not a {type(model).__name__}"
    if data_parallel:
        return False, "eager: compile='auto' does not compile data-parallel runs"
    if device.type == "cpu":
        compiler = cpp_compiler()
        if compiler is None:
            return False, "eager: no C++ compiler found (install g++ or clang++, or set CXX) for torch.compile"
        if not compile_pays_on_this_cpu():
            return False, ("eager: on a CPU without fast bf16 a compiled step measured only 1-4 % faster "
                           "(bench/train_speed.py) for ~15 s of compiling per run, ~2 min the first time; "
                           "compile=True (--compile) asks for it")  # fmt: skip
        return True, f"torch.compile with {Path(compiler).name}"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return (True, "torch.compile with Triton") if has_triton() else (False, "eager: Triton is not installed")
    return False, f"eager: compile='auto' does not compile on {device.type}"


def compile_pays_on_this_cpu() -> bool:
    """Whether a compiled step wins back its compile time on this CPU: where it multiplies bf16
    natively (AMX, AVX-512 BF16), autocast runs the step in bf16 and compiling fuses the casts and
    the elementwise work around the matrix products (the issue's measurement there: 1.68× nanoGPT's
    eager step compiled, 1.40-1.60× eager). On an AVX2 CPU in float32 the step is ~70 % matrix
    products (``bench/train_speed.py``'s floor) and compiling measured 1-4 % faster, for ~15 s
    of compiling per run with a warm cache and ~2 min the first time (``--startup``)."""
    from toygpt.train import cpu_has_fast_bf16  # (training's rules come before this module)

    return cpu_has_fast_bf16()


def compiled_forward(
    module: Any, setting: bool | str, device: torch.device, model: Any, data_parallel: bool, batch_size: int,
    block_size: int, autocast: torch.dtype | None,
) -> tuple[Any, bool, str, str | None]:
    """What a trainer calls for its forward pass: ``(forward, compiled, reason, key)``. Where
    ``compile_choice`` says so, ``torch.compile(module)`` (its kernels are built during the first
    step, into ``compile_cache_dir``) and the ``compile_key`` its compile time is remembered
    under; else ``module`` itself and key None."""
    compiled, reason = compile_choice(setting, device, model, data_parallel)
    if not compiled:
        return module, False, reason, None
    use_compile_cache()
    return torch.compile(module), True, reason, compile_key(model.config, batch_size, block_size, autocast)


def compile_cache_dir() -> Path:
    """Where Inductor keeps compiled kernels between runs: ``$TORCHINDUCTOR_CACHE_DIR`` when
    set, else ``torch-compile`` in toygpt's cache folder (``$XDG_CACHE_HOME/toygpt`` or
    ``~/.cache/toygpt``) rather than Inductor's default under /tmp, which a reboot empties."""
    explicit = os.environ.get(INDUCTOR_CACHE_ENV)
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "toygpt" / "torch-compile"


def use_compile_cache() -> Path:
    """Point Inductor at ``compile_cache_dir()`` (before the first compile of this process)."""
    path = compile_cache_dir()
    os.environ.setdefault(INDUCTOR_CACHE_ENV, str(path))
    return path


def compile_key(model_config: Any, batch_size: int, block_size: int, autocast: torch.dtype | None) -> str:
    """A name for one compiled shape: what the graph depends on (the model's config, the batch,
    the precision, torch's version)."""
    config = model_config.to_dict() if hasattr(model_config, "to_dict") else repr(model_config)
    what = [config, batch_size, block_size, str(autocast), torch.__version__]
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _times_path() -> Path:
    return compile_cache_dir() / TIMES_FILE


def _read_times() -> dict[str, float]:
    try:
        data = json.loads(_times_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no record yet, or a damaged one: the cache is disposable
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float) and 0 <= v < 86_400}


def last_compile_seconds(key: str) -> float | None:
    """How long compiling this shape took here last time (None: never compiled here)."""
    return _read_times().get(key)


def record_compile_seconds(key: str, seconds: float) -> None:
    """Remember how long this shape took to compile (best effort: a read-only cache is fine)."""
    times = _read_times()
    times.pop(key, None)
    times[key] = round(float(seconds), 2)
    kept = dict(list(times.items())[-MAX_TIMES:])
    path = _times_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(kept), encoding="utf-8")
        partial.replace(path)
    except OSError:
        pass


def preparing_event(key: str, step: int) -> dict[str, Any]:
    """The ``"preparing"`` event a trainer sends before the step that compiles: the wait ahead,
    from the last compile of this shape here (``compile_key``) when there was one."""
    last = last_compile_seconds(key)
    expect = f"took {last:.0f} s last time" if last is not None else "first time on this machine: up to a minute or more"
    return {"type": "preparing", "step": step, "what": "compiling", "expected_seconds": last,
            "message": f"preparing… compiling the model for this CPU ({expect}); later runs reuse the cache"}  # fmt: skip


def prepared_event(key: str, step: int, seconds: float, compiled: bool) -> dict[str, Any]:
    """The ``"prepared"`` event after that step (its time is remembered for next time), or after
    a compile that failed (``compiled`` False: the run goes on eagerly)."""
    if compiled:
        record_compile_seconds(key, seconds)
    message = f"compiled in {seconds:.1f} s (the first step included)" if compiled else "training eagerly"
    return {"type": "prepared", "step": step, "seconds": seconds, "compiled": compiled, "message": message}


def expected_compile(model_config: Any, train_config: Any) -> str:
    """What compiling will add before the first step, in words, for an estimate shown before a
    run starts ("" when the run will not compile): this shape's last compile time here, or that
    the first compile on this machine takes longer."""
    from toygpt.train import (  # (training's rules come after this module)
        autocast_dtype,
        choose_device,
    )

    device = choose_device(train_config.device)
    if not compile_choice(train_config.compile, device, model_config)[0]:
        return ""
    autocast = autocast_dtype(train_config.precision, device)
    block = train_config.block_size or model_config.block_size
    last = last_compile_seconds(compile_key(model_config, train_config.batch_size, block, autocast))
    if last is not None:
        return f"compiling first (torch.compile; {last:.0f} s the last time this shape compiled here)"
    return "compiling first (torch.compile; the first time on this machine can take a minute or more)"
