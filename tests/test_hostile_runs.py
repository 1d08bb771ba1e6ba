"""Hostile runs (issue 11): whatever a run folder or an uploaded zip holds, every reader checks it,
the listing shows it as "unreadable: <reason>" instead of raising, it can be deleted, and no
message names the server's folders."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from toygpt import run_archive, runs
from toygpt.model import preset
from toygpt.pipeline import TrainSpec, run_training
from toygpt.runs import RunError
from toygpt.train import TrainConfig

CONFIG = TrainConfig(max_steps=3, eval_interval=2, eval_batches=1, log_interval=1, checkpoint_interval=0)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, bytes]:
    """The files of a small exported run (made once for the module)."""
    base = tmp_path_factory.mktemp("source-runs")
    old = os.environ.get("TOYGPT_RUNS_DIR")
    os.environ["TOYGPT_RUNS_DIR"] = str(base)
    try:
        run_training(TrainSpec(corpus="copy", model=preset("nano"), train=CONFIG, name="source"))
        with zipfile.ZipFile(io.BytesIO(run_archive.export_zip("source"))) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    finally:
        os.environ["TOYGPT_RUNS_DIR"] = old or ""


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def with_info(files: dict[str, bytes], **changes) -> dict[str, bytes]:
    info = json.loads(files["source/run.json"])
    info.update(changes)
    return {**files, "source/run.json": json.dumps(info).encode()}  # json.dumps writes NaN/Infinity


def unpack_as_run(files: dict[str, bytes], run_id: str = "poisoned") -> Path:
    """Put the files straight into the runs folder (as a hand-copied folder would be)."""
    folder = runs.runs_dir() / run_id
    for name, content in files.items():
        target = folder / name.split("/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return folder


def runs_folder_entries() -> list[str]:
    root = runs.runs_dir()
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


# --------------------------------------------------------------------------------------------
# Kind 1: every file validated on import and on read; the listing never raises
# --------------------------------------------------------------------------------------------

BAD_INFO = [
    ({"step": "abc"}, "step='abc' must be a whole number"),
    ({"step": float("inf")}, "step=inf must be a whole number"),  # "1e999" parses as inf
    ({"best_val_loss": float("nan")}, "best_val_loss=nan must be a finite number"),
    ({"status": ["x"]}, "status=\\['x'\\] must be one of"),
    ({"tags": "abc"}, "tags='abc' must be a list"),
    ({"train_config": {"eval_batches": "many"}}, "eval_batches='many'"),
    ({"model_config": {"n_layer": 2, "bias": "yes"}}, "bias='yes'"),
    ({"elapsed": -5}, "elapsed=-5 must be ≥ 0"),
]


@pytest.mark.parametrize(("changes", "reason"), BAD_INFO)
def test_a_run_json_with_wrong_types_is_refused_on_import_and_leaves_nothing(exported, changes, reason):
    before = runs_folder_entries()
    with pytest.raises(RunError, match=reason):
        run_archive.import_zip(make_zip(with_info(exported, **changes)))
    assert runs_folder_entries() == before


@pytest.mark.parametrize(("changes", "reason"), BAD_INFO)
def test_a_bad_run_json_on_disk_is_listed_as_unreadable_and_can_be_deleted(exported, changes, reason):
    unpack_as_run(with_info(exported, **changes))
    (info,) = runs.list_runs(include_demo=False)
    assert (info.id, info.status) == ("poisoned", "unreadable")
    assert reason.replace("\\", "") in info.message or pytest.raises(RunError, match=reason)
    assert str(runs.runs_dir()) not in info.message  # kind 7: the reason names the file in the run
    runs.delete_run("poisoned")
    assert runs.list_runs(include_demo=False) == []


def test_the_issue_case_1e999_is_a_run_error_not_a_value_error(exported):
    raw = exported["source/run.json"].replace(b'"step": 3', b'"step": 1e999')
    assert raw != exported["source/run.json"]
    with pytest.raises(RunError, match="step=inf"):
        run_archive.import_zip(make_zip({**exported, "source/run.json": raw}))
    assert runs_folder_entries() == []


def test_deeply_nested_metrics_line_is_skipped_on_read_and_refused_on_import(exported):
    poisoned = {**exported, "source/metrics.jsonl": exported["source/metrics.jsonl"] + b"[" * 100_000 + b"\n"}
    with pytest.raises(RunError, match="metrics.jsonl line \\d+: log row: holds 100,000 JSON arrays/objects"):
        run_archive.import_zip(make_zip(poisoned))
    unpack_as_run(poisoned)
    rows = runs.read_metrics("poisoned")  # used to raise RecursionError
    assert rows and all(isinstance(r["step"], int) for r in rows)
    deep = b'{"type": "log", "step": 1, "message": "' + b"[" * 99 + b'"}\n'  # brackets in text: read
    unpack_as_run({**exported, "source/metrics.jsonl": exported["source/metrics.jsonl"] + deep}, "brackets")
    assert runs.read_metrics("brackets")[-1]["message"] == "[" * 99


@pytest.mark.parametrize(
    "row",
    [{"type": "step", "step": "abc"}, {"type": "eval", "step": 2, "val_loss": [1]},
     {"type": "oops", "step": 1}, {"type": "step", "step": -1}, {"type": "eval", "step": 1, "val_loss": 1e999}],
)  # fmt: skip
def test_metrics_rows_of_the_wrong_shape_are_skipped_on_read_and_refused_on_import(exported, row):
    line = json.dumps(row).encode() + b"\n"
    poisoned = {**exported, "source/metrics.jsonl": exported["source/metrics.jsonl"] + line}
    with pytest.raises(RunError, match="metrics.jsonl line"):
        run_archive.import_zip(make_zip(poisoned))
    unpack_as_run(poisoned)
    good = runs.read_metrics("poisoned")
    assert len(good) == exported["source/metrics.jsonl"].count(b"\n")


def test_resume_of_a_run_whose_metrics_hold_a_bad_step_continues(exported):
    """The issue's `train --resume` case: metrics.jsonl with "step": "abc" gave a TypeError."""
    run_training(TrainSpec(corpus="copy", model=preset("nano"), train=CONFIG.replace(checkpoint_interval=1), name="r"))
    with open(runs.open_run("r").path / "metrics.jsonl", "a") as handle:
        handle.write('{"type": "step", "step": "abc"}\n')
    end = run_training(TrainSpec(resume="r", train=CONFIG.replace(max_steps=5, checkpoint_interval=1)))
    assert (end["status"], end["step"]) == ("finished", 5)


def test_cli_runs_lists_a_poisoned_run_as_unreadable(exported):
    unpack_as_run(with_info(exported, step="abc"))
    env = {**os.environ, "TOYGPT_DEMO_DIR": str(runs.runs_dir() / "no-demo")}
    done = subprocess.run([sys.executable, "-m", "toygpt", "runs"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "poisoned" in done.stdout and "unreadable" in done.stdout


def test_import_messages_never_name_the_servers_folders(exported):
    poisoned = {**exported, "source/config.json": b'{"format_version": 1, "step": "x"}'}
    with pytest.raises(RunError) as caught:
        run_archive.import_zip(make_zip(poisoned))
    message = str(caught.value)
    assert "config.json" in message and str(runs.runs_dir()) not in message and ".import-" not in message


@pytest.mark.parametrize("page", ["pages/home.py", "pages/train.py", "pages/runs.py", "pages/explore.py", "pages/lab.py"])
def test_every_page_renders_beside_a_poisoned_run(exported, page, monkeypatch, tmp_path):
    monkeypatch.setenv("TOYGPT_DEMO_DIR", str(tmp_path / "no-demo"))
    unpack_as_run(with_info(exported, step="abc"), "poisoned")
    unpack_as_run(exported, "healthy")
    bad_metrics = {**exported, "source/metrics.jsonl": b"[" * 100_000 + b"\n"}
    unpack_as_run(bad_metrics, "bad-metrics")
    at = AppTest.from_file("../app.py", default_timeout=60).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]


# --------------------------------------------------------------------------------------------
# Kind 2: sizes bounded before anything is parsed or allocated, against one memory budget
# --------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name", ["run.json", "tokenizer.json", "config.json"])
def test_a_huge_json_file_is_refused_from_the_zip_directory_before_unpacking(exported, name):
    """The issue's 3.9 MB zip whose run.json is a 64 MB [[0],...] took 6.3 GB to import."""
    huge = b"[" + b"[0]," * (16 * 2**20) + b"[0]]"  # 64 MiB; deflates to a fraction of that
    before = peak_rss_mb()
    with pytest.raises(RunError, match=rf"{name}: 67,108,8\d\d bytes is above the [\d,]+-byte limit for this file"):
        run_archive.import_zip(make_zip({**exported, f"source/{name}": huge}))
    assert peak_rss_mb() - before < 400  # the zip and its bytes, nothing parsed
    assert runs_folder_entries() == []


@pytest.mark.parametrize("name", ["run.json", "tokenizer.json"])
def test_json_with_millions_of_containers_is_refused_before_parsing(exported, name):
    limit = {"run.json": 1_000, "tokenizer.json": 300_000}[name]
    many = b"[" + b"[0]," * (limit + 10) + b"[0]]"
    if name == "run.json":  # must fit the 1 MiB limit to reach the shape check
        many = b"[" + b"[]," * 2_000 + b"[]]"
    with pytest.raises(RunError, match=rf"{name}: holds [\d,]+ JSON arrays/objects, above the {limit:,}"):
        run_archive.import_zip(make_zip({**exported, f"source/{name}": many}))


def config_with(exported, **model) -> dict[str, bytes]:
    meta = json.loads(exported["source/config.json"])
    meta["model"].update(model)
    info = json.loads(exported["source/run.json"])
    info["model_config"].update(model)
    return {**exported, "source/config.json": json.dumps(meta).encode(), "source/run.json": json.dumps(info).encode()}


@pytest.mark.parametrize(
    ("model", "reason"),
    [({"pos_encoding": "sinusoidal", "block_size": 3_000_000}, "block_size=3000000 must be a whole number from 1 to 65,536"),
     ({"n_layer": 200_000, "n_head": 1, "n_embd": 4}, "n_layer=200000 must be a whole number from 1 to 256")],
)  # fmt: skip
def test_model_shapes_beyond_any_range_are_refused_at_once(exported, model, reason):
    import time

    started = time.perf_counter()
    with pytest.raises(RunError, match=reason):
        run_archive.import_zip(make_zip(config_with(exported, **model)))
    assert time.perf_counter() - started < 10  # the issue's n_layer case ran for over 180 s


def test_a_model_over_the_budget_is_refused_from_its_config_before_it_exists(exported, monkeypatch):
    """A small zip whose config.json describes a big model: refused from the config's numbers."""
    monkeypatch.setenv("TOYGPT_MEMORY_BUDGET", "256MiB")
    big = config_with(exported, n_layer=12, n_head=8, n_embd=512)  # 38M parameters = 152 MB > 64 MiB
    before = peak_rss_mb()
    with pytest.raises(RunError, match=r"config.json: the model in config.json needs about 1\d\d\.\d MiB, above the 64\.0 MiB one model may use \(a quarter of this server's memory budget of 256\.0 MiB\)"):
        run_archive.import_zip(make_zip(big))
    assert peak_rss_mb() - before < 100


def test_weights_over_the_budget_are_refused_from_the_zip_directory(exported, monkeypatch, tmp_path):
    """The issue's 487 KB zip holding a valid 500 MB model: zeros deflate to almost nothing."""
    monkeypatch.setenv("TOYGPT_MEMORY_BUDGET", "64MiB")
    zeros = json.dumps({"w": {"dtype": "F32", "shape": [5 * 2**20], "data_offsets": [0, 20 * 2**20]}}).encode()
    weights = len(zeros).to_bytes(8, "little") + zeros + bytes(20 * 2**20)
    data = make_zip({**exported, "source/model.safetensors": weights})
    assert len(data) < 2 * 2**20  # the rest of the run; the 20 MiB of weights pack to ~20 kB
    with pytest.raises(RunError, match=r"model.safetensors: 20,97\d,\d+ bytes is above the 16,777,216 bytes this server can load"):
        run_archive.import_zip(data)


def test_the_budget_comes_from_the_environment_or_the_machine(monkeypatch):
    from toygpt import limits as budget

    monkeypatch.setenv("TOYGPT_MEMORY_BUDGET", "1.5GiB")
    assert budget.memory_budget() == int(1.5 * 2**30)
    monkeypatch.setenv("TOYGPT_MEMORY_BUDGET", "lots")
    with pytest.raises(ValueError, match="TOYGPT_MEMORY_BUDGET='lots' is not a size"):
        budget.memory_budget()
    monkeypatch.delenv("TOYGPT_MEMORY_BUDGET")
    assert 64 * 2**20 < budget.memory_budget() < 2**50


def cjk_text(chars: int = 250_000, seed: int = 0) -> str:
    import random

    rng = random.Random(seed)
    pool = [chr(c) for c in (*range(0x4E00, 0xA000), *range(0x20000, 0x2A6E0))]
    return "".join(rng.choice(pool) for _ in range(chars))


def test_a_char_corpus_of_chinese_is_costed_with_its_real_vocabulary(monkeypatch):
    """0.75 MB of CJK text with the char tokenizer has ~60,000 distinct characters; the guard
    estimated 42.9 MiB (a 65-token vocabulary) and the run used 1.2 GB."""
    from toygpt.jobs import JobRefused, JobRegistry
    from toygpt.pipeline import estimated_memory

    text = cjk_text()
    assert len(text.encode()) > 750_000 and len(set(text)) > 50_000
    spec = TrainSpec(corpus="mine", corpus_text=text, tokenizer="char", model=preset("small"), train=CONFIG)
    assert estimated_memory(spec) > 500 * 2**20
    with pytest.raises(JobRefused, match=r"this run needs about \d+\.\d [MG]iB .* above the 256\.0 MiB one job may use here; choose"):
        JobRegistry(max_memory_bytes=256 * 2**20).start(spec)


def test_the_job_checks_the_real_vocabulary_again_before_building_the_model(monkeypatch):
    """A named corpus's vocabulary is only known once the tokenizer is built: checked then."""
    from toygpt.limits import MemoryBudgetError

    monkeypatch.setenv("TOYGPT_MEMORY_BUDGET", "128MiB")
    spec = TrainSpec(corpus="mine", corpus_text=cjk_text(20_000), tokenizer="char", model=preset("small"), train=CONFIG)
    with pytest.raises(MemoryBudgetError, match=r"this run needs about \d+\.\d MiB, above the 64\.0 MiB one training job may use"):
        run_training(spec)
    assert runs_folder_entries() == []


# --------------------------------------------------------------------------------------------
# Kind 5: a tokenizer and a model that do not fit each other are refused at import and load
# --------------------------------------------------------------------------------------------


def too_big_tokenizer(exported) -> dict[str, bytes]:
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 5_000)]
    return {**exported, "source/tokenizer.json": json.dumps({"type": "char", "chars": chars, "unk": False}).encode()}


def test_a_tokenizer_larger_than_the_models_vocabulary_is_refused_at_import(exported):
    with pytest.raises(RunError, match=r"tokenizer.json: the tokenizer has 5,000 tokens but the model's vocabulary only \d+"):
        run_archive.import_zip(make_zip(too_big_tokenizer(exported)))
    assert runs_folder_entries() == []


def test_a_tokenizer_larger_than_the_model_is_refused_at_every_load(exported):
    from toygpt.checkpoint import CheckpointError, load_checkpoint

    folder = unpack_as_run(too_big_tokenizer(exported), "mismatch")
    with pytest.raises(CheckpointError, match="the tokenizer has 5,000 tokens"):
        load_checkpoint(folder)  # what the pages' model cache calls
    with pytest.raises(CheckpointError, match="the tokenizer has 5,000 tokens"):
        runs.open_run("mismatch").load_model()
    with pytest.raises(CheckpointError, match="the tokenizer has 5,000 tokens"):
        runs.open_run("mismatch").tokenizer()
    assert not [i for i in runs.list_runs(include_demo=False) if i.id == "mismatch" and i.status == "unreadable"]


def test_the_explorer_says_a_mismatched_run_cannot_be_loaded(exported, monkeypatch, tmp_path):
    """The issue's case: the explorer's attention view raised 'token id 100 is outside the
    model's vocabulary'; now the model is refused when it is loaded, with the reason."""
    monkeypatch.setenv("TOYGPT_DEMO_DIR", str(tmp_path / "no-demo"))
    unpack_as_run(too_big_tokenizer(exported), "mismatch")
    at = AppTest.from_file("../app.py", default_timeout=60).run()
    at.switch_page("pages/explore.py").run()
    assert not at.exception
    assert any("the tokenizer has 5,000 tokens" in e.value for e in at.error), [e.value for e in at.error]


# --------------------------------------------------------------------------------------------
# Kind 3: every setting has a range; Stop ends every long loop within ~2 s
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [({"eval_batches": 10**9}, "eval_batches=1000000000 must be a whole number ≥ 1 and ≤ 10,000"),
     ({"sample_tokens": 10**9}, "sample_tokens=1000000000 must be a whole number ≥ 1 and ≤ 10,000"),
     ({"batch_size": 10**9}, "batch_size=1000000000 must be a whole number ≥ 1 and ≤ 4,096"),
     ({"max_seconds": 1e12}, "max_seconds=1000000000000.0 must be a number in"),
     ({"max_snapshots": 10**6}, "max_snapshots=1000000 must be a whole number ≥ 0 and ≤ 1,000")],
)  # fmt: skip
def test_out_of_range_train_settings_are_refused_in_code_and_in_an_upload(exported, changes, reason):
    with pytest.raises(ValueError, match=reason):
        CONFIG.replace(**changes)
    info = json.loads(exported["source/run.json"])
    with pytest.raises(RunError, match=reason):
        run_archive.import_zip(make_zip(with_info(exported, train_config={**info["train_config"], **changes})))


def letters_without_spaces(n: int = 2_000_000) -> str:
    import random

    return "".join(random.Random(0).choices("abcdefghijklmnopqrstuvwxyz", k=n))


def stop_after(job, seconds: float) -> float:
    """Let ``job`` work for ``seconds``, press Stop, return how long it took to end."""
    import time

    time.sleep(seconds)
    assert not job.done, f"the job ended by itself before Stop: {job.snapshot().message}"
    pressed = time.perf_counter()
    job.stop()
    assert job.wait(30), "the job ignored Stop for 30 s"
    return time.perf_counter() - pressed


@pytest.mark.parametrize(
    "work",
    ["a 10,000-batch evaluation", "a 10,000-token sample", "bpe-2048 on 2 MB without spaces"],
)
def test_stop_ends_every_long_loop_within_two_seconds(work):
    from toygpt.jobs import TrainJob

    quick = CONFIG.replace(max_steps=1000, eval_interval=1000, eval_batches=1)
    spec = {
        "a 10,000-batch evaluation": TrainSpec(corpus="copy", model=preset("small"), train=quick.replace(eval_batches=10_000)),
        "a 10,000-token sample": TrainSpec(corpus="copy", model=preset("nano"),
                                           train=quick.replace(sample_interval=1, sample_tokens=10_000)),
        "bpe-2048 on 2 MB without spaces": TrainSpec(corpus="mine", corpus_text=letters_without_spaces(),
                                                     tokenizer="bpe-2048", model=preset("nano"), train=quick),
    }[work]  # fmt: skip
    job = TrainJob(spec, num_threads=1).start()
    took = stop_after(job, 3.0)
    snap = job.snapshot()
    assert snap.status == "stopped", snap.message
    assert took < 2.5, f"Stop took {took:.1f} s during {work}"
    if work.startswith("bpe"):
        assert "preparing the data" in snap.message and runs.list_runs(include_demo=False) == []
    else:  # stopped mid-evaluation/sample, the run is saved and can be resumed
        (info,) = runs.list_runs(include_demo=False)
        assert runs.open_run(info.id).training_state()[0].step == snap.step


def test_a_job_that_cannot_finish_in_the_stated_time_is_refused_before_it_starts():
    from toygpt.jobs import JobRefused, JobRegistry

    registry = JobRegistry(max_seconds=60)
    endless_eval = TrainSpec(corpus="copy", model=preset("small"),
                             train=CONFIG.replace(max_steps=10_000, eval_interval=1, eval_batches=10_000))  # fmt: skip
    with pytest.raises(JobRefused, match=r"this run would take about [\d:]+ \(.*evaluation [\d:]+.*\), longer than the 1:00 one job may hold"):
        registry.start(endless_eval)
    slow_bpe = TrainSpec(corpus="mine", corpus_text=letters_without_spaces(), tokenizer="bpe-2048",
                         model=preset("nano"), train=CONFIG)  # fmt: skip
    with pytest.raises(JobRefused, match=r"tokenizer [\d:]+"):
        registry.start(slow_bpe)
    assert registry.jobs() == []


# --------------------------------------------------------------------------------------------
# Kind 7: messages name the file inside the run, never the server's folders
# --------------------------------------------------------------------------------------------


def test_no_message_names_the_servers_folders(exported):
    from toygpt.checkpoint import CheckpointError, load_checkpoint
    from toygpt.jobs import TrainJob

    root = str(runs.runs_dir())
    folder = unpack_as_run({**exported, "source/config.json": b'{"format_version": 1, "step": -1}'}, "broken")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(folder)  # what the pages' model cache calls
    assert str(caught.value).startswith("config.json: step must be") and root not in str(caught.value)
    with pytest.raises(RunError) as caught:
        runs.open_run("nothing-here")
    assert root not in str(caught.value)
    torn = unpack_as_run({**exported, "source/model.safetensors": b"\x08" + bytes(20)}, "torn")
    assert torn.is_dir()
    job = TrainJob(TrainSpec(resume="torn", train=CONFIG.replace(max_steps=5))).start()
    assert job.wait(60)
    snap = job.snapshot()
    assert snap.status == "failed" and "model.safetensors" in snap.message and root not in snap.message, snap.message


def test_the_pages_timing_probe_is_costed_before_it_allocates(monkeypatch):
    """The Training page times 3 steps of the chosen shape: a small model with a huge batch and
    context would have allocated gigabytes of activations before any check."""
    from toygpt.estimates import measure_step_seconds
    from toygpt.limits import MemoryBudgetError

    monkeypatch.setenv("TOYGPT_MEMORY_BUDGET", "512MiB")
    with pytest.raises(MemoryBudgetError, match="the timing probe of this shape needs about"):
        measure_step_seconds(preset("nano", block_size=8192), CONFIG.replace(batch_size=1024))
