"""Multi-process helpers for DistributedDataParallel under ``torchrun``.

Training code calls these unconditionally: in a plain single process they are no-ops (world size 1,
rank 0), so the same ``rtseg train`` runs alone or under
``torchrun --nproc_per_node N $(which rtseg) train ...`` without a flag. The backend is NCCL when
the process owns a CUDA device and gloo on CPU.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


def env_world_size() -> int:
    """The world size torchrun announced (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: str | torch.device | None = None, timeout_s: float = 600.0) -> torch.device:
    """Join the process group torchrun describes in the environment; return this rank's device.

    ``device``: ``None`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else CPU. An explicit
    ``cuda`` is pinned to the local rank's GPU. Without torchrun (WORLD_SIZE unset or 1) nothing is
    initialised and the device is returned as is.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        dev = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None and env_world_size() > 1:
            dev = torch.device(f"cuda:{local_rank}")
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    if env_world_size() > 1 and not is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return dev


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_main() -> bool:
    """True on rank 0 (the rank that prints and writes files)."""
    return rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (returned for chaining); identity in a single process."""
    if is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    if is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= dist.get_world_size()
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    if is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def sync_buffers(model: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks.

    DDP keeps parameters identical but each rank updates its BN running stats from its own batches
    (DDP only re-broadcasts rank 0's at the next training forward), so replicas must agree on them
    before validating or saving; the average over ranks is also the better estimate."""
    if not is_initialized():
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf /= dist.get_world_size()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send a picklable object from ``src`` to every rank (used for decisions only rank 0 can make)."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def cleanup() -> None:
    if is_initialized():
        dist.destroy_process_group()
