"""One visitor cannot break the server for the next (issue 11), in a real browser: a visitor
uploads a poisoned run (refused with its reason), a poisoned run folder sits on the server's
disk beside it, and a second visitor still opens every page without an exception, sees the
broken run as "unreadable: <reason>" and deletes it from the app. Then the worst upload the
server accepts (the largest model its memory budget allows, as zeros that pack to a few
hundred kB) is imported, and the server's peak memory is measured."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from test_browser import (
    ARTIFACTS,
    CHROMIUM,
    PAGES,
    assert_no_exception,
    browser_fixture,
    choose,
    open_page,
    streamlit_server,
    wait_idle,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"),
]
BUDGET = "2GiB"  # a Streamlit Community Cloud-sized server


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("hostile-home")
    with streamlit_server(home, TOYGPT_MEMORY_BUDGET=BUDGET) as (url, proc):
        yield url, proc, home


browser = browser_fixture()


def visitor(browser):
    """A new browser context: another person, with their own Streamlit session."""
    return browser.new_context(viewport={"width": 1400, "height": 900}).new_page()


def exported_run(home: Path, name: str, model_config=None) -> bytes:
    """A run made in this process (its own runs folder) and exported as a zip."""
    from toygpt import data, run_archive, runs
    from toygpt.checkpoint import empty_model
    from toygpt.model import GPT, preset
    from toygpt.tokenizers import CharTokenizer
    from toygpt.train import TrainConfig

    os.environ["TOYGPT_RUNS_DIR"] = str(home / "maker")
    tokenizer = CharTokenizer.from_text(data.load_corpus("copy"))
    if model_config is None:
        model = GPT(preset("nano", vocab_size=tokenizer.vocab_size), seed=0)
    else:  # zeros: finite, valid, and they deflate ~1000:1
        model = empty_model(model_config.replace(vocab_size=tokenizer.vocab_size))
        with torch.no_grad():
            for tensor in model.parameters():
                tensor.zero_()
    run = runs.create_run(name=name, corpus="copy", tokenizer_spec="char", tokenizer=tokenizer, model=model,
                          train_config=TrainConfig(max_steps=10))  # fmt: skip
    run.update_info(status="finished")
    return run_archive.export_zip(run.id)


def poisoned(zip_bytes: bytes, **changes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        files = {n: archive.read(n) for n in archive.namelist()}
    info_name = next(n for n in files if n.endswith("/run.json"))
    info = json.loads(files[info_name])
    info.update(changes)
    files[info_name] = json.dumps(info).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for n, content in files.items():
            archive.writestr(n, content)
    return buffer.getvalue()


def upload(page, path: Path) -> str:
    page.locator(".st-key-runs_import input[type='file']").set_input_files(str(path))
    wait_idle(page)
    page.wait_for_timeout(500)
    wait_idle(page)
    return page.locator("[data-testid='stMain']").inner_text()


def test_a_poisoned_upload_breaks_nothing_for_the_next_visitor(server, browser, tmp_path):
    url, proc, home = server
    good = exported_run(tmp_path, "good")
    bad_zip = tmp_path / "poisoned.zip"
    bad_zip.write_bytes(poisoned(good, step="abc"))
    # a poisoned folder already on the server's disk (hand-copied, or written by an older version)
    with zipfile.ZipFile(io.BytesIO(poisoned(good, step=float("nan")))) as archive:
        for name in archive.namelist():
            target = home / "runs" / "on-disk" / name.split("/", 1)[1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))

    first = visitor(browser)
    open_page(first, url, "runs")
    text = upload(first, bad_zip)
    assert "poisoned.zip was rejected" in text and "step='abc' must be a whole number" in text, text[-2000:]
    assert str(home) not in text  # kind 7: no server path in the message

    second = visitor(browser)
    for name, path in PAGES:
        open_page(second, url, path)
        assert_no_exception(second, f"{name} (second visitor)")
    open_page(second, url, "runs")
    choose(second, "runs_manage", "on-disk")
    main = second.locator("[data-testid='stMain']").inner_text()
    assert "unreadable: run.json: best_val_loss" in main or "unreadable: run.json: step" in main, main[-3000:]
    second.locator(".st-key-runs_delete button").click()
    wait_idle(second)
    second.locator(".st-key-runs_delete_yes button").click()
    wait_idle(second)
    assert not (home / "runs" / "on-disk").exists()
    for name, path in PAGES:
        open_page(second, url, path)
        assert_no_exception(second, f"{name} (after the delete)")


def test_peak_memory_of_the_worst_accepted_upload(server, browser, tmp_path):
    """The largest model a 2 GiB budget accepts (a quarter: 512 MiB of float32 weights), as an
    upload of a few hundred kB; the server's peak RSS is recorded in test-artifacts."""
    from toygpt.model import GPTConfig, total_parameters

    url, proc, home = server
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=16, n_head=12, n_embd=768)
    zip_path = tmp_path / "worst.zip"
    zip_path.write_bytes(exported_run(tmp_path, "worst", config))
    page = visitor(browser)
    open_page(page, url, "runs")
    before_hwm, before_rss = status_kib(proc.pid, "VmHWM"), status_kib(proc.pid, "VmRSS")
    text = upload(page, zip_path)
    assert "as the run" in text and "worst" in text, text[-2000:]
    after_hwm, after_rss = status_kib(proc.pid, "VmHWM"), status_kib(proc.pid, "VmRSS")
    report = {
        "budget": BUDGET, "model_params": total_parameters(config), "weights_bytes": 4 * total_parameters(config),
        "zip_bytes": zip_path.stat().st_size, "server_rss_before_mib": before_rss / 1024,
        "server_peak_before_mib": before_hwm / 1024, "server_peak_after_mib": after_hwm / 1024,
        "server_rss_after_mib": after_rss / 1024,
    }  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "worst-upload-memory.json").write_text(json.dumps(report, indent=2))
    print("\n" + json.dumps(report, indent=2))
    assert after_hwm / 1024 < 2048, report  # within the server's budget
