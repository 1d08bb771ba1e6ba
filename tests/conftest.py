"""Shared fixtures: a tiny seeded model config, the shared corpus when present, isolated
run/data directories so no test writes into the working directory, and the Concepts lab run
at an experiment's tiny setting through its page."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

from toygpt.model import GPT, GPTConfig

# Train eagerly, here and in the servers and CLIs the tests start: TrainConfig's compile="auto"
# would compile each tiny test model (seconds to a minute each). tests/test_compile.py unsets it
# where it compiles for real; `TOYGPT_COMPILE=1 pytest` runs the whole suite compiled.
os.environ.setdefault("TOYGPT_COMPILE", "0")

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    """Every test gets its own runs/ and data/ folders (toygpt reads these variables)."""
    base = tmp_path_factory.mktemp("toygpt-home")
    monkeypatch.setenv("TOYGPT_RUNS_DIR", str(base / "runs"))
    monkeypatch.setenv("TOYGPT_DATA_DIR", str(base / "data"))
    yield base


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No tiktoken files and no downloads, whatever this machine has cached (the tokenizer
    page's tests; a module that needs another kind of offline defines its own)."""
    from toygpt.tokenizers import tiktoken_ as tiktoken_module

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-empty"))
    monkeypatch.setenv("TOYGPT_OFFLINE", "1")
    monkeypatch.setattr(tiktoken_module, "_loaded", {})
    monkeypatch.setattr(tiktoken_module, "_failures", {})


@pytest.fixture
def tiny_config() -> GPTConfig:
    return GPTConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=16)


@pytest.fixture
def tiny_model(tiny_config) -> GPT:
    return GPT(tiny_config, seed=0).eval()


@pytest.fixture
def shakespeare_path() -> Path:
    path = Path(os.environ.get("TOYGPT_SHAKESPEARE", SHAKESPEARE))
    if not path.is_file():
        pytest.skip(f"tiny shakespeare not found at {path} (../shared/data is optional)")
    return path


@pytest.fixture(autouse=True)
def _few_threads():
    # One torch thread for every test: the models are tiny, so a second thread cannot speed them
    # up, and when the two cores are busy (a training thread, the browser tests' server) two
    # OpenMP threads wait on each other at every op — measured 10-50x slower. Tests that need
    # another count set it themselves.
    torch.set_num_threads(1)
    yield


class TinyLabRun(NamedTuple):
    """An experiment run from the lab page at its tiny setting: the page after the job ended,
    the job's last snapshot, the result's charts (figure JSON, in order) and the reading."""

    at: Any  # streamlit.testing.v1.AppTest
    snap: Any  # toygpt.lab.LabStatus
    charts: list[dict]
    reading: str


@pytest.fixture
def tiny_lab(monkeypatch, tmp_path) -> Callable[..., TinyLabRun]:
    """Run a lab experiment through the page, offline, with no demo model and no job left over:
    ``tiny_lab("scaling", before=lambda at: ...)`` (``before`` sets widgets before Run)."""
    from pages._shared import job_registry
    from tests.test_page_lab import figures, open_lab, reading_of, run_tiny

    monkeypatch.setenv("TOYGPT_DEMO_DIR", str(tmp_path / "no-demo"))  # the lab's default model otherwise
    monkeypatch.setenv("TOYGPT_OFFLINE", "1")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    job_registry().clear()

    def run(experiment: str, before: Callable[[Any], None] | None = None) -> TinyLabRun:
        at = open_lab(experiment)
        if before is not None:
            before(at)
        snap = run_tiny(at, experiment)
        return TinyLabRun(at, snap, figures(at, experiment), reading_of(at))

    yield run
    job_registry().clear()
