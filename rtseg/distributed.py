"""Multi-process helpers for DistributedDataParallel under ``torchrun``.

Training code calls these unconditionally: in a plain single process they are no-ops (world size 1,
rank 0), so the same ``rtseg train`` runs alone or under
``torchrun --nproc_per_node N $(which rtseg) train ...`` without a flag. The backend is NCCL when
the process owns a CUDA device and gloo on CPU.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from rtseg.errors import RtsegError


#: How long a process waits for the others of its group to join (seconds; ``RTSEG_RENDEZVOUS_TIMEOUT_S``
#: overrides): long enough for a slow peer to import torch and load data, short enough that a peer
#: that never starts ends the run with a message instead of a silent wait.
DEFAULT_RENDEZVOUS_TIMEOUT_S = 300.0


def _env_int(name: str, default: int | None, lo: int = 0) -> int | None:
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise RtsegError(f"{name}={text!r} is not a whole number; it is set by torchrun (unset it to run in one process)") from None
    if value < lo:
        raise RtsegError(f"{name}={value} must be at least {lo}; it is set by torchrun (unset it to run in one process)")
    return value


def env_world_size() -> int:
    """The world size torchrun announced (1 when not launched by torchrun); a malformed value is one
    :class:`RtsegError`."""
    return int(_env_int("WORLD_SIZE", 1, lo=1))  # type: ignore[arg-type]


def env_ranks() -> tuple[int, int, int]:
    """``(world size, rank, local rank)`` from the variables torchrun sets, checked: whole numbers,
    ``0 <= RANK < WORLD_SIZE``, ``0 <= LOCAL_RANK < WORLD_SIZE``, and with more than one process a
    ``RANK`` and the address of the group (``MASTER_ADDR``, ``MASTER_PORT``) to meet at."""
    world = env_world_size()
    local = int(_env_int("LOCAL_RANK", 0))  # type: ignore[arg-type]
    if world == 1:
        rank = int(_env_int("RANK", 0))  # type: ignore[arg-type]
        if rank != 0:
            raise RtsegError(f"RANK={rank} but WORLD_SIZE is 1; launch the processes with torchrun, or unset RANK")
        return 1, 0, local
    rank = _env_int("RANK", None)
    if rank is None:
        raise RtsegError(f"WORLD_SIZE={world} but RANK is not set; launch the processes with torchrun --nproc_per_node {world}, "
                         "or unset WORLD_SIZE to run in one process")
    if rank >= world:
        raise RtsegError(f"RANK={rank} is not below WORLD_SIZE={world}; launch the processes with torchrun")
    if local >= world:
        raise RtsegError(f"LOCAL_RANK={local} is not below WORLD_SIZE={world}; launch the processes with torchrun")
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise RtsegError(f"WORLD_SIZE={world} but {' and '.join(missing)} is not set, so the processes have nowhere to meet; "
                         "launch them with torchrun, or unset WORLD_SIZE to run in one process")
    _env_int("MASTER_PORT", None, lo=1)
    return world, int(rank), local


def rendezvous_timeout_s() -> float:
    text = os.environ.get("RTSEG_RENDEZVOUS_TIMEOUT_S")
    try:
        value = float(text) if text else DEFAULT_RENDEZVOUS_TIMEOUT_S
    except ValueError:
        raise RtsegError(f"RTSEG_RENDEZVOUS_TIMEOUT_S={text!r} is not a number of seconds") from None
    if not 0 < value < 1e6:
        raise RtsegError(f"RTSEG_RENDEZVOUS_TIMEOUT_S={text!r} must be a positive number of seconds")
    return value


def _join(backend: str, world: int, rank: int, timeout_s: float) -> None:
    """Meet the other processes at MASTER_ADDR:MASTER_PORT within :func:`rendezvous_timeout_s`
    (torch's own ``env://`` rendezvous, the store torchrun's agent may already run included), then
    form the group; a peer that never comes is one :class:`RtsegError` saying what was awaited."""
    where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    wait = rendezvous_timeout_s()
    if rank == 0:
        sys.stderr.write(f"rank 0 of {world}: waiting up to {wait:g} s for the other {world - 1} process(es) at {where}\n")
    from rtseg.video.cvutil import quiet_native_stderr

    try:
        with quiet_native_stderr():  # the store's C++ retries log a stack trace per attempt; the error below says it in one line
            store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world, timeout=timedelta(seconds=wait)))
        store.set_timeout(timedelta(seconds=timeout_s))
        dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    except Exception as exc:  # the store's timeout and connection errors differ between torch versions
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise RtsegError(f"rank {rank} of {world} could not meet the other processes at {where} within {wait:g} s ({first}); "
                         f"start all {world} (torchrun --nproc_per_node {world} ...), or unset WORLD_SIZE to run in one process") from None


def init_distributed(device: str | torch.device | None = None, timeout_s: float = 600.0) -> torch.device:
    """Join the process group torchrun describes in the environment; return this rank's device.

    ``device``: ``None`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else CPU. An explicit
    ``cuda`` is pinned to the local rank's GPU. Without torchrun (WORLD_SIZE unset or 1) nothing is
    initialised and the device is returned as is. The environment is checked first
    (:func:`env_ranks`), and the wait for the other processes is bounded (:func:`_join`).
    """
    world, rank_, local_rank = env_ranks()
    if device is None:
        dev = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None and world > 1:
            dev = torch.device(f"cuda:{local_rank}")
    if dev.type == "cuda" and dev.index is not None:
        if dev.index >= torch.cuda.device_count():
            raise RtsegError(f"this process (LOCAL_RANK {local_rank}) needs {dev}, but there are {torch.cuda.device_count()} CUDA device(s) here")
        torch.cuda.set_device(dev)
    if world > 1 and not is_initialized():
        _join("nccl" if dev.type == "cuda" else "gloo", world, rank_, timeout_s)
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
