"""One home for each word more than one part of toygpt uses: the status vocabulary, the rule for
a run usable as a model, the tokenizer-name grammar, number formatting and snapshot paths."""

from __future__ import annotations

import ast
import doctest
import json
from pathlib import Path

import pytest

import toygpt.formatting
import toygpt.tokenizers.catalog
from tests.polling import wait_for
from toygpt import lab
from toygpt.formatting import about, clock, human_bytes, human_count
from toygpt.jobs import JobRegistry
from toygpt.model import GPT, GPTConfig, preset
from toygpt.pipeline import TrainSpec, estimated_memory
from toygpt.resume import resume_config
from toygpt.runs import (
    RESULT_ONLY_TAG,
    create_run,
    list_runs,
    open_run,
    status_now,
    usable_as_model,
)
from toygpt.status import ACTIVE, HAS_MODEL, Status, is_active
from toygpt.tokenizers import CharTokenizer, TokenizerError, get_tokenizer, parse_tokenizer_name
from toygpt.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
TINY = GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=1, n_embd=8)


@pytest.fixture(autouse=True)
def runs_here(tmp_path, monkeypatch):
    monkeypatch.setenv("TOYGPT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("TOYGPT_DEMO_DIR", str(tmp_path / "no-demo"))


def test_doctests_of_the_shared_words_pass():
    for module in (toygpt.formatting, toygpt.tokenizers.catalog):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0


# ---- status ----------------------------------------------------------------------------------


def test_status_is_its_string_so_old_run_files_read_the_same():
    assert Status.FINISHED == "finished" and json.dumps({"status": Status.DIVERGED}) == '{"status": "diverged"}'
    assert Status("stopped") is Status.STOPPED
    assert ACTIVE == {"queued", "running", "stopping"} and HAS_MODEL == {"finished", "stopped", "diverged"}
    assert is_active("running") and not is_active("finished")


def test_one_status_vocabulary_no_module_keeps_its_own_tuple():
    """The five vocabularies this replaced were tuples of status strings in runs.py, jobs.py,
    lab.py and two pages; none may come back."""
    offenders = []
    for path in [*ROOT.glob("toygpt/**/*.py"), *ROOT.glob("pages/*.py")]:
        if path.name == "status.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Tuple | ast.Set | ast.List):
                words = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if len(words & {s.value for s in Status}) >= 2:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_no_module_compares_a_status_with_a_string_of_its_own():
    """Status members, not string literals, wherever a status is compared, set or returned."""
    words = {s.value for s in Status}
    found = []
    for path in [*ROOT.glob("toygpt/**/*.py"), *ROOT.glob("pages/*.py")]:
        if path.name == "status.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                literals = [c for c in (node.left, *node.comparators) if isinstance(c, ast.Constant)]
            elif isinstance(node, ast.keyword) and node.arg == "status":
                literals = [node.value] if isinstance(node.value, ast.Constant) else []
            else:
                continue
            if any(c.value in words for c in literals):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


# ---- the rule for a run usable as a model ---------------------------------------------------


def _run(status: str, tags: tuple[str, ...] = ()) -> str:
    run = create_run(name=f"r-{status}", corpus="mine", tokenizer_spec="char", tokenizer=CharTokenizer.from_text("abcdefgh"),
                     model=GPT(TINY, seed=0), train_config=TrainConfig(max_steps=1), tags=tags)  # fmt: skip
    run.update_info(status=status)
    return run.id


@pytest.mark.parametrize(
    ("status", "tags", "usable"),
    [("finished", (), True), ("stopped", (), True), ("diverged", (), True), ("failed", (), False),
     ("running", (), False), ("finished", (RESULT_ONLY_TAG,), False), ("finished", ("lab:positions",), True)],
)  # fmt: skip
def test_usable_as_model_is_status_weights_and_not_a_by_product(status, tags, usable):
    run_id = _run(status, tags)
    (info,) = [i for i in list_runs() if i.id == run_id]
    assert usable_as_model(info) is usable


def test_a_run_without_weights_is_not_usable():
    run_id = _run("finished")
    for name in ("model.safetensors", "best.safetensors"):
        (open_run(run_id).path / name).unlink(missing_ok=True)
    (info,) = list_runs()
    assert not usable_as_model(info)


def test_model_pickers_use_the_one_rule():
    """The sidebar, the lab's run picker and the Training page's "Use this model" button each had
    their own rule; now they call runs.usable_as_model (the job panel's button through the
    sidebar's list)."""
    sources = {name: (ROOT / "pages" / name).read_text(encoding="utf-8") for name in ("_shared.py", "lab.py", "train.py")}
    assert "usable_as_model(" in sources["_shared.py"] and "usable_as_model(" in sources["lab.py"]
    assert "status.run_id in model_choices()" in sources["_shared.py"]
    assert all("lab:result-only" not in text for text in sources.values())


# ---- tokenizer names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind", "vocab"),
    [("char", "char", None), ("byte", "byte", 256), ("bpe-512", "bpe", 512), ("gpt2", "tiktoken", 50257),
     ("cl100k_base", "tiktoken", 100277), ("bpe:/tmp/tok.json", "bpe-file", None)],
)  # fmt: skip
def test_tokenizer_names_are_parsed_in_one_place(spec, kind, vocab):
    name = parse_tokenizer_name(spec)
    assert (name.kind, name.vocab_size) == (kind, vocab)
    assert name.needs_corpus == (kind in ("char", "bpe"))


@pytest.mark.parametrize("spec", ["bpe-", "bpe-12a", "bpe-٣٢", "wordpiece", ""])
def test_bad_tokenizer_names_are_refused_with_the_forms_that_work(spec):
    with pytest.raises(TokenizerError, match="bpe-512"):
        parse_tokenizer_name(spec)


def test_every_user_of_a_tokenizer_name_reads_it_the_same_way():
    # the training estimate sizes the vocabulary from the name...
    small = estimated_memory(TrainSpec(tokenizer="bpe-300", model=TINY))
    large = estimated_memory(TrainSpec(tokenizer="bpe-3000", model=TINY))
    assert large > small
    # ...the lab accepts what the grammar reads and refuses the rest with its own range
    assert lab.tokenization.TokenizationParams(tokenizers=("char", "bpe-300")).tokenizers == ("char", "bpe-300")
    for bad in ("bpe-12a", "bpe-256", "bpe:/x.json"):
        with pytest.raises(lab.LabError, match="bpe-N with N from 257"):
            lab.tokenization.TokenizationParams(tokenizers=(bad,))
    # ...and builds the tokenizer through get_tokenizer (bpe-N trained on the text)
    assert get_tokenizer("bpe-260", corpus_text="aaab" * 50).vocab_size == 260


# ---- formatting ------------------------------------------------------------------------------


def test_formatting_helpers():
    assert clock(59.6) == "1:00" and clock(3725) == "1:02:05" and clock(float("nan")) == "–"
    assert clock(None, unknown="--:--") == "--:--"
    assert human_bytes(512) == "512 B" and human_bytes(1536, decimals=1) == "1.5 KiB"
    assert human_bytes(50 * 2**20, decimals=1) == "50.0 MiB" and human_bytes(3_239_424) == "3.09 MiB"
    assert human_count(800_000) == "800 k" and about(700) == "about 11.7 min"


def test_each_formatting_helper_is_defined_once():
    names = {"clock", "_clock", "human_bytes", "human_count", "mib", "about", "_about", "millions", "_millions"}
    found = []
    for path in [*ROOT.glob("toygpt/**/*.py"), *ROOT.glob("pages/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name in names:
                found.append((str(path.relative_to(ROOT)), node.name))
    assert sorted(found) == sorted(("toygpt/formatting.py", n) for n in ("clock", "about", "human_bytes", "human_count"))


# ---- snapshot paths --------------------------------------------------------------------------


def test_snapshot_paths_come_from_the_runs_api():
    run = open_run(_run("finished"))
    latest = run.list_snapshots()[-1]
    assert run.snapshot_path(latest) == run.path / "model.safetensors"
    with pytest.raises(ValueError, match="no snapshot at step 12345"):
        run.snapshot_path(12345)
    pages = [(ROOT / "pages" / p).read_text(encoding="utf-8") for p in ("explore.py", "train.py", "lab.py")]
    assert all("step-{" not in text and '"snapshots"' not in text for text in pages)


# ---- rules the Training page used to decide for itself ----------------------------------------


def test_a_running_run_nothing_here_trains_is_interrupted():
    run_id = _run("running")
    (info,) = list_runs()
    assert status_now(info, training=set()) == Status.INTERRUPTED
    assert status_now(info, training={run_id}) == Status.RUNNING
    open_run(run_id).update_info(status=Status.STOPPED)
    (info,) = list_runs()
    assert status_now(info, training=set()) == Status.STOPPED


def test_resume_adds_steps_to_where_the_run_is_and_drops_the_time_budget():
    run = open_run(_run("stopped"))
    run.update_info(step=120)
    config = resume_config(run, 500)
    assert config.max_steps == 620 and config.max_seconds is None
    assert config.learning_rate == run.train_config().learning_rate  # its own settings continue
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="whole number of steps"):
            resume_config(run, bad)


def test_the_registry_says_which_runs_it_is_training():
    registry = JobRegistry(max_jobs=1, num_threads=1)
    try:
        job = registry.start(TrainSpec(corpus="copy", model=preset("nano"), name="busy",
                                       train=TrainConfig(max_steps=100_000, eval_interval=1000, log_interval=1)))  # fmt: skip
        wait_for(lambda: job.snapshot().run_id is not None, what="the job's run folder")
        assert registry.training_runs() == {"busy"}
    finally:
        registry.clear()
    assert registry.training_runs() == set()
    source = (ROOT / "pages" / "train.py").read_text(encoding="utf-8")
    assert "def shown_status" not in source and "max_steps=info.steps" not in source
