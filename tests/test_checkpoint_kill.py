"""Crash consistency (issue 11, kind 4): a training process SIGKILLed at *every* file operation
of its saves in turn — each completed temp file (fsync), each rename, each delete — is always
resumable from its last complete checkpoint, ends with exactly the weights of a run that was
never killed, and leaves no temp files behind.

The child is a fork of the test process whose ``os.fsync``, ``os.replace`` and ``os.unlink``
count calls and SIGKILL the process at call N (no hook in the library code)."""

from __future__ import annotations

import os
import shutil
import signal
import sys

import pytest
import torch

from toygpt import runs
from toygpt.model import preset
from toygpt.pipeline import TrainSpec, run_training
from toygpt.train import TrainConfig

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="fork + SIGKILL")]

CONFIG = TrainConfig(max_steps=2, eval_interval=1, eval_batches=1, log_interval=1, checkpoint_interval=1,
                     max_snapshots=6, precision="fp32")  # fmt: skip
LONGER = CONFIG.replace(max_steps=4)


def resume(run_id: str) -> dict:
    return run_training(TrainSpec(resume=run_id, train=LONGER))


def run_child(run_id: str, kill_at: int | None, counter_path: str) -> int:
    """Fork; the child resumes ``run_id`` and SIGKILLs itself at file operation ``kill_at``
    (never, with None). Returns the number of operations the child made (written to a file)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        calls = [0]
        real = {name: getattr(os, name) for name in ("fsync", "replace", "unlink")}

        def counted(name):
            def op(*args, **kwargs):
                calls[0] += 1
                if calls[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real[name](*args, **kwargs)

            return op

        try:
            for name in real:
                setattr(os, name, counted(name))
            resume(run_id)
            for name, fn in real.items():
                setattr(os, name, fn)
            with open(counter_path, "w") as handle:
                handle.write(str(calls[0]))
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    if kill_at is not None:
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"not killed at {kill_at}"
        return kill_at
    with open(counter_path) as handle:
        return int(handle.read())


def weights_of(run_id: str) -> dict[str, torch.Tensor]:
    return runs.open_run(run_id).load_model("latest").model.state_dict()


def leftovers(run_id: str) -> list[str]:
    folder = runs.open_run(run_id).path
    return sorted(p.name for p in folder.rglob(".*") if p.is_file())


def test_a_kill_at_every_file_operation_of_a_save_is_resumable(tmp_path):
    run_training(TrainSpec(corpus="copy", model=preset("nano"), train=CONFIG, name="base"))
    base = runs.open_run("base").path
    shutil.copytree(base, base.parent / "straight")
    resume("straight")  # never killed: the weights every killed run must end with
    expected = weights_of("straight")

    shutil.copytree(base, base.parent / "count")
    total = run_child("count", None, str(tmp_path / "count.txt"))
    assert total >= 20, total  # saves at steps 3 and 4, best weights, run.json updates ...
    results = {}
    for kill_at in range(1, total + 1):
        run_id = f"kill-{kill_at}"
        shutil.copytree(base, base.parent / run_id)
        run_child(run_id, kill_at, str(tmp_path / "unused.txt"))
        starts: list[int] = []
        record = lambda event, starts=starts: starts.append(event["step"]) if event["type"] == "start" else None
        end = run_training(TrainSpec(resume=run_id, train=LONGER), on_event=record)
        resumed_from = starts[0]
        assert (end["status"], end["step"]) == ("finished", 4), (kill_at, end)
        assert leftovers(run_id) == [], (kill_at, leftovers(run_id))
        got = weights_of(run_id)
        assert all(torch.equal(got[k], expected[k]) for k in expected), f"kill at {kill_at}: weights differ"
        results[kill_at] = resumed_from
    assert set(results.values()) <= {2, 3, 4} and {2, 3} <= set(results.values())
    print(f"\nkilled at each of {total} file operations; resumed from step: {results}")
