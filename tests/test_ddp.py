"""Data-parallel training with 2 CPU processes (gloo): the ranks end with identical weights and
only rank 0 writes the run — through the library and through ``torchrun -m toygpt train``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from toygpt import runs

pytestmark = [pytest.mark.ddp, pytest.mark.timeout(180)]
REPO = Path(__file__).resolve().parents[1]


def _weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _worker(rank: int, world_size: int, folder: str) -> None:
    """One rank: join the group, train nano on copy, write what it ended with."""
    from toygpt.distributed import context_of_group
    from toygpt.model import preset
    from toygpt.pipeline import TrainSpec, build_training
    from toygpt.train import TrainConfig

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size)
    try:
        context = context_of_group()
        config = TrainConfig(max_steps=15, batch_size=8, eval_interval=5, eval_batches=2, checkpoint_interval=0)
        spec = TrainSpec(corpus="copy", model=preset("nano"), train=config, name="ddp")
        events = []
        trainer, run = build_training(spec, on_event=events.append, dist=context)
        end = trainer.run()
        result = {"digest": _weights_digest(trainer.model), "run": run.id if run else None,
                  "step": end["step"], "events": len(events), "tokens_seen": end["tokens_seen"]}  # fmt: skip
        Path(folder, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_two_ranks_end_identical_and_only_rank0_writes(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["digest"] == rank1["digest"]
    assert rank0["step"] == rank1["step"] == 15
    assert rank0["tokens_seen"] == 15 * 8 * 32 * 2  # both ranks' batches count
    assert rank0["run"] == "ddp" and rank1["run"] is None and rank1["events"] == 0
    assert [info.id for info in runs.list_runs(include_demo=False)] == ["ddp"]
    saved = runs.open_run("ddp").load_model("latest").model
    assert _weights_digest(saved) == rank0["digest"]


def test_torchrun_cli(tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "toygpt", "train", "--corpus", "copy", "--preset", "nano", "--max-steps", "10",
        "--eval-interval", "5", "--eval-batches", "2", "--name", "cli-ddp", "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("finished: reached max_steps=10") == 1  # rank 0 speaks, rank 1 does not
    assert "2 processes" in result.stdout
    assert [info.id for info in runs.list_runs(include_demo=False)] == ["cli-ddp"]
    assert runs.open_run("cli-ddp").info()["status"] == "finished"
