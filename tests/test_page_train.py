"""AppTest: the Training and Runs pages, driven through their widgets, checked against toygpt itself.

Every test runs offline in its own runs/ and data/ folders (conftest). Real (nano, few-step)
training jobs run on the global job registry, which is cleared after each test. ``run_every``
fragments never fire in AppTest, so a test waits for the job and then calls ``at.run()`` again,
as the fragment's "job ended → rerun the app" would.
"""

from __future__ import annotations

import io
import json
import math
import socket
import time
import zipfile
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from pages._shared import FLASH_SHOWS, job_registry
from tests.polling import wait_for
from toygpt import data, runs
from toygpt.checkpoint import save_checkpoint
from toygpt.estimates import estimate
from toygpt.jobs import TrainStatus
from toygpt.model import GPT, GPTConfig, preset, total_parameters
from toygpt.pipeline import TrainSpec, run_training
from toygpt.run_archive import export_zip
from toygpt.runs import DEMO_RUN, create_run, list_runs, open_run
from toygpt.tokenizers import CharTokenizer
from toygpt.train import TrainConfig


@pytest.fixture(autouse=True)
def without_demo(monkeypatch, tmp_path):
    """These tests make their own runs; the shipped demo would otherwise be the default model."""
    monkeypatch.setenv("TOYGPT_DEMO_DIR", str(tmp_path / "no-demo"))

WAIT_S = 180  # generous: the two shared cores may be busy with other test runs
COPY_TEXT = "abc|abc\nqzkf|qzkf\nhello|hello\n" * 200  # only characters the copy corpus has


@pytest.fixture(autouse=True)
def offline_and_clean(monkeypatch, tmp_path):
    """No network (downloads go to a closed port) and no job left running; one torch thread
    comes from conftest (28 s vs 2.8 s for the same 30 nano steps on busy cores)."""
    monkeypatch.setenv("TOYGPT_OFFLINE", "1")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    real = data.DOWNLOADS["shakespeare"]
    closed = data.Download(f"http://127.0.0.1:{closed_port()}/input.txt", real.sha256, real.size, real.description)
    monkeypatch.setitem(data.DOWNLOADS, "shakespeare", closed)
    job_registry().clear()
    yield
    job_registry().clear()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_page(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=30)
    at.query_params.update(query or {})
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    return at


def runs_page() -> AppTest:
    """The Runs page in a new session (the runs on disk and the job registry are shared)."""
    at = AppTest.from_file("../app.py", default_timeout=30)
    at.run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    return at


def now_on_training(at: AppTest) -> AppTest:
    """After a click that switched to the Training page (``st.switch_page``): the app shows that
    page now; AppTest would rerun the page it was last pointed at, so point it there too."""
    assert at.radio(key="train_mode"), "the click should have opened the Training page"
    at.switch_page("pages/train.py")
    return at


def nano_settings(at: AppTest, steps: int | None = 30, seconds: int | None = None) -> None:
    """The built-in copy corpus, the nano preset, a small batch, and a steps or time budget."""
    at.selectbox(key="train_corpus").set_value("copy")
    at.selectbox(key="train_preset").set_value("nano")
    at.number_input(key="train_batch").set_value(4)
    at.radio(key="train_budget").set_value("seconds" if seconds is not None else "steps").run()
    budget = at.number_input(key="train_seconds" if seconds is not None else "train_steps")
    budget.set_value(seconds if seconds is not None else steps).run()
    assert not at.exception
    assert at.number_input(key="train_n_layer").value == 2  # the nano preset's shape was applied


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception
    return at


def started_job(at: AppTest):
    job = job_registry().get(at.query_params["job"])
    assert job is not None, "Start should pin the new job's id in the URL"
    return job


def finish(at: AppTest, job) -> TrainStatus:
    assert job.wait(WAIT_S), "the job did not end in time"
    at.run()  # what the fragment's st.rerun(scope="app") does when the job ends
    assert not at.exception
    return job.snapshot()


def table(at: AppTest):
    return at.dataframe[0].value.set_index("run")


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def trained_run(steps: int = 2, corpus: str = "copy") -> str:
    """A real finished run (weights, optimizer state, metrics), trained directly by toygpt."""
    config = TrainConfig(max_steps=steps, batch_size=2, eval_batches=1, max_snapshots=0)
    spec = TrainSpec(corpus=corpus, model=preset("nano"), train=config)
    seen = []
    run_training(spec, on_run=lambda run: seen.append(run.id))
    return seen[0]


def saved_run(name: str = "saved run") -> str:
    """A run folder with weights and a tokenizer but no training (cheap: for manage/import)."""
    tokenizer = CharTokenizer.from_text(COPY_TEXT)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=8)
    run = create_run(name=name, corpus="copy", tokenizer_spec="char", tokenizer=tokenizer,
                     model=GPT(config, seed=0), train_config=TrainConfig(max_steps=10))  # fmt: skip
    run.update_info(status="finished")
    return run.id


# --------------------------------------------------------------------------------------------
# Rendering and the estimate
# --------------------------------------------------------------------------------------------


def test_the_estimate_comes_from_steps_timed_here(monkeypatch):
    """Case 6 (issue 13): "≈1,362 steps" from a FLOP count, 367 done. The estimate now comes
    from training steps of the chosen shape timed on this machine, and says so; afterwards the
    job shows its measured steps/s and the estimate beside what it did."""
    import streamlit as st

    import toygpt.estimates

    st.cache_resource.clear()
    timed = []
    monkeypatch.setattr(toygpt.estimates, "measure_step_seconds", lambda m, c, **kw: timed.append(m) or 0.05)
    at = open_page()
    nano_settings(at, seconds=30)
    config = TrainConfig(max_seconds=30.0, batch_size=4, eval_interval=200)  # the page's defaults
    assert timed and timed[-1].n_layer == 2  # the nano shape was timed
    expected = estimate(timed[-1], config, seconds_per_step=0.05)["steps"]
    assert {m.label: m.value for m in at.metric}["Steps in the budget"] == f"≈ {expected:,}"
    assert "timed here just now" in texts(at.caption) and "20.0 steps/s" in texts(at.caption)


def test_renders_with_the_estimate_of_the_chosen_model():
    at = open_page()
    assert at.selectbox(key="train_corpus").value == "copy"  # tiny shakespeare is not cached here
    nano_settings(at)
    metrics = {m.label: m.value for m in at.metric}
    vocab = CharTokenizer.from_text(data.load_corpus("copy")).vocab_size
    assert metrics["Parameters"] == f"{total_parameters(preset('nano', vocab_size=vocab)):,}"
    assert "MiB" in metrics["Memory"] and metrics["Time"].startswith("≈")
    assert not at.button(key="train_start").disabled
    assert "No runs yet" in texts(runs_page().info)


def test_impossible_shape_and_too_big_a_model_are_explained():
    at = open_page()
    at.number_input(key="train_n_head").set_value(3).run()  # 128 channels do not split into 3 heads
    assert "not divisible by n_head=3" in texts(at.error)
    assert at.button(key="train_start").disabled
    at.selectbox(key="train_preset").set_value("gpt2").run()  # the preset resets the shape
    assert at.number_input(key="train_n_head").value == 12
    assert "above this app's limit" in texts(at.warning)
    click(at, "train_start")
    assert "Not started" in texts(at.error) and "GiB" in texts(at.error)
    assert job_registry().jobs() == []


# --------------------------------------------------------------------------------------------
# A job from start to finish
# --------------------------------------------------------------------------------------------


def test_nano_run_started_here_finishes_and_is_listed():
    at = open_page()
    nano_settings(at, steps=30)
    click(at, "train_start")
    job = started_job(at)
    snap = finish(at, job)
    assert snap.status == "finished" and snap.step == 30
    run_id = snap.run_id
    assert "finished" in texts(at.success)
    listed = runs_page()
    row = table(listed).loc[run_id]
    info = open_run(run_id).info()
    assert row["steps"] == 30 and row["status"] == "finished" and row["corpus"] == "copy"
    assert math.isclose(row["best val loss"], info["best_val_loss"])
    assert row["training time"] != "–"
    # the live chart (now final, on Training) and the comparison (on Runs) both draw this run's curves
    charts = [json.loads(c.proto.spec) for page in (at, listed) for c in page.get("plotly_chart")]
    assert len(charts) == 2 and all(any(run_id in t["name"] for t in c["data"]) for c in charts)
    # one click makes it the sidebar's model
    click(at, "train_use")
    assert at.session_state["active_run"] == run_id
    assert at.session_state["sidebar_model"] == run_id  # the sidebar picker's own state


def test_second_start_is_refused_and_stop_ends_the_job():
    at = open_page()
    nano_settings(at, seconds=600)
    click(at, "train_start")
    job = started_job(at)
    click(at, "train_start")  # a second start while the first runs
    assert "already running" in texts(at.error)
    assert "Training now:" in texts(at.info) and "copy" in texts(at.info)
    assert len(job_registry().jobs()) == 1

    refreshed = open_page({"job": job.id})  # a browser refresh: a new session, the same URL
    assert refreshed.button(key="train_stop")
    elsewhere = open_page()  # another tab without the link sees the job, and is offered the link
    assert "train_stop" not in [b.key for b in elsewhere.button]
    assert "another tab" in texts(elsewhere.caption) and f"?job={job.id}" in texts(elsewhere.caption)
    click(elsewhere, "train_adopt")  # case 8 (issue 13): any session holding the link can stop it
    assert elsewhere.query_params["job"] == job.id and elsewhere.button(key="train_stop")

    click(elsewhere, "train_stop")
    snap = finish(at, job)
    assert snap.status == "stopped"
    assert table(runs_page()).loc[snap.run_id, "status"] == "stopped"
    click(at, "train_dismiss")
    assert "job" not in at.query_params
    assert "Stop" not in [b.label for b in at.button]


def test_an_unknown_job_in_the_link_is_explained():
    at = open_page({"job": "no-such-job"})
    assert "not known to this server" in texts(at.info)
    assert "job" not in at.query_params


# --------------------------------------------------------------------------------------------
# Resume and fine-tune
# --------------------------------------------------------------------------------------------


def test_resume_continues_a_run_to_more_steps():
    run_id = trained_run(steps=2)
    at = runs_page()
    at.selectbox(key="runs_manage").set_value(run_id).run()
    now_on_training(click(at, "runs_resume"))  # sets up "Start a run" on the Training page, and goes there
    assert at.radio(key="train_mode").value == "resume"
    assert at.selectbox(key="train_resume_run").value == run_id
    at.number_input(key="train_more_steps").set_value(3).run()
    click(at, "train_start")
    snap = finish(at, started_job(at))
    assert snap.status == "finished" and snap.run_id == run_id
    assert open_run(run_id).info()["step"] == 5
    assert table(runs_page()).loc[run_id, "steps"] == 5


def test_the_runs_page_lists_runs_and_sends_resume_and_fine_tune_to_the_training_page():
    """The Runs page (split from Training): the table lists every run; Resume… and Fine-tune…
    open the Training page with that run set up and say so; the Training page has no table."""
    first, second = saved_run("alpha"), saved_run("bravo")
    at = runs_page()
    assert set(table(at).index) == {first, second}
    assert at.title[0].value == "Runs"
    at.selectbox(key="runs_manage").set_value(second).run()
    now_on_training(click(at, "runs_finetune"))
    assert at.radio(key="train_mode").value == "finetune"
    assert at.selectbox(key="train_finetune_run").value == second
    assert f"Fine-tune {second}" in texts(at.info) and at.title[0].value == "Training"
    assert not at.dataframe  # the runs table lives on the Runs page only
    at = runs_page()
    at.selectbox(key="runs_manage").set_value(first).run()
    now_on_training(click(at, "runs_resume"))
    assert (at.radio(key="train_mode").value, at.selectbox(key="train_resume_run").value) == ("resume", first)
    assert f"Resume {first}" in texts(at.info)


def test_fine_tune_needs_known_characters_then_makes_a_new_run():
    source = trained_run(steps=2)
    at = open_page()
    at.radio(key="train_mode").set_value("finetune").run()
    at.selectbox(key="train_finetune_run").set_value(source).run()
    at.radio(key="train_budget").set_value("steps").run()
    at.number_input(key="train_steps").set_value(3).run()
    at.selectbox(key="train_finetune_corpus").set_value("addition").run()  # digits: unknown to a copy model
    click(at, "train_start")
    snap = finish(at, started_job(at))
    assert snap.status == "failed" and "cannot encode this corpus" in texts(at.error)

    at.selectbox(key="train_finetune_corpus").set_value("__upload__").run()
    at.file_uploader(key="train_upload").set_value(("notes.txt", COPY_TEXT.encode(), "text/plain")).run()
    click(at, "train_start")
    snap = finish(at, started_job(at))
    assert snap.status == "finished"
    info = open_run(snap.run_id).info()
    assert info["init_from"] == source and info["corpus"] == "notes.txt"
    assert (open_run(snap.run_id).path / "corpus.txt").read_text() == COPY_TEXT
    assert {source, snap.run_id} <= set(table(runs_page()).index)


def test_fine_tune_gpt2_weights_with_only_the_last_block_learning(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    from toygpt.pretrained import add_pretrained, files_in_folder, load_pretrained

    monkeypatch.setenv("TOYGPT_PRETRAINED_DIR", str(tmp_path / "pretrained"))
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=32, vocab_size=50257)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "tiny-gpt2")
    add_pretrained(files_in_folder(tmp_path / "tiny-gpt2"), origin=str(tmp_path / "tiny-gpt2"))
    at = open_page()
    at.radio(key="train_mode").set_value("finetune").run()
    at.selectbox(key="train_finetune_run").set_value("pretrained:tiny-gpt2").run()
    assert at.number_input(key="train_ft_blocks").value == 1 and at.number_input(key="train_ft_context").value == 32
    at.number_input(key="train_ft_context").set_value(16).run()
    at.number_input(key="train_batch").set_value(2).run()
    at.radio(key="train_budget").set_value("steps").run()
    at.number_input(key="train_steps").set_value(2).run()
    at.selectbox(key="train_finetune_corpus").set_value("copy").run()
    assert not at.exception
    assert "Only the last 1 block(s) and ln_f learn: 3,312 of them learn"  # 12·16² + 13·16 + 2·16 in texts(at.caption)
    memory = {m.label: m.value for m in at.metric}["Memory"]
    job_registry().max_memory_bytes = 1024  # as if the app's cap were tiny: refused, with the number
    click(at, "train_start")
    assert f"this run needs about {memory}" in texts(at.error) and job_registry().jobs() == []
    job_registry().max_memory_bytes = 2 * 2**30
    click(at, "train_start")
    snap = finish(at, started_job(at))
    assert snap.status == "finished", texts(at.error)
    run = open_run(snap.run_id)
    assert run.info()["init_from"] == "pretrained:tiny-gpt2" and run.info()["tokenizer"] == "gpt2"
    before = load_pretrained("tiny-gpt2")[0].state_dict()
    after = run.load_model("latest").model.state_dict()
    changed = {n for n, t in before.items() if not torch.equal(t, after[n])}
    assert changed and all(n.startswith(("transformer.h.1.", "transformer.ln_f.")) for n in changed)


# --------------------------------------------------------------------------------------------
# Bad input: uploads, offline corpus, corrupt runs
# --------------------------------------------------------------------------------------------


def test_non_utf8_upload_is_explained():
    at = open_page()
    at.selectbox(key="train_corpus").set_value("__upload__").run()
    assert at.button(key="train_start").disabled
    at.file_uploader(key="train_upload").set_value(("latin1.txt", "café crème\n".encode("latin-1") * 50, "text/plain")).run()
    assert not at.exception
    assert "latin1.txt" in texts(at.error) and "not UTF-8" in texts(at.error)
    assert at.button(key="train_start").disabled
    # a file name is shown literally, never as markdown (no link, no image)
    at.file_uploader(key="train_upload").set_value(("![x](http://evil)[a](b).txt", b"\xff\xfe", "text/plain")).run()
    assert r"\!\[x\]\(http://evil\)\[a\]\(b\).txt" in texts(at.error)



def test_an_upload_over_the_limit_is_refused_in_the_pages_words():
    """The widget enforces the page's 20 MB; a file past the library's 20,000,000 bytes is refused
    without the library's Python advice ('or pass a larger max_bytes')."""
    at = open_page()
    at.selectbox(key="train_corpus").set_value("__upload__").run()
    (uploader,) = at.get("file_uploader")
    assert uploader.proto.max_upload_size_mb == 20
    at.file_uploader(key="train_upload").set_value(("big.txt", b"ab " * 6_700_000, "text/plain")).run()
    error = texts(at.error)
    assert "20,000,000" in error and "max_bytes" not in error


def test_shakespeare_offline_says_how_to_provide_it():
    """Case 8 (issue 13): the way to provide it is in the app (an upload), not a command."""
    at = open_page()
    at.selectbox(key="train_corpus").set_value("shakespeare").run()
    assert "not on this machine yet" in texts(at.warning)
    assert at.button(key="train_start").disabled
    click(at, "train_corpus_missing_download")
    assert "Upload the file here instead" in texts(at.error) and "python -m" not in texts(at.error)
    at.file_uploader(key="train_corpus_missing_file").set_value(("input.txt", b"not shakespeare", "text/plain")).run()
    assert "not the expected shakespeare file" in texts(at.error)
    assert not data.cached_corpus_path("shakespeare").exists()


def test_shakespeare_upload_is_checked_and_cached(shakespeare_path):
    at = open_page()
    at.selectbox(key="train_corpus").set_value("shakespeare").run()
    at.file_uploader(key="train_corpus_missing_file").set_value(("input.txt", shakespeare_path.read_bytes(), "text/plain")).run()
    assert not at.exception and not at.warning
    assert data.cached_corpus_path("shakespeare").read_bytes() == shakespeare_path.read_bytes()
    vocab = {m.label: m.value for m in at.metric}["Parameters"]
    assert vocab == f"{total_parameters(preset('small', vocab_size=65)):,}"  # 65 characters
    assert not at.button(key="train_start").disabled


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize(("content", "reason"), [
    (b"this is not a zip file", "not a zip file"),
    (zip_of({"run/run.json": b"{}", "run/../../evil.py": b"x"}), "leaves its folder"),
    (zip_of({"run/run.json": b"{}", "run/evil.py": b"x"}), "unexpected file"),
    (zip_of({"run/run.json": b"{}", "run/config.json": b"{broken"}), "not a usable run"),
])  # fmt: skip
def test_a_corrupt_run_zip_is_rejected_with_the_reason(content, reason):
    at = runs_page()
    at.file_uploader(key="runs_import").set_value(("run.zip", content, "application/zip")).run()
    assert not at.exception
    assert "was rejected" in texts(at.error) and reason in texts(at.error)
    assert list_runs(include_demo=False) == []


def test_a_downloaded_run_uploads_again_and_delete_asks_first():
    run_id = saved_run("shared model")
    exported = export_zip(run_id)
    at = runs_page()
    at.file_uploader(key="runs_import").set_value(("shared.zip", exported, "application/zip")).run()
    imported = [r.id for r in list_runs(include_demo=False) if r.id != run_id]
    assert len(imported) == 1 and imported[0] in texts(at.success)
    assert set(table(at).index) == {run_id, imported[0]}

    at.selectbox(key="runs_manage").set_value(imported[0]).run()
    click(at, "runs_delete")
    assert "for good" in texts(at.warning)
    assert open_run(imported[0]).path.exists()  # nothing deleted before the confirmation
    click(at, "runs_delete_yes")
    assert [r.id for r in list_runs(include_demo=False)] == [run_id]
    assert f"Deleted {imported[0]}" in texts(at.success)
    at.run()  # the browser reruns at once when the select box's options change: the message stays
    assert f"Deleted {imported[0]}" in texts(at.success)


def test_a_flash_is_forgotten_once_its_time_is_up():
    run_id = saved_run("kept")
    at = runs_page()
    at.session_state["flash"] = ("success", "Deleted long-ago.", 0.0, 0)  # set long before now
    for _ in range(FLASH_SHOWS):  # a slow server's reruns after the action still show it ...
        at.run()
        assert "Deleted long-ago." in texts(at.success)
    at.run()
    assert "Deleted long-ago." not in texts(at.success)  # ... and then it is forgotten
    assert run_id in table(at).index


def test_a_fresh_flash_lasts_its_seconds_however_many_reruns():
    saved_run("kept")
    at = runs_page()
    at.session_state["flash"] = ("success", "Deleted just-now.", time.monotonic(), 0)
    for _ in range(FLASH_SHOWS + 3):
        at.run()
        assert "Deleted just-now." in texts(at.success)


def test_a_run_downloads_for_transformers_unless_gpt2_cannot_express_it():
    run_id = saved_run("plain")
    at = runs_page()
    at.selectbox(key="runs_manage").set_value(run_id).run()
    (button,) = [b for b in at.get("download_button") if b.proto.label.startswith("Download for")]
    assert not button.proto.disabled and "GPT2LMHeadModel.from_pretrained" in button.proto.help
    post_ln = open_run(saved_run("post ln"))
    config = post_ln.model_config().replace(norm_position="post")
    save_checkpoint(post_ln.path, GPT(config), post_ln.tokenizer().to_dict(), step=0)
    post_ln.update_info(model_config=config.to_dict())
    at = runs_page()
    at.selectbox(key="runs_manage").set_value(post_ln.id).run()
    (button,) = [b for b in at.get("download_button") if b.proto.label.startswith("Download for")]
    assert button.proto.disabled and "GPT-2 normalises before each sub-layer" in button.proto.help
    assert "GPT-2's format cannot hold this variant: norm_position='post'" in texts(at.caption)


def test_the_demo_model_cannot_be_deleted(monkeypatch, tmp_path):
    run_id = saved_run("demo")
    demo = tmp_path / "checkpoints" / "shakespeare-char"
    demo.parent.mkdir()
    open_run(run_id).path.rename(demo)
    monkeypatch.setattr(runs, "demo_run_dir", lambda: Path(demo))
    at = runs_page()
    at.selectbox(key="runs_manage").set_value(DEMO_RUN).run()
    assert at.button(key="runs_delete").disabled
    assert at.button(key="runs_resume").disabled  # read-only: fine-tune it instead
    assert not at.button(key="runs_finetune").disabled
    assert demo.exists()


def test_a_run_cut_off_mid_training_shows_as_interrupted_and_can_be_resumed():
    run_id = saved_run("cut off")
    open_run(run_id).update_info(status="running")  # what a server stopped mid-run leaves behind
    at = runs_page()
    assert table(at).loc[run_id, "status"] == "interrupted"
    at.selectbox(key="runs_manage").set_value(run_id).run()
    assert "interrupted" in texts(at.caption)
    assert not at.button(key="runs_resume").disabled and not at.button(key="runs_delete").disabled
    now_on_training(click(at, "runs_resume"))
    click(at, "train_start")  # it never saved an optimizer state: the job says so
    snap = finish(at, started_job(at))
    assert snap.status == "failed" and "no optimizer state" in texts(at.error)


def test_gpt2_tokenizer_works_offline_from_the_pinned_package():
    at = open_page()
    at.selectbox(key="train_tokenizer").set_value("gpt2").run()
    assert not at.exception and "Not on this machine yet" not in texts(at.caption)


def test_gpt2_tokenizer_without_its_files_is_refused_before_a_job_starts(monkeypatch):
    from toygpt.tokenizers import tiktoken_

    monkeypatch.setattr(tiktoken_, "packaged_path", lambda url: None)  # as if not installed
    monkeypatch.setattr(tiktoken_, "_loaded", {})
    at = open_page()
    at.selectbox(key="train_tokenizer").set_value("gpt2").run()
    assert "Not on this machine yet" in texts(at.caption)
    assert {m.label: m.value for m in at.metric}["Parameters"] == f"{total_parameters(preset('small', vocab_size=50257)):,}"
    click(at, "train_start")
    assert "Not started" in texts(at.error)
    assert job_registry().jobs() == []


def test_after_a_delete_the_selection_label_description_and_action_name_one_existing_run():
    """Case 1 (issue 13): deleting the selected run left the box showing it while the page
    described, and Delete… offered, another run. Now every selection names a run that exists."""
    first, doomed, last = saved_run("alpha"), saved_run("bravo"), saved_run("charlie")
    for run_id in (first, last):
        open_run(run_id).update_info(status="finished", message=f"{run_id}'s own message")
    at = runs_page()
    at.selectbox(key="runs_manage").set_value(doomed).run()
    click(at, "runs_delete")
    click(at, "runs_delete_yes")
    existing = {r.id for r in list_runs(include_demo=False)}
    assert existing == {first, last}
    shown = at.selectbox(key="runs_manage")
    assert shown.value in existing  # a neighbour in the list, whichever order it has
    # the browser keeps showing its last choice unless the page sends the new one: it must
    assert shown.proto.set_value and shown.proto.raw_value == shown.value
    click(at, "runs_delete")
    warning = texts(at.warning)
    assert f"Delete **{shown.value}**" in warning and doomed not in warning
    assert f"{shown.value}'s own message" in texts(at.caption)  # the description is that run's too


def test_an_imported_run_becomes_the_one_managed():
    """Case 1 (import): Manage shows the run just imported, in the browser too."""
    saved_run("alpha")
    exported = export_zip(saved_run("bravo"))
    at = runs_page()
    at.file_uploader(key="runs_import").set_value(("b.zip", exported, "application/zip")).run()
    imported = (set(table(at).index) - {"alpha", "bravo"}).pop()
    shown = at.selectbox(key="runs_manage")
    assert shown.value == imported and shown.proto.set_value and shown.proto.raw_value == imported


@pytest.fixture
def duplication_warnings(monkeypatch) -> list[str]:
    """Streamlit's "created with a default value but also had its value set via the Session
    State API" check, which AppTest skips (no runtime) and a server logs once per process
    (its logger does not propagate, so the messages are collected here)."""
    from types import SimpleNamespace

    from streamlit.elements.lib import policies

    logged: list[str] = []
    monkeypatch.setattr(policies, "runtime", SimpleNamespace(exists=lambda: True))
    monkeypatch.setattr(policies, "_shown_default_value_warning", False)
    monkeypatch.setattr(policies, "_LOGGER", SimpleNamespace(
        warning=lambda message, *args, **_: logged.append(message % args)))
    return logged


def test_use_this_model_leaves_no_widget_warning_and_the_sidebar_shows_it(duplication_warnings):
    """Case 10 (issue 13): "Use this model" set the sidebar's model through session state while
    the box also had index=: Streamlit warned in the server log on every use."""
    first, second = saved_run("alpha"), saved_run("bravo")
    at = AppTest.from_function(sidebar_and_use_buttons, default_timeout=30).run()
    shown = at.selectbox(key="sidebar_model").value
    assert shown in (first, second)
    other = first if shown == second else second
    click(at, f"use_{other}")  # pages._shared.use_run, the callback of "Use this model"
    assert at.selectbox(key="sidebar_model").value == other == at.session_state["active_run"]
    assert duplication_warnings == []


def sidebar_and_use_buttons() -> None:
    """The shared sidebar and one "use" button per run (app.py's tree in AppTest keeps the
    sidebar on its first run only)."""
    import streamlit as st

    from pages._shared import sidebar, use_run
    from toygpt.runs import list_runs

    for info in list_runs():
        st.button(f"Use {info.id}", key=f"use_{info.id}", on_click=use_run, args=(info.id,))
    sidebar()


def test_the_runs_table_shows_a_running_jobs_own_step():
    """Case 2 (issue 13): the table said "steps 0" for the job at step 320 (run.json is written
    at checkpoints only). A run in training shows its job's figures, saying when they are from."""
    at = open_page()
    nano_settings(at, seconds=600)
    click(at, "train_start")
    job = started_job(at)
    wait_for(lambda: job.snapshot().step >= 15, WAIT_S, what="the job to get going")
    before = job.snapshot().step
    listed = runs_page()  # the table is drawn between the two readings
    after = job.snapshot().step
    row = table(listed).loc[job.snapshot().run_id]
    assert before <= row["steps"] <= after
    assert row["status"].startswith("running (as of ") and "live on the Training page" in row["status"]
    job.stop()
    finish(at, job)


def test_lab_runs_stay_in_the_lab_and_comparisons_start_with_curves():
    """Case 9 (issue 13): lab results crowded "Your runs" and the comparison defaulted to two lab
    runs, one without a curve."""
    mine = trained_run(steps=2)  # has validation measurements
    bare = saved_run("no curve yet")  # weights, no metrics
    tokenizer = CharTokenizer.from_text(COPY_TEXT)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=8)
    lab_run = create_run(name="lab-norm-position", corpus="copy", tokenizer_spec="char", tokenizer=tokenizer,
                         model=GPT(config, seed=0), train_config=TrainConfig(max_steps=1),
                         tags=("lab:norm-position", runs.RESULT_ONLY_TAG))  # fmt: skip
    lab_run.update_info(status="finished")
    at = runs_page()
    assert set(table(at).index) == {mine, bare}
    assert at.multiselect(key="runs_compare").value == [mine]  # only the run with a curve
    assert lab_run.id not in at.selectbox(key="runs_manage").options
    at.toggle(key="runs_show_lab").set_value(True).run()
    assert set(table(at).index) == {mine, bare, lab_run.id}
