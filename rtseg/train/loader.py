"""Data loading for training and evaluation: the loaders, their samplers and the CPU thread budget.

Shared by ``rtseg train`` (:mod:`rtseg.train.pipeline`), ``rtseg eval`` and the searches that train
weights themselves (:mod:`rtseg.search.loop`, :mod:`rtseg.search.oneshot`).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from rtseg import distributed as dist
from rtseg.data import PairDataset
from rtseg.errors import RtsegError


def default_workers() -> int:
    """Data-loading processes: one core is left to the training process (0 on a single core)."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


@contextlib.contextmanager
def cpu_threads(device: torch.device, workers: int) -> Iterator[None]:
    """On CPU, leave the data workers their cores: torch's OpenMP pool defaults to every core, and an
    oversubscribed pool (workers, or other jobs on a shared machine) slows training 10x or more.
    An explicit OMP_NUM_THREADS wins; the previous setting is restored afterwards."""
    before = torch.get_num_threads()
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(before, (os.cpu_count() or 1) - max(0, workers))))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``n`` takes indices r, r+n, r+2n... in order: no padding, so sharded
    evaluation scores every item exactly once (DistributedSampler would repeat some)."""

    def __init__(self, length: int, num_replicas: int, rank: int) -> None:
        self.length, self.num_replicas, self.rank = length, num_replicas, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))


class EpochTagged(Sampler[Any]):
    """Wraps a training sampler so it yields ``(epoch, index)``: the dataset then seeds each item's
    augmentation from (seed, epoch, index), which makes training reproducible across worker counts
    and exactly resumable (see :class:`rtseg.data.base.PairDataset`)."""

    def __init__(self, inner: DistributedSampler) -> None:
        self.inner = inner
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        e = self.epoch
        return ((e, int(i)) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(0)  # workers are processes already; OpenCV threads would oversubscribe
    torch.set_num_threads(1)


def make_loader(
    dataset: Dataset,
    batch: int,
    shuffle: bool,
    workers: int = 0,
    distributed: bool = False,
    seed: int = 0,
    drop_last: bool | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader for training (``shuffle=True``: epoch-seeded permutation, sharded across ranks
    when ``distributed``, last partial batch dropped) or evaluation (``shuffle=False``: in order, each
    rank a disjoint shard, nothing dropped). Call ``loader.sampler.set_epoch(e)`` each training epoch
    (done by :func:`train`)."""
    n = len(dataset)  # type: ignore[arg-type]
    replicas, rank = (dist.world_size(), dist.rank()) if distributed else (1, 0)
    if shuffle:
        drop = True if drop_last is None else drop_last
        sampler: Sampler[Any] = DistributedSampler(dataset, num_replicas=replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        if drop and len(sampler) < batch:  # type: ignore[arg-type]
            raise RtsegError(f"the training split has {n} items, fewer than one batch of {batch} per process; lower --batch or use more data")
        if isinstance(dataset, PairDataset):
            dataset.aug_seed = int(seed)
            sampler = EpochTagged(sampler)  # type: ignore[arg-type]
    else:
        drop = bool(drop_last)
        sampler = ShardSampler(n, replicas, rank)
    gen = torch.Generator()
    gen.manual_seed(int(seed) * 1_000 + rank)
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        drop_last=drop,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        worker_init_fn=_worker_init if workers > 0 else None,
        generator=gen,
    )
