"""Training: ``rtseg train``, ``rtseg eval`` (:func:`evaluate_checkpoint`) and the building blocks the search loop reuses.

Recipe (SSR paper, sec. 5.2, retraining): Adam with weight decay 1e-4 (learning rate: see
:func:`default_lr`), poly learning-rate decay with power 0.9, colour jitter + random flip + random scale (0.75..1.75 of the
input size) + crop, optional OHEM cross-entropy, validation after every epoch, AMP on CUDA.

The schedule: ``lr(step) = base * (1 - step / total) ** 0.9`` where ``total`` is

* ``epochs x steps_per_epoch`` without a time budget, or
* with ``minutes`` (a wall-clock budget that counts training *and* validation), the number of steps
  the remaining budget allows, estimated from the measured step time after the first 20 steps and
  re-estimated after every epoch from measured step and validation times; ``epochs`` is then an
  upper bound. Training stops cleanly when the next validation would overrun the budget, validates,
  and writes its checkpoints.

Run folder ``out_dir``::

    config.json            what was asked (arch, data, input, TrainConfig, world size, versions, CPU/GPU)
    metrics/epoch_001.json one JSON per epoch: train loss, lr, images/s, validation mIoU, per-class IoU...
    last.pt, best.pt       checkpoints (rtseg.checkpoint), written atomically after every epoch
    curve.png              training loss and validation mIoU vs epoch
    summary.json           the final result (also returned by :func:`train`)

``--resume`` restarts from ``last.pt`` at the next epoch (an epoch interrupted half-way is redone).

Distributed: launched by ``torchrun`` the same code runs DistributedDataParallel (NCCL on GPUs,
gloo on CPU); ``batch`` is per process, rank 0 alone prints and writes, validation is sharded and
its confusion matrices summed, and at the end every rank's weight digest is gathered into
``summary["ranks"]`` so a run can prove its replicas stayed identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from rtseg import distributed as dist
from rtseg.arch import Arch
from rtseg.checkpoint import load_checkpoint, load_model, save_checkpoint, unwrap
from rtseg.data import DatasetInfo, PairDataset, build_dataset, dataset_info, parse_data_spec, split_sizes
from rtseg.data.selection import selection_split
from rtseg.errors import RtsegError
from rtseg.evaluate import evaluate
from rtseg.io import atomic_save, atomic_write_json, check_batch_memory, check_same_config, parse_hw, parse_json_text, read_json
from rtseg.reporting import Reporter, RichReporter, SilentReporter, TaskBar
from rtseg.rundir import MARKER, RunDir, claim_run_dir
from rtseg.spaces import build_model, get_space, load_arch


# ---------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------


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


def default_lr(optimizer: str) -> float:
    """Adam 2e-3 (a short-budget choice; the seed retrains with 5e-4 for 200 epochs), SGD 1e-2."""
    return 2e-3 if optimizer == "adam" else 1e-2


@dataclass
class TrainConfig:
    epochs: int = 50
    batch: int = 8  # per process
    lr: float | None = None  # None: default_lr(optimizer)
    optimizer: str = "adam"  # adam | sgd
    weight_decay: float | None = None  # None: 1e-4 (adam, the SSR paper) / 5e-4 (sgd)
    amp: bool = False  # CUDA only
    ohem: bool = False
    workers: int | None = None  # None: default_workers()
    seed: int = 0
    device: str | None = None  # None: cuda if available else cpu
    minutes: float | None = None  # wall-clock budget (training + validation)
    train_len: int | None = None  # synthetic: items per split (default 2000/200); files: first N
    val_len: int | None = None
    data_seed: int = 0  # which synthetic world
    # validate on this held-out fraction of the training split instead of the validation split
    # (rtseg.data.selection): what a search's proxy trainings do, so their choice never sees it
    holdout: float | None = None
    resume: bool = False
    overwrite: bool = False  # replace a finished or foreign run in the folder (see rtseg.rundir)
    progress: bool = True
    log_every: int = 10  # steps between loss samples in the metrics
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> "TrainConfig":
        c = TrainConfig(**asdict(self))
        if c.optimizer not in ("adam", "sgd"):
            raise RtsegError(f"unknown optimizer {c.optimizer!r}; choose adam or sgd")
        c.lr = float(c.lr) if c.lr is not None else default_lr(c.optimizer)
        c.weight_decay = float(c.weight_decay) if c.weight_decay is not None else (1e-4 if c.optimizer == "adam" else 5e-4)
        c.workers = default_workers() if c.workers is None else int(c.workers)
        if c.epochs < 1:
            raise RtsegError(f"--epochs must be at least 1, got {c.epochs}")
        if c.batch < 1:
            raise RtsegError(f"--batch must be at least 1, got {c.batch}")
        if c.lr <= 0:
            raise RtsegError(f"--lr must be positive, got {c.lr}")
        if c.minutes is not None and c.minutes <= 0:
            raise RtsegError(f"--minutes must be positive, got {c.minutes}")
        return c


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


def poly_lr(base: float, step: int, total: int, power: float = 0.9) -> float:
    """Poly decay: ``base * (1 - step/total) ** power``, 0 from ``total`` on."""
    if total <= 0:
        return base
    return base * max(0.0, 1.0 - min(step, total) / total) ** power


class OhemCELoss(nn.Module):
    """Online hard example mining cross-entropy (BiSeNet / SSR): average the loss over the pixels
    whose true-class probability is below ``thresh`` (0.7), but over at least the ``n_min`` hardest
    labelled pixels (default: a sixteenth of the batch's labelled pixels) so easy batches still
    teach something."""

    def __init__(self, thresh: float = 0.7, ignore_index: int = 255, n_min: int | None = None, min_fraction: float = 1 / 16) -> None:
        super().__init__()
        self.loss_thresh = -math.log(thresh)
        self.ignore_index = ignore_index
        self.n_min = n_min
        self.min_fraction = min_fraction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="none").flatten()
        valid = (target.flatten() != self.ignore_index)
        loss = loss[valid]
        if loss.numel() == 0:
            return logits.sum() * 0.0
        n_min = self.n_min if self.n_min is not None else max(1, int(loss.numel() * self.min_fraction))
        n_min = min(n_min, loss.numel())
        hard = loss[loss > self.loss_thresh]
        if hard.numel() >= n_min:
            return hard.mean()
        return torch.topk(loss, n_min, sorted=False).values.mean()


class CELoss(nn.Module):
    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not bool((target != self.ignore_index).any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index)


def build_loss(ohem: bool, ignore_index: int = 255, thresh: float = 0.7, n_min: int | None = None) -> nn.Module:
    """Cross-entropy over full-resolution logits (labels equal to ``ignore_index`` skipped), or OHEM."""
    return OhemCELoss(thresh, ignore_index, n_min) if ohem else CELoss(ignore_index)


def build_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)  # type: ignore[arg-type]
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)  # type: ignore[arg-type]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)  # type: ignore[arg-type]
    except RuntimeError:
        raise RtsegError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RtsegError(f"device {device} requested but CUDA is not available here; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise RtsegError(f"unsupported device {device!r}; use cpu, cuda or cuda:N")
    return dev


def weights_digest(model: nn.Module) -> str:
    """A short SHA-256 of every parameter and buffer: equal digests mean bit-identical replicas."""
    h = hashlib.sha256()
    for k, v in sorted(unwrap(model).state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()[:16]


def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def prepare_arch(arch: Arch | str | Path | dict, info: DatasetInfo) -> tuple[Arch, str | None]:
    """Load the arch and give it the dataset's class count; returns (arch, note about the change)."""
    a = load_arch(arch)  # type: ignore[arg-type]
    if a.num_classes != info.num_classes:
        note = f"arch {a.name or ''} has {a.num_classes} classes; rebuilt with {info.num_classes} for {info.name}".replace("  ", " ")
        name = a.name
        a = a.with_(num_classes=info.num_classes)
        a.name = name
        return a, note
    return a, None


def plot_curve(history: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Training loss (per logged step, by fractional epoch) and validation mIoU per epoch, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    xs, ys = [], []
    for rec in history:
        for frac, loss in rec.get("loss_curve", []):
            xs.append(rec["epoch"] - 1 + frac)
            ys.append(loss)
    if xs:
        ax1.plot(xs, ys, lw=1, color="tab:blue", alpha=0.8)
    ax1.plot([r["epoch"] for r in history], [r["train_loss"] for r in history], "o-", color="tab:blue", label="epoch mean")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax1.grid(alpha=0.3)
    ax1.legend()
    ep = [r["epoch"] for r in history if r.get("val")]
    mi = [100 * r["val"]["miou"] for r in history if r.get("val")]
    ax2.plot(ep, mi, "o-", color="tab:green")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation mIoU (%)")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=110)

    try:
        return atomic_save(path, write)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------


class _Budget:
    """Wall-clock budget bookkeeping: when to stop, and how many steps the poly schedule spans."""

    def __init__(self, minutes: float | None, elapsed_before: float) -> None:
        self.seconds = None if minutes is None else minutes * 60.0
        self.t0 = time.perf_counter()
        self.before = elapsed_before
        self.step_time: float | None = None
        self.val_time: float | None = None

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.t0

    def remaining(self) -> float:
        return math.inf if self.seconds is None else self.seconds - self.elapsed()

    def should_stop(self) -> bool:
        if self.seconds is None:
            return False
        reserve = self.val_time if self.val_time is not None else 0.0
        return self.remaining() <= reserve

    def total_steps(self, step: int, steps_per_epoch: int, max_total: int) -> int:
        if self.seconds is None or self.step_time is None:
            return max_total
        val_per_step = (self.val_time or 0.0) / max(1, steps_per_epoch)  # one validation per epoch
        more = max(0.0, self.remaining() - (self.val_time or 0.0)) / (self.step_time + val_per_step)
        return int(min(max_total, step + max(1, math.floor(more))))


#: Run-config fields a resumed training may change: limits and resources of this invocation (more
#: --epochs continue the run), not what is trained or how.
RESUME_MAY_DIFFER = ("train.epochs", "train.minutes", "train.workers", "train.device", "train.resume", "train.overwrite", "train.progress",
                     "train.log_every", "world_size", "device", "machine", "torch_version", "created")


_RESUME_FLAGS = {"arch": "--arch", "data": "--data", "input_hw": "--input",
                 **{f"train.{k}": f"--{k.replace('_', '-')}" for k in asdict(TrainConfig())}}


def _check_resume_config(saved: dict[str, Any], now: dict[str, Any], out_dir: Path) -> None:
    check_same_config(saved, now, out_dir, may_differ=RESUME_MAY_DIFFER, flags=_RESUME_FLAGS, whole=("arch",))


def train(
    arch: Arch | str | Path | dict,
    data_spec: str,
    input_hw: tuple[int, int],
    cfg: TrainConfig,
    out_dir: str | Path,
    console: Any | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Train ``arch`` on ``data_spec`` at ``input_hw`` into ``out_dir``; returns the run summary.

    Works alone or under torchrun (DDP). Keys of the summary: run, epochs, steps, stopped_by,
    best_miou, best_epoch, final (last validation metrics), train_img_per_s, elapsed_s, device,
    world_size, checkpoint (best.pt), last, ranks (per-rank weight digest and mIoU), ranks_agree.
    ``on_epoch(record)`` is called on every rank after each epoch's files are written (the record is
    what metrics/epoch_XXX.json holds); an exception raised there interrupts training like Ctrl-C.
    ``reporter`` says what happens (default: rich output on ``console``, stderr if none); the
    progress bar is drawn only with ``cfg.progress``.
    """
    cfg = cfg.resolved()
    if reporter is None:
        reporter = RichReporter(console)
    parse_data_spec(data_spec)
    out = Path(out_dir).expanduser()
    device = dist.init_distributed(None if cfg.device in (None, "", "auto") else str(resolve_device(cfg.device)))
    with cpu_threads(device, int(cfg.workers or 0)):
        return _train(arch, data_spec, input_hw, cfg, out, device, reporter if dist.is_main() else SilentReporter(), on_epoch)


@dataclass
class _Run:
    """What every step of one training run reads and does not change."""

    cfg: TrainConfig
    out: Path
    data_spec: str
    hw: tuple[int, int]
    arch: Arch
    info: DatasetInfo
    train_ds: Any
    val_ds: Any
    device: torch.device
    use_amp: bool
    main: bool
    ddp: bool

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"


@dataclass
class _Progress:
    """What changes as training runs, and what ``last.pt`` records to resume it."""

    epoch: int = 0  # the last finished epoch
    step: int = 0
    total: int = 0  # steps the poly schedule spans
    best: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_time: float = 0.0
    train_images: int = 0
    stopped_by: str = "epochs"
    stop: bool = False
    improved: bool = False  # the last validation was the best so far
    final: dict[str, Any] | None = None


@dataclass
class _Model:
    """The network (DDP-wrapped when distributed) and what updates it."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Any
    criterion: nn.Module


def _train(
    arch: Arch | str | Path | dict,
    data_spec: str,
    input_hw: tuple[int, int],
    cfg: TrainConfig,
    out: Path,
    device: torch.device,
    reporter: Reporter,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    """The run as its steps: open the data, read what there is to resume, build the model, then
    per epoch train, validate and save; finally summarize."""
    run = _open_run(arch, data_spec, input_hw, cfg, out, device, reporter)
    run_config = _run_config(run)
    folder = _claim(run, run_config)
    try:
        return _train_in(run, run_config, folder, reporter, on_epoch)
    except RtsegError:
        if folder is not None and not run.last_path.exists():  # refused before any epoch was saved (a bad label...)
            folder.discard((*RUN_FILES, "metrics"))
        raise
    finally:
        if folder is not None:
            folder.release()


#: What a training run folder holds (removed when ``--overwrite`` replaces a run of this kind).
RUN_FILES = ("config.json", "last.pt", "best.pt", "summary.json", "curve.png")


def _claim(run: _Run, run_config: dict[str, Any]) -> RunDir | None:
    """Rank 0 claims the run folder (:func:`rtseg.rundir.claim_run_dir`): locked against a second
    writer, refused when it holds another run; every rank learns the verdict, so a refusal ends all."""
    folder, error = None, None
    if run.main:
        try:
            folder = claim_run_dir(run.out, "train", run_config, resume=run.cfg.resume, overwrite=run.cfg.overwrite,
                                   may_differ=RESUME_MAY_DIFFER, flags=_RESUME_FLAGS, whole=("arch",), adopt=("config.json", "last.pt"),
                                   start=False)
        except RtsegError as exc:
            error = str(exc)
    error = dist.broadcast_object(error)
    if error is not None:
        raise RtsegError(error)
    return folder


def _train_in(run: _Run, run_config: dict[str, Any], folder: RunDir | None, reporter: Reporter,
              on_epoch: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    cfg, out, device = run.cfg, run.out, run.device
    state, resume_meta = _resume_checkpoint(run, run_config, reporter)
    if folder is not None:
        if folder.replacing and not folder.resuming:
            for name in RUN_FILES:  # the replaced run's own files only: a stale best.pt would outlive this run
                (out / name).unlink(missing_ok=True)
            for old in (out / "metrics").glob("epoch_*.json"):
                old.unlink()
        folder.start()
    dist.barrier()
    model = _build_model(run, state if resume_meta is not None else None)
    train_loader = make_loader(run.train_ds, cfg.batch, True, cfg.workers, run.ddp, seed=cfg.seed, pin_memory=device.type == "cuda")  # type: ignore[arg-type]
    val_loader = make_loader(run.val_ds, cfg.batch, False, cfg.workers, run.ddp, pin_memory=device.type == "cuda")  # type: ignore[arg-type]
    steps_per_epoch = len(train_loader)
    max_total = cfg.epochs * steps_per_epoch
    prog, budget = _resume_progress(run, model, resume_meta, reporter)
    if run.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", run_config)
        (out / "metrics").mkdir(exist_ok=True)
    prog.total = budget.total_steps(prog.step, steps_per_epoch, max_total)
    start_epoch = prog.epoch + 1
    prog.stop = budget.should_stop() or start_epoch > cfg.epochs
    if prog.stop and start_epoch <= cfg.epochs:
        prog.stopped_by = "budget"
    _announce(run, reporter)
    bars = reporter if cfg.progress else SilentReporter()
    with bars.task("train", total=prog.total, completed=min(prog.step, prog.total)) as bar:
        for epoch in range(start_epoch, cfg.epochs + 1):
            if prog.stop:
                break
            stats = _train_epoch(run, model, train_loader, prog, budget, epoch, max_total, bar)
            bar.update(description="val")
            val = _validate(run, model, val_loader, budget)
            bar.update(description="train")
            rec = _record_epoch(run, prog, epoch, stats, val, budget)
            if cfg.minutes and not prog.stop:
                prog.total = int(dist.broadcast_object(budget.total_steps(prog.step, steps_per_epoch, max_total)))
                bar.update(total=prog.total)
            if run.main:
                _save_epoch(run, model, prog, rec, budget, reporter)
            dist.barrier()
            if on_epoch is not None:
                on_epoch(rec)
            if prog.stop:
                break
    summary = _summarize(run, model, prog, budget)
    if folder is not None:
        folder.finish()
    return summary


def _open_run(arch: Arch | str | Path | dict, data_spec: str, input_hw: tuple[int, int], cfg: TrainConfig, out: Path,
              device: torch.device, reporter: Reporter) -> _Run:
    """Open both splits and fit the arch to the dataset's classes and the input size."""
    use_amp = bool(cfg.amp and device.type == "cuda")
    if cfg.amp and not use_amp:
        reporter.message("[yellow]note:[/] --amp needs CUDA; training in float32 on the CPU")
    h, w = int(input_hw[0]), int(input_hw[1])
    check_batch_memory(cfg.batch, h, w)
    if cfg.holdout:
        train_ds, val_ds = selection_split(data_spec, (h, w), seed=cfg.data_seed, fraction=cfg.holdout,
                                           fit_len=cfg.train_len, select_len=cfg.val_len)
    else:
        train_ds = build_dataset(data_spec, "train", (h, w), augment=True, seed=cfg.data_seed, length=cfg.train_len)
        val_ds = build_dataset(data_spec, "val", (h, w), augment=False, seed=cfg.data_seed, length=cfg.val_len)
    info = train_ds.info
    arch_obj, note = prepare_arch(arch, info)
    get_space(arch_obj.space).check_input(h, w)
    if note:
        reporter.message(f"[yellow]note:[/] {note}")
    return _Run(cfg, out, data_spec, (h, w), arch_obj, info, train_ds, val_ds, device, use_amp, dist.is_main(), dist.world_size() > 1)


def _run_config(run: _Run) -> dict[str, Any]:
    """What ``config.json`` records: what was asked and where it ran."""
    return {
        "format": "rtseg.train_config",
        "schema_version": 1,
        "arch": run.arch.to_dict(),
        "data": run.data_spec,
        "input_hw": list(run.hw),
        "train": asdict(run.cfg),
        "world_size": dist.world_size(),
        "device": str(run.device),
        "machine": machine_name(run.device),
        "torch_version": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _resume_checkpoint(run: _Run, run_config: dict[str, Any], reporter: Reporter) -> tuple[Any, dict[str, Any] | None]:
    """Refuse a folder that holds another run (or this one without ``--resume``); with ``--resume``,
    the weights and metadata of ``last.pt``."""
    out, cfg = run.out, run.cfg
    if cfg.resume and not cfg.overwrite and (run.last_path.exists() or (out / "config.json").exists()):
        if (out / "config.json").exists():
            saved = read_json(out / "config.json", "run config")
            if not (isinstance(saved, dict) and saved.get("format") == "rtseg.train_config"):
                raise RtsegError(f"{out / 'config.json'} is not a training run's config; choose another --out, or pass --overwrite to replace the folder's run")
            _check_resume_config(saved, run_config, out)
        if run.last_path.exists():
            state, meta = load_checkpoint(run.last_path, expected_arch=run.arch, num_classes=run.info.num_classes)
            _check_resume_config(_state_config(meta, run.last_path), run_config, out)
            return state, meta
    elif cfg.resume:
        reporter.message(f"[yellow]note:[/] nothing to resume in {out}; starting a new run")
    return None, None


def _state_config(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """The run config ``last.pt`` itself records (what resuming compares, whatever ``config.json``
    says: a missing or edited config.json must not let other settings into the run)."""
    train_cfg = meta.get("train_config")
    for key, typ in (("epoch", int), ("step", int), ("optimizer", dict), ("train_config", dict), ("history", str)):
        if not isinstance(meta.get(key), typ) or isinstance(meta.get(key), bool):
            raise RtsegError(f"{path} is a checkpoint but not a resumable training state (its {key!r} is missing or damaged); "
                             "pass --overwrite to start the run over, or choose another --out")
    return {"arch": meta.get("arch"), "data": meta.get("data_spec"), "input_hw": meta.get("input_hw"), "train": train_cfg}


def _build_model(run: _Run, state: Any | None) -> _Model:
    """The seeded model (resumed weights if any), DDP-wrapped when distributed, its optimizer, loss and AMP scaler."""
    cfg, device = run.cfg, run.device
    torch.manual_seed(cfg.seed)
    model = build_model(run.arch).to(device)
    if state is not None:
        model.load_state_dict(state)
    if run.ddp and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    net: nn.Module = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if run.ddp else model
    m = _Model(net, build_optimizer(net.parameters(), cfg), torch.amp.GradScaler("cuda", enabled=run.use_amp),
               build_loss(cfg.ohem, run.info.ignore_index))
    # augmentation is seeded per (seed, epoch, item) by the loader; torch's RNG only drives dropout etc.
    torch.manual_seed(cfg.seed * 7919 + 1 + dist.rank())
    return m


def _resume_progress(run: _Run, model: _Model, meta: dict[str, Any] | None, reporter: Reporter) -> tuple[_Progress, _Budget]:
    """Where the run stands: from scratch, or the optimizer, counters, history and timings of ``last.pt``."""
    prog = _Progress()
    if meta is None:
        return prog, _Budget(run.cfg.minutes, 0.0)
    try:
        model.optimizer.load_state_dict(meta["optimizer"])
        if run.use_amp and meta.get("scaler"):
            model.scaler.load_state_dict(meta["scaler"])
        prog.epoch = int(meta["epoch"])
        prog.step = int(meta["step"])
        prog.best, prog.best_epoch = float(meta.get("best_miou", -1.0)), int(meta.get("best_epoch", 0))
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise RtsegError(f"{run.last_path}: its training state does not fit this run ({str(exc).splitlines()[0][:120]}); "
                         "pass --overwrite to start over, or choose another --out") from None
    prog.history = parse_json_text(meta.get("history", "[]"), f"the history in {run.last_path}")
    if not isinstance(prog.history, list) or not all(isinstance(r, dict) for r in prog.history):
        raise RtsegError(f"{run.last_path}: its training history is damaged; pass --overwrite to start over, or choose another --out")
    prog.final = prog.history[-1]["val"] if prog.history else None
    prog.train_time = float(meta.get("train_time_s", 0.0))
    prog.train_images = int(meta.get("train_images", 0))
    reporter.message(f"resuming {run.out} after epoch {prog.epoch} (step {prog.step}, best mIoU {100 * max(prog.best, 0):.2f}%)")
    budget = _Budget(run.cfg.minutes, float(meta.get("elapsed_s", 0.0)))
    if meta.get("step_time"):
        budget.step_time, budget.val_time = meta.get("step_time"), meta.get("val_time")
    return prog, budget


def _announce(run: _Run, reporter: Reporter) -> None:
    cfg, (h, w) = run.cfg, run.hw
    reporter.message(
        f"training {run.arch.name or 'arch'} on {run.info.name} ({len(run.train_ds)} train / {len(run.val_ds)} val) at {h}x{w}, "
        f"batch {cfg.batch}x{dist.world_size()}, {cfg.optimizer} lr {cfg.lr:g}, {'OHEM' if cfg.ohem else 'CE'}, "
        f"{run.device}{' AMP' if run.use_amp else ''}, "
        + (f"budget {cfg.minutes:g} min (at most {cfg.epochs} epochs)" if cfg.minutes else f"{cfg.epochs} epochs")
    )


def _train_epoch(run: _Run, model: _Model, loader: DataLoader, prog: _Progress, budget: _Budget, epoch: int, max_total: int,
                 bar: TaskBar) -> dict[str, Any]:
    """One pass over the training split (cut short when the time budget runs out); the poly schedule
    is sized to the budget once 20 steps are timed. Returns the epoch's loss, curve and timings."""
    cfg, device, net = run.cfg, run.device, model.net
    steps_per_epoch = len(loader)
    loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
    net.train()
    loss_sum, loss_n, curve, win = 0.0, 0, [], []
    ep_images, ep_t0 = 0, time.perf_counter()
    t_step = time.perf_counter()
    timed_steps, timed_time, timed_images = 0, 0.0, 0
    for i, (images, labels) in enumerate(loader):
        lv = _train_step(run, model, images, labels, poly_lr(cfg.lr, prog.step, prog.total), prog.step)  # type: ignore[arg-type]
        prog.step += 1
        loss_sum += lv
        loss_n += 1
        win.append(lv)
        n_img = int(images.shape[0]) * dist.world_size()
        ep_images += n_img
        now = time.perf_counter()
        dt = now - t_step
        t_step = now
        if prog.step > 1 and i > 0:  # the first step of an epoch pays for worker start-up
            timed_steps += 1
            timed_time += dt
            timed_images += n_img
            prog.train_time += dt
            prog.train_images += n_img
        if len(win) >= cfg.log_every:
            curve.append([(i + 1) / steps_per_epoch, sum(win) / len(win)])
            win = []
        # after 20 timed steps, size the poly schedule to the budget (all ranks agree)
        if cfg.minutes and timed_steps == 20 and budget.step_time is None:
            budget.step_time = timed_time / timed_steps
            prog.total = int(dist.broadcast_object(budget.total_steps(prog.step, steps_per_epoch, max_total)))
            bar.update(total=prog.total)
        ips = timed_images / timed_time if timed_time > 0 else 0.0
        bar.update(completed=min(prog.step, prog.total), info=f"ep {epoch}  loss {loss_sum / loss_n:.4f}  {ips:.1f} img/s")
        if cfg.minutes:
            flag = torch.tensor([1.0 if budget.should_stop() else 0.0], device=_comm_device(device))
            if bool(dist.all_reduce_max(flag).item()):
                prog.stop, prog.stopped_by = True, "budget"
                break
    if win:
        curve.append([min(1.0, loss_n / steps_per_epoch), sum(win) / len(win)])
    train_loss = dist.all_reduce_sum(torch.tensor([loss_sum, float(loss_n)], dtype=torch.float64, device=_comm_device(device)))
    if timed_steps:
        budget.step_time = timed_time / timed_steps
    return {"mean_loss": float(train_loss[0] / max(1.0, float(train_loss[1]))), "loss_n": loss_n, "curve": curve,
            "images": ep_images, "img_per_s": timed_images / timed_time if timed_time > 0 else None,
            "train_s": time.perf_counter() - ep_t0, "steps_per_epoch": steps_per_epoch}


def _train_step(run: _Run, model: _Model, images: torch.Tensor, labels: torch.Tensor, lr: float, step: int) -> float:
    """Optimizer step number ``step`` at learning rate ``lr`` (AMP on CUDA when asked); returns the loss."""
    set_lr(model.optimizer, lr)
    images = images.to(run.device, non_blocking=True)
    labels = labels.to(run.device, non_blocking=True)
    with torch.autocast(device_type=run.device.type, dtype=torch.float16, enabled=run.use_amp):
        logits = model.net(images)
    loss = model.criterion(logits, labels)
    if not torch.isfinite(loss):
        raise RtsegError(f"training diverged (loss {float(loss)} at step {step}); lower --lr")
    model.optimizer.zero_grad(set_to_none=True)
    model.scaler.scale(loss).backward()
    model.scaler.step(model.optimizer)
    model.scaler.update()
    return float(loss.detach())


def _validate(run: _Run, model: _Model, loader: DataLoader, budget: _Budget) -> dict[str, Any]:
    """Score the model on the validation split (replicas first agree on their BN statistics); the
    time it took sizes the budget's reserve."""
    info = run.info
    dist.sync_buffers(unwrap(model.net))
    t_val = time.perf_counter()
    val = evaluate(unwrap(model.net), loader, info.num_classes, info.ignore_index, run.device, amp=run.use_amp, class_names=info.class_names)
    val.pop("confusion_matrix", None)
    budget.val_time = time.perf_counter() - t_val
    return val


def _record_epoch(run: _Run, prog: _Progress, epoch: int, stats: dict[str, Any], val: dict[str, Any], budget: _Budget) -> dict[str, Any]:
    """The epoch's record (what metrics/epoch_XXX.json holds), appended to the history; tracks the best."""
    prog.final = val
    prog.improved = val["miou"] > prog.best
    if prog.improved:
        prog.best, prog.best_epoch = val["miou"], epoch
    rec = {
        "epoch": epoch,
        "partial": stats["loss_n"] < stats["steps_per_epoch"],
        "steps": prog.step,
        "lr": poly_lr(run.cfg.lr, prog.step, prog.total),  # type: ignore[arg-type]
        "train_loss": stats["mean_loss"],
        "train_images": stats["images"],
        "train_img_per_s": stats["img_per_s"],
        "epoch_train_s": stats["train_s"],
        "val_s": budget.val_time,
        "elapsed_s": budget.elapsed(),
        "val": val,
        "loss_curve": stats["curve"],
    }
    prog.history.append(rec)
    prog.epoch = epoch
    return rec


def _save_epoch(run: _Run, model: _Model, prog: _Progress, rec: dict[str, Any], budget: _Budget, reporter: Reporter) -> None:
    """Rank 0: the epoch's metrics file, ``last.pt`` (and ``best.pt`` when it improved), the curve, one line."""
    cfg, out, (h, w) = run.cfg, run.out, run.hw
    val, epoch = rec["val"], rec["epoch"]
    improved = prog.improved
    atomic_write_json(out / "metrics" / f"epoch_{epoch:03d}.json", rec)
    state = {
        "epoch": epoch,
        "step": prog.step,
        "optimizer": model.optimizer.state_dict(),
        "scaler": model.scaler.state_dict() if run.use_amp else None,
        "best_miou": prog.best,
        "best_epoch": prog.best_epoch,
        "elapsed_s": budget.elapsed(),
        "train_time_s": prog.train_time,
        "train_images": prog.train_images,
        "step_time": budget.step_time,
        "val_time": budget.val_time,
        "history": json.dumps(prog.history),
        "metrics": {k: val[k] for k in ("miou", "per_class_iou", "pixel_accuracy")},
        "train_config": asdict(cfg),
        "data_spec": run.data_spec,
    }
    save_checkpoint(run.last_path, model.net, run.arch, run.info, state, input_hw=(h, w))
    if improved:
        save_checkpoint(run.best_path, model.net, run.arch, run.info, state, input_hw=(h, w))
    plot_curve(prog.history, out / "curve.png", title=f"{run.arch.name or 'arch'} on {run.info.name} {h}x{w}")
    reporter.message(
        f"epoch {epoch}: loss {rec['train_loss']:.4f}  val mIoU {100 * val['miou']:.2f}%  pixel acc {100 * val['pixel_accuracy']:.2f}%"
        + ("  (best)" if improved else "")
        + ("  \\[budget reached]" if prog.stop else "")
    )


def _summarize(run: _Run, model: _Model, prog: _Progress, budget: _Budget) -> dict[str, Any]:
    """The run summary (``summary.json``), with every rank's weight digest to prove the replicas agree."""
    ips_total = prog.train_images / prog.train_time if prog.train_time > 0 else None
    digest = weights_digest(model.net)
    final = prog.final
    ranks = dist.all_gather_object({"rank": dist.rank(), "weights": digest, "miou": final["miou"] if final else None})
    summary = {
        "run": str(run.out),
        "epochs": prog.epoch if prog.history else 0,
        "steps": prog.step,
        "stopped_by": prog.stopped_by,
        "best_miou": prog.best if prog.best >= 0 else None,
        "best_epoch": prog.best_epoch or None,
        "final": final,
        "train_img_per_s": ips_total,
        "elapsed_s": budget.elapsed(),
        "device": str(run.device),
        "machine": machine_name(run.device),
        "world_size": dist.world_size(),
        "input_hw": list(run.hw),
        "data": run.data_spec,
        "images": split_sizes(run.train_ds, run.val_ds),
        "checkpoint": str(run.best_path) if run.best_path.exists() else None,  # no epoch improved on nothing: none written
        "last": str(run.last_path) if run.last_path.exists() else None,
        "curve": str(run.out / "curve.png"),
        "ranks": ranks,
        "ranks_agree": len({r["weights"] for r in ranks}) == 1 and len({r["miou"] for r in ranks}) == 1,
    }
    if run.main:
        atomic_write_json(run.out / "summary.json", summary)
    dist.barrier()
    return summary


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str = "synthetic",
    input_hw: str | tuple[int, int] | None = None,
    split: str = "val",
    batch: int = 4,
    device: str | None = None,
    workers: int | None = None,
    val_len: int | None = None,
    native: bool = False,
    amp: bool = False,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """``rtseg eval``: score a checkpoint on a split of ``data``; returns mIoU, per-class IoU, pixel
    and mean accuracy with what was scored (checkpoint, arch, split, input size, images, classes).

    ``input_hw`` defaults to the size the checkpoint was trained at; ``native`` scores at the labels'
    original resolution (logits upsampled). Joins a torchrun group when launched under one (each rank
    scores a shard, the confusion matrices are summed); the caller ends it (``dist.cleanup``)."""
    reporter = reporter or SilentReporter()
    dev = dist.init_distributed(str(resolve_device(device)) if device else None)
    info = dataset_info(data)
    model, meta = load_model(checkpoint, device=dev, num_classes=info.num_classes)
    arch = meta["arch_obj"]
    if input_hw is not None:
        hw = parse_hw(input_hw, get_space(arch.space).size_divisor)
    elif meta.get("input_hw"):
        hw = (int(meta["input_hw"][0]), int(meta["input_hw"][1]))
    else:
        raise RtsegError(f"{checkpoint} does not record its input size; pass --input HxW")
    ds = build_dataset(data, split, hw, augment=False, seed=0, length=val_len, native_labels=native)
    if native and batch > 1 and info.name != "synthetic":
        batch = 1  # native label sizes may differ between images
    w = default_workers() if workers is None else workers
    loader = make_loader(ds, batch, False, w, dist.world_size() > 1, pin_memory=dev.type == "cuda")
    bars = reporter if dist.is_main() else SilentReporter()
    with cpu_threads(dev, w), bars.task("eval", total=len(ds)) as bar:
        m = evaluate(model, loader, info.num_classes, info.ignore_index, dev, amp=amp and dev.type == "cuda",
                     class_names=info.class_names, on_batch=lambda n: bar.advance(n * dist.world_size()))
    return {
        "checkpoint": str(checkpoint),
        "arch": arch.name,
        "data": data,
        "split": split,
        "input_hw": list(hw),
        "images": len(ds),
        "native_labels": native,
        "miou": m["miou"],
        "per_class_iou": m["per_class_iou"],
        "pixel_accuracy": m["pixel_accuracy"],
        "mean_accuracy": m["mean_accuracy"],
        "class_names": info.class_names,
        "pixels": m["pixels"],
    }


def _comm_device(device: torch.device) -> torch.device:
    """Where small all-reduce tensors live: NCCL needs CUDA tensors, gloo CPU ones."""
    return device if device.type == "cuda" else torch.device("cpu")


def final_miou(summary: dict[str, Any]) -> float:
    """The last validation's mIoU of a run summary (not the best epoch's: no selection on the validation set)."""
    return float((summary.get("final") or {}).get("miou", summary.get("best_miou")))


def train_one_thread(job: dict[str, Any]) -> dict[str, Any]:
    """One CPU training run on one thread, for a process pool (experiments and the proxy search run
    several at a time): ``job`` holds ``run`` (folder), ``arch`` (dict), ``data``, ``input_hw`` and
    TrainConfig fields. Resumable: a finished run's summary is read back, an interrupted one resumes.
    The summary gains ``wall_s``, this call's wall time. ``isolated`` (a job run in a worker process
    of a torchrun rank) makes the run a single process of its own: the rank's process-group variables
    are dropped from the worker's environment, so the run does not try to join its parent's group."""
    if job.get("isolated"):
        for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR", "MASTER_PORT",
                    "TORCHELASTIC_RUN_ID", "GROUP_WORLD_SIZE", "ROLE_WORLD_SIZE"):
            os.environ.pop(var, None)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    run = Path(job["run"])
    if (run / "summary.json").exists():
        return read_json(run / "summary.json", "run summary")
    t0 = time.monotonic()
    fields = {k: v for k, v in job.items() if k not in ("run", "arch", "data", "input_hw", "isolated")}
    cfg = TrainConfig(**{"workers": 0, "device": "cpu", "progress": False, **fields}, resume=(run / "last.pt").exists() or (run / MARKER).exists())
    summary = train(Arch.from_dict(job["arch"]), job["data"], tuple(job["input_hw"]), cfg, run, reporter=SilentReporter())
    summary["wall_s"] = time.monotonic() - t0
    return summary
