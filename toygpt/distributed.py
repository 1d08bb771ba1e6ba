"""Data-parallel training over several processes with PyTorch's own DistributedDataParallel.

    torchrun --nproc_per_node=2 -m toygpt train --corpus shakespeare --preset small

Every process (a *rank*) holds a full copy of the model and trains on its own random batches;
after each backward pass DDP averages the gradients across ranks, so every rank applies the same
update and the copies stay identical. The effective batch is ``batch_size × world_size``.

Only rank 0 writes the run, evaluates and samples; decisions that must agree on every rank
(stop now? did the loss diverge?) go through one tiny all-reduce, otherwise one rank would stop
while the other waits forever in the next gradient exchange.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a multi-process run (``world_size == 1``: a plain run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one (a no-op in a plain run)."""
        if not self.active:
            return bool(flag)
        value = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def broadcast_json(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (JSON-serialisable) on every rank. JSON bytes in a tensor, because
        ``broadcast_object_list`` would pickle."""
        if not self.active:
            return obj
        device = _collective_device()
        payload = json.dumps(obj).encode("utf-8") if self.is_main else b""
        size = torch.tensor([len(payload)], dtype=torch.long, device=device)
        dist.broadcast(size, src=0)
        buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
        if self.is_main:
            buffer.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
        dist.broadcast(buffer, src=0)
        return json.loads(bytes(buffer.cpu().tolist()).decode("utf-8"))

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


PLAIN = DistributedContext()


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def launched_by_torchrun() -> bool:
    """torchrun (and ``python -m torch.distributed.run``) set WORLD_SIZE for every process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(timeout_s: float = 300.0) -> DistributedContext:
    """Join the process group that torchrun described in the environment: gloo on CPU, nccl on
    CUDA. Without torchrun this returns the plain single-process context."""
    if not launched_by_torchrun():
        return PLAIN
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise RuntimeError(f"WORLD_SIZE is set but {name} is not: launch with torchrun --nproc_per_node=N")
    local_rank = int(os.environ["LOCAL_RANK"])
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return context_of_group(local_rank)


def context_of_group(local_rank: int | None = None) -> DistributedContext:
    """The context of an already initialised process group (e.g. one a test set up)."""
    if not dist.is_available() or not dist.is_initialized():
        return PLAIN
    rank = dist.get_rank()
    local = rank if local_rank is None else local_rank
    return DistributedContext(rank=rank, world_size=dist.get_world_size(), local_rank=local)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for(context: DistributedContext, requested: torch.device) -> torch.device:
    """One GPU per rank (``cuda:LOCAL_RANK``); CPU ranks share the CPU."""
    if requested.type == "cuda" and context.active:
        return torch.device("cuda", context.local_rank)
    return requested


def threads_per_rank() -> int:
    """Split the CPU cores between the ranks on this machine (torchrun sets LOCAL_WORLD_SIZE)."""
    local_world = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, (os.cpu_count() or 1) // local_world)
