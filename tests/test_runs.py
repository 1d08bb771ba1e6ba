"""Run folders: names, resume equivalence, snapshots, listing, export/import (and hostile zips),
the read-only demo."""

from __future__ import annotations

import io
import json
import threading
import zipfile

import pytest
import torch

from toygpt import run_archive, runs
from toygpt.checkpoint import load_checkpoint
from toygpt.model import GPT, preset
from toygpt.pipeline import TrainSpec, run_training
from toygpt.runs import RunError
from toygpt.train import TrainConfig

CONFIG = TrainConfig(max_steps=20, eval_interval=5, eval_batches=2, log_interval=1, checkpoint_interval=0)


def nano_run(name: str, config: TrainConfig = CONFIG, **kwargs):
    spec = TrainSpec(corpus="copy", model=preset("nano"), train=config, name=name)
    return run_training(spec, **kwargs)


def weights(model: GPT) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------
# Names and ids
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [("../../etc/passwd", "etc-passwd"), ("My Run #1", "my-run-1"), ("C:\\Windows\\x", "c-windows-x"),
     ("héllo wörld", "hello-world"), ("🙂🙂", ""), ("a" * 200, "a" * 60)],
)  # fmt: skip
def test_slugify(name, slug):
    assert runs.slugify(name) == slug


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "UPPER", "-dash", "x" * 100, ".hidden", "a\x00b"])
def test_run_ids_that_could_escape_are_refused(bad):
    with pytest.raises(RunError, match="is not a run id"):
        runs.open_run(bad)


def test_names_are_sanitised_and_never_overwrite():
    first = nano_run("../../Evil Name", CONFIG.replace(max_steps=1))
    assert first["status"] == "finished"
    nano_run("../../Evil Name", CONFIG.replace(max_steps=1))
    nano_run(runs.DEMO_RUN, CONFIG.replace(max_steps=1))  # the demo's id is reserved
    ids = sorted(info.id for info in runs.list_runs(include_demo=False))
    assert ids == ["demo-shakespeare-char-2", "evil-name", "evil-name-2"]
    assert all(p.parent == runs.runs_dir() for p in runs.runs_dir().iterdir())
    assert runs.open_run("evil-name").info()["name"] == "../../Evil Name"  # shown, never a path


# --------------------------------------------------------------------------------------------
# Resume
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_resume_gives_identical_weights(dropout):
    config = CONFIG
    spec = TrainSpec(corpus="copy", model=preset("nano", dropout=dropout), train=config, name="straight")
    run_training(spec)
    stop = threading.Event()
    halves = TrainSpec(corpus="copy", model=preset("nano", dropout=dropout), train=config, name="halves")
    first = run_training(halves, on_event=lambda e: e["type"] == "step" and e["step"] == 10 and stop.set(), stop_event=stop)
    assert first["status"] == "stopped" and first["step"] == 10
    second = run_training(TrainSpec(resume="halves"))
    assert second["status"] == "finished" and second["step"] == 20
    straight = weights(runs.open_run("straight").load_model("latest").model)
    resumed = weights(runs.open_run("halves").load_model("latest").model)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    steps = [r["step"] for r in runs.read_metrics("halves") if r["type"] == "step"]
    assert steps == list(range(1, 21))  # the curve continues without gaps or repeats
    assert runs.open_run("halves").info()["status"] == "finished"


def test_resume_refuses_a_torn_checkpoint():
    nano_run("torn", CONFIG.replace(max_steps=4))
    run = runs.open_run("torn")
    config = json.loads((run.path / "config.json").read_text())
    config["step"] = 3  # as if the process died between the optimizer and the weights
    (run.path / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="weights are from step 3 but the optimizer state from step 4"):
        run_training(TrainSpec(resume="torn"))


def test_unknown_and_demo_runs_cannot_be_resumed():
    with pytest.raises(RunError, match="no run 'ghost'"):
        run_training(TrainSpec(resume="ghost"))


# --------------------------------------------------------------------------------------------
# Files of a run, snapshots
# --------------------------------------------------------------------------------------------


def test_run_folder_contents_and_listing():
    end = nano_run("files", CONFIG.replace(sample_interval=10, sample_tokens=8))
    run = runs.open_run("files")
    names = {p.name for p in run.path.iterdir()}
    assert {"run.json", "config.json", "tokenizer.json", "model.safetensors", "best.safetensors",
            "optimizer.safetensors", "metrics.jsonl", "samples.jsonl", "snapshots"} <= names  # fmt: skip
    assert not any(name.startswith(".") for name in names)  # no temp files left over
    info = next(i for i in runs.list_runs() if i.id == "files")
    assert info.steps == 20 and info.best_val_loss == pytest.approx(end["best_val_loss"])
    assert info.status == "finished" and info.corpus == "copy"
    best = run.load_model("best")
    assert load_checkpoint(run.path).config == best.config
    assert [s["step"] for s in run.read_samples()] == [10, 20]


@pytest.fixture(scope="module")
def snapshots_run(tmp_path_factory):
    """One nano run of 810 steps keeping 3 snapshots, trained once for the tests below (read
    only). fp32 is pinned: the drift test depends on training numerics, which bf16 autocast
    (what precision="auto" picks on a CPU with AVX-512 BF16) changes."""
    runs_dir = tmp_path_factory.mktemp("snapshot-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOYGPT_RUNS_DIR", str(runs_dir))
        config = CONFIG.replace(max_steps=810, eval_interval=1000, max_snapshots=3, precision="fp32")
        assert nano_run("snaps", config)["status"] == "finished"
    return runs_dir


def test_snapshots_are_log_spaced_and_bounded(snapshots_run, monkeypatch):
    monkeypatch.setenv("TOYGPT_RUNS_DIR", str(snapshots_run))
    run = runs.open_run("snaps")
    files = sorted(p.name for p in (run.path / "snapshots").iterdir())
    assert files == [runs.snapshot_name(s) for s in (0, 50, 800)]  # 0, 50, 200, 800 thinned to 3
    assert runs.list_snapshots("snaps") == [0, 50, 800, 810]  # and the latest weights last
    latest = run.load_model("latest").model
    assert runs.load_snapshot("snaps", 800).state_dict().keys() == latest.state_dict().keys()
    size = (run.path / "snapshots" / runs.snapshot_name(800)).stat().st_size
    assert size < 0.4 * (run.path / "model.safetensors").stat().st_size
    with pytest.raises(RunError, match="no snapshot at step 7"):
        runs.load_snapshot("snaps", 7)


def test_a_trained_snapshot_predicts_like_its_weights(snapshots_run, monkeypatch):
    """int8 fidelity alone, on trained weights: the latest weights against their own snapshot
    (holds at any training precision: the weights are float32 either way)."""
    monkeypatch.setenv("TOYGPT_RUNS_DIR", str(snapshots_run))
    latest = runs.open_run("snaps").load_model("latest").model
    restored = GPT(latest.config, seed=99).eval()
    restored.load_state_dict(runs.dequantize(runs.snapshot_tensors(latest), dict(restored.state_dict())), strict=False)
    ids = torch.randint(0, latest.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (latest(ids)[0].softmax(-1) - restored(ids)[0].softmax(-1)).abs().max() < 0.02


def test_ten_more_steps_move_predictions_far_less_than_training_did(snapshots_run, monkeypatch):
    """Training drift, in fp32 (see ``snapshots_run``): the snapshot ten steps before the end
    predicts nearly like the end, the untrained one does not (ratio 0.067 here; 0.26 with bf16
    autocast, where this test used to fail)."""
    monkeypatch.setenv("TOYGPT_RUNS_DIR", str(snapshots_run))
    latest = runs.open_run("snaps").load_model("latest").model
    ids = torch.randint(0, latest.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact = latest(ids)[0].softmax(-1)
        close = runs.load_snapshot("snaps", 800)(ids)[0].softmax(-1)  # int8, ten steps earlier
        untrained = runs.load_snapshot("snaps", 0)(ids)[0].softmax(-1)
    assert (exact - close).abs().mean() < 0.2 * (exact - untrained).abs().mean()


def test_a_snapshot_predicts_like_the_weights_it_came_from():
    model = GPT(preset("nano", vocab_size=28), seed=3).eval()
    tensors = runs.snapshot_tensors(model)
    restored = GPT(preset("nano", vocab_size=28), seed=4).eval()
    restored.load_state_dict(runs.dequantize(tensors, dict(restored.state_dict())), strict=False)
    ids = torch.randint(0, 28, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model(ids)[0].softmax(-1) - restored(ids)[0].softmax(-1)).abs().max() < 0.01


def test_quantize_rows_error_is_small():
    w = torch.randn(64, 48, generator=torch.Generator().manual_seed(0))
    q, scale = runs.quantize_rows(w)
    assert q.dtype == torch.int8 and scale.shape == (64, 1)
    assert ((q.float() * scale - w).abs() <= scale / 2 + 1e-7).all()  # off by at most half a step


def test_truncated_metrics_line_is_skipped():
    nano_run("crash", CONFIG.replace(max_steps=2))
    path = runs.open_run("crash").path / "metrics.jsonl"
    with open(path, "a") as handle:
        handle.write('{"type": "step", "ste')
    assert all(isinstance(r, dict) for r in runs.read_metrics("crash"))


def test_delete_run():
    nano_run("doomed", CONFIG.replace(max_steps=1))
    runs.delete_run("doomed")
    assert not (runs.runs_dir() / "doomed").exists()
    with pytest.raises(RunError, match="no run 'doomed'"):
        runs.delete_run("doomed")


# --------------------------------------------------------------------------------------------
# Export and import
# --------------------------------------------------------------------------------------------


def test_export_import_round_trip():
    nano_run("traveller", CONFIG.replace(max_steps=4))
    data = run_archive.export_zip("traveller")
    new_id = run_archive.import_zip(data)
    assert new_id == "traveller-2"
    original, copy = runs.open_run("traveller"), runs.open_run(new_id)
    assert runs.read_metrics(new_id) == runs.read_metrics("traveller")
    a, b = weights(original.load_model().model), weights(copy.load_model().model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert copy.info()["id"] == new_id
    assert runs.list_snapshots(new_id) == runs.list_snapshots("traveller")


def _zip(files: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def _valid_files() -> dict[str, bytes]:
    nano_run("source", CONFIG.replace(max_steps=2))
    with zipfile.ZipFile(io.BytesIO(run_archive.export_zip("source"))) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: {**f, "../evil.txt": b"x"}, "'../evil.txt', a path that leaves its folder"),
        (lambda f: {**f, "source/../../evil.json": b"x"}, "zip slip"),
        (lambda f: {**f, "/etc/cron.d/x": b"x"}, "zip slip"),
        (lambda f: {**f, "C:\\evil.txt": b"x"}, "zip slip"),
        (lambda f: {**f, "source/notes.py": b"print(1)"}, "unexpected file"),
        (lambda f: {**f, "source/model.safetensors": b"\x00" * 40}, "not a usable run"),
        (lambda f: {k: v for k, v in f.items() if not k.endswith("config.json")}, "not a usable run"),
        (lambda f: {**f, "source/run.json": b"[1, 2"}, "not a usable run"),
        (lambda f: {}, "the zip is empty"),
    ],
)
def test_hostile_or_broken_zips_are_refused(mutate, message):
    files = _valid_files()
    before = sorted(p.name for p in runs.runs_dir().iterdir())
    with pytest.raises(RunError, match=message):
        run_archive.import_zip(_zip(mutate(files)))
    assert sorted(p.name for p in runs.runs_dir().iterdir()) == before  # nothing left behind


def test_symlinks_bombs_and_non_zips_are_refused(monkeypatch):
    files = _valid_files()
    with pytest.raises(RunError, match="symbolic link"):
        run_archive.import_zip(_zip(files, symlink="source/corpus.txt"))
    with pytest.raises(RunError, match="not a zip file"):
        run_archive.import_zip(b"PK\x03\x04 definitely not a zip")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("source/corpus.txt", b"0" * 1_000_000)  # ~1 kB packed, 1 MB unpacked
    monkeypatch.setattr(run_archive, "MAX_IMPORT_BYTES", 100_000)
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(RunError, match="unpacks to more than 100,000 bytes"):
        run_archive.import_zip(bomb.getvalue())
    with pytest.raises(RunError, match="above the 100,000-byte limit"):
        run_archive.import_zip(_zip(files))


# --------------------------------------------------------------------------------------------
# The shipped demo
# --------------------------------------------------------------------------------------------


def test_demo_run_is_listed_loadable_and_read_only():
    if not (runs.demo_run_dir() / "run.json").exists():
        pytest.skip("the demo checkpoint is not in this checkout")
    demo = runs.open_run(runs.DEMO_RUN)
    info = next(i for i in runs.list_runs() if i.id == runs.DEMO_RUN)
    assert info.read_only and info.best_val_loss is not None and info.best_val_loss < 1.8
    checkpoint = load_checkpoint(runs.demo_run_dir())
    assert checkpoint.config.vocab_size == 65 and checkpoint.tokenizer["type"] == "char"
    assert 3 <= len(demo.list_snapshots()) <= 5 and demo.list_snapshots()[0] == 0
    demo.load_snapshot(demo.list_snapshots()[0])
    size = sum(p.stat().st_size for p in runs.demo_run_dir().rglob("*") if p.is_file())
    assert size <= 5_000_000
    with pytest.raises(RunError, match="read-only"):
        runs.delete_run(runs.DEMO_RUN)
    with pytest.raises(RunError, match="read-only"):
        run_training(TrainSpec(resume=runs.DEMO_RUN))


def test_pack_makes_a_small_read_only_copy(tmp_path):
    nano_run("full", CONFIG.replace(max_steps=60, eval_interval=20))
    target = run_archive.pack_run("full", tmp_path / "packed", snapshots=[0, 50], metrics_every=20)
    packed = runs.Run(target, read_only=True)
    assert packed.list_snapshots() == [0, 50, 60]
    full_size = (runs.open_run("full").path / "model.safetensors").stat().st_size
    assert (target / "model.safetensors").stat().st_size < 0.6 * full_size  # float16
    assert not (target / "optimizer.safetensors").exists()
    latest = runs.open_run("full").load_model("latest").model
    with torch.no_grad():
        ids = torch.randint(0, latest.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
        assert torch.allclose(latest(ids)[0], packed.load_model().model(ids)[0], atol=1e-2)
    assert {r["step"] for r in packed.read_metrics() if r["type"] == "step"} == {20, 40, 60}
    with pytest.raises(RunError, match="not empty"):
        run_archive.pack_run("full", target)
    with pytest.raises(RunError, match="no snapshot files at steps \\[7\\]"):
        run_archive.pack_run("full", tmp_path / "other", snapshots=[7])


def test_demo_can_be_hidden_or_moved(monkeypatch, tmp_path):
    monkeypatch.setenv("TOYGPT_DEMO_DIR", str(tmp_path / "nowhere"))
    assert runs.DEMO_RUN not in [i.id for i in runs.list_runs()]
    with pytest.raises(RunError, match="the demo model is missing"):
        runs.open_run(runs.DEMO_RUN)
