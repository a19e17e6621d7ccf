"""Training: ``rtseg train`` and the building blocks the search loop reuses.

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
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from rtseg import distributed as dist
from rtseg.arch import Arch, build_model, load_arch
from rtseg.checkpoint import load_checkpoint, save_checkpoint, unwrap
from rtseg.data import DatasetInfo, PairDataset, build_dataset, parse_data_spec, split_sizes
from rtseg.errors import RtsegError
from rtseg.evaluate import evaluate
from rtseg.io import atomic_save, atomic_write_json, check_same_config, read_json


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
    resume: bool = False
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
RESUME_MAY_DIFFER = ("train.epochs", "train.minutes", "train.workers", "train.device", "train.resume", "train.progress",
                     "train.log_every", "world_size", "device", "machine", "torch_version", "created")


def _check_resume_config(saved: dict[str, Any], now: dict[str, Any], out_dir: Path) -> None:
    flags = {"arch": "--arch", "data": "--data", "input_hw": "--input", **{f"train.{k}": f"--{k.replace('_', '-')}" for k in asdict(TrainConfig())}}
    check_same_config(saved, now, out_dir, may_differ=RESUME_MAY_DIFFER, flags=flags, whole=("arch",))


def train(
    arch: Arch | str | Path | dict,
    data_spec: str,
    input_hw: tuple[int, int],
    cfg: TrainConfig,
    out_dir: str | Path,
    console: Console | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``arch`` on ``data_spec`` at ``input_hw`` into ``out_dir``; returns the run summary.

    Works alone or under torchrun (DDP). Keys of the summary: run, epochs, steps, stopped_by,
    best_miou, best_epoch, final (last validation metrics), train_img_per_s, elapsed_s, device,
    world_size, checkpoint (best.pt), last, ranks (per-rank weight digest and mIoU), ranks_agree.
    ``on_epoch(record)`` is called on every rank after each epoch's files are written (the record is
    what metrics/epoch_XXX.json holds); an exception raised there interrupts training like Ctrl-C.
    """
    cfg = cfg.resolved()
    con = console or Console(stderr=True)
    parse_data_spec(data_spec)
    out = Path(out_dir).expanduser()
    device = dist.init_distributed(None if cfg.device in (None, "", "auto") else str(resolve_device(cfg.device)))
    with cpu_threads(device, int(cfg.workers or 0)):
        return _train(arch, data_spec, input_hw, cfg, out, device, con, on_epoch)


def _train(
    arch: Arch | str | Path | dict,
    data_spec: str,
    input_hw: tuple[int, int],
    cfg: TrainConfig,
    out: Path,
    device: torch.device,
    con: Console,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    ddp = dist.world_size() > 1
    main = dist.is_main()

    def say(msg: str) -> None:
        if main:
            con.print(msg)

    use_amp = bool(cfg.amp and device.type == "cuda")
    if cfg.amp and not use_amp:
        say("[yellow]note:[/] --amp needs CUDA; training in float32 on the CPU")
    h, w = int(input_hw[0]), int(input_hw[1])

    train_ds = build_dataset(data_spec, "train", (h, w), augment=True, seed=cfg.data_seed, length=cfg.train_len)
    val_ds = build_dataset(data_spec, "val", (h, w), augment=False, seed=cfg.data_seed, length=cfg.val_len)
    info = train_ds.info
    arch_obj, note = prepare_arch(arch, info)
    from rtseg.spaces import get_space

    get_space(arch_obj.space).check_input(h, w)
    if note:
        say(f"[yellow]note:[/] {note}")

    run_config = {
        "format": "rtseg.train_config",
        "schema_version": 1,
        "arch": arch_obj.to_dict(),
        "data": data_spec,
        "input_hw": [h, w],
        "train": asdict(cfg),
        "world_size": dist.world_size(),
        "device": str(device),
        "machine": machine_name(device),
        "torch_version": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    last_path, best_path = out / "last.pt", out / "best.pt"
    resume_meta: dict[str, Any] | None = None
    if last_path.exists() or (out / "config.json").exists():
        if not cfg.resume:
            raise RtsegError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
        if (out / "config.json").exists():
            _check_resume_config(read_json(out / "config.json", "run config"), run_config, out)
        if last_path.exists():
            state, resume_meta = load_checkpoint(last_path, expected_arch=arch_obj, num_classes=info.num_classes)
    elif cfg.resume:
        say(f"[yellow]note:[/] nothing to resume in {out}; starting a new run")

    torch.manual_seed(cfg.seed)
    model = build_model(arch_obj).to(device)
    if resume_meta is not None:
        model.load_state_dict(state)
    if ddp and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    net: nn.Module = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if ddp else model
    optimizer = build_optimizer(net.parameters(), cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    criterion = build_loss(cfg.ohem, info.ignore_index)
    # augmentation is seeded per (seed, epoch, item) by the loader; torch's RNG only drives dropout etc.
    torch.manual_seed(cfg.seed * 7919 + 1 + dist.rank())

    train_loader = make_loader(train_ds, cfg.batch, True, cfg.workers, ddp, seed=cfg.seed, pin_memory=device.type == "cuda")  # type: ignore[arg-type]
    val_loader = make_loader(val_ds, cfg.batch, False, cfg.workers, ddp, pin_memory=device.type == "cuda")  # type: ignore[arg-type]
    steps_per_epoch = len(train_loader)
    max_total = cfg.epochs * steps_per_epoch

    start_epoch, step, best, best_epoch, history, elapsed_before, train_time, train_images = 1, 0, -1.0, 0, [], 0.0, 0.0, 0
    if resume_meta is not None:
        optimizer.load_state_dict(resume_meta["optimizer"])
        if use_amp and resume_meta.get("scaler"):
            scaler.load_state_dict(resume_meta["scaler"])
        start_epoch = int(resume_meta["epoch"]) + 1
        step = int(resume_meta["step"])
        best, best_epoch = float(resume_meta.get("best_miou", -1.0)), int(resume_meta.get("best_epoch", 0))
        history = json.loads(resume_meta.get("history", "[]"))
        elapsed_before = float(resume_meta.get("elapsed_s", 0.0))
        train_time = float(resume_meta.get("train_time_s", 0.0))
        train_images = int(resume_meta.get("train_images", 0))
        say(f"resuming {out} after epoch {start_epoch - 1} (step {step}, best mIoU {100 * max(best, 0):.2f}%)")
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", run_config)
        (out / "metrics").mkdir(exist_ok=True)

    budget = _Budget(cfg.minutes, elapsed_before)
    if resume_meta is not None and resume_meta.get("step_time"):
        budget.step_time, budget.val_time = resume_meta.get("step_time"), resume_meta.get("val_time")
    total = budget.total_steps(step, steps_per_epoch, max_total)
    stopped_by = "epochs"
    final: dict[str, Any] | None = history[-1]["val"] if history else None
    say(
        f"training {arch_obj.name or 'arch'} on {info.name} ({len(train_ds)} train / {len(val_ds)} val) at {h}x{w}, "
        f"batch {cfg.batch}x{dist.world_size()}, {cfg.optimizer} lr {cfg.lr:g}, {'OHEM' if cfg.ohem else 'CE'}, "
        f"{device}{' AMP' if use_amp else ''}, "
        + (f"budget {cfg.minutes:g} min (at most {cfg.epochs} epochs)" if cfg.minutes else f"{cfg.epochs} epochs")
    )

    progress = _progress(con, enabled=cfg.progress and main)
    task = progress.add_task("train", total=total, completed=min(step, total), loss=float("nan"), ips=0.0, epoch=start_epoch)
    stop = budget.should_stop() or start_epoch > cfg.epochs
    if stop and start_epoch <= cfg.epochs:
        stopped_by = "budget"
    epoch = start_epoch - 1
    with progress:
        for epoch in range(start_epoch, cfg.epochs + 1):
            if stop:
                epoch -= 1
                break
            train_loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
            net.train()
            loss_sum, loss_n, curve, win = 0.0, 0, [], []
            ep_images, ep_t0 = 0, time.perf_counter()
            t_step = time.perf_counter()
            timed_steps, timed_time, timed_images = 0, 0.0, 0
            for i, (images, labels) in enumerate(train_loader):
                lr = poly_lr(cfg.lr, step, total)  # type: ignore[arg-type]
                set_lr(optimizer, lr)
                images = images.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    logits = net(images)
                loss = criterion(logits, labels)
                if not torch.isfinite(loss):
                    raise RtsegError(f"training diverged (loss {float(loss)} at step {step}); lower --lr")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                step += 1
                lv = float(loss.detach())
                loss_sum += lv
                loss_n += 1
                win.append(lv)
                n_img = int(images.shape[0]) * dist.world_size()
                ep_images += n_img
                now = time.perf_counter()
                dt = now - t_step
                t_step = now
                if step > 1 and i > 0:  # the first step of an epoch pays for worker start-up
                    timed_steps += 1
                    timed_time += dt
                    timed_images += n_img
                    train_time += dt
                    train_images += n_img
                if len(win) >= cfg.log_every:
                    curve.append([(i + 1) / steps_per_epoch, sum(win) / len(win)])
                    win = []
                # after 20 timed steps, size the poly schedule to the budget (all ranks agree)
                if cfg.minutes and timed_steps == 20 and budget.step_time is None:
                    budget.step_time = timed_time / timed_steps
                    total = int(dist.broadcast_object(budget.total_steps(step, steps_per_epoch, max_total)))
                    progress.update(task, total=total)
                ips = timed_images / timed_time if timed_time > 0 else 0.0
                progress.update(task, completed=min(step, total), loss=loss_sum / loss_n, ips=ips, epoch=epoch)
                if cfg.minutes:
                    flag = torch.tensor([1.0 if budget.should_stop() else 0.0], device=_comm_device(device))
                    if bool(dist.all_reduce_max(flag).item()):
                        stop, stopped_by = True, "budget"
                        break
            if win:
                curve.append([min(1.0, loss_n / steps_per_epoch), sum(win) / len(win)])
            train_loss = dist.all_reduce_sum(torch.tensor([loss_sum, float(loss_n)], dtype=torch.float64, device=_comm_device(device)))
            mean_loss = float(train_loss[0] / max(1.0, float(train_loss[1])))
            ep_train_s = time.perf_counter() - ep_t0
            if timed_steps:
                budget.step_time = timed_time / timed_steps
            # validation (replicas first agree on their BN statistics)
            dist.sync_buffers(unwrap(net))
            progress.update(task, description="val")
            t_val = time.perf_counter()
            val = evaluate(unwrap(net), val_loader, info.num_classes, info.ignore_index, device, amp=use_amp, class_names=info.class_names)
            val.pop("confusion_matrix", None)
            budget.val_time = time.perf_counter() - t_val
            progress.update(task, description="train")
            final = val
            improved = val["miou"] > best
            if improved:
                best, best_epoch = val["miou"], epoch
            rec = {
                "epoch": epoch,
                "partial": loss_n < steps_per_epoch,
                "steps": step,
                "lr": poly_lr(cfg.lr, step, total),  # type: ignore[arg-type]
                "train_loss": mean_loss,
                "train_images": ep_images,
                "train_img_per_s": timed_images / timed_time if timed_time > 0 else None,
                "epoch_train_s": ep_train_s,
                "val_s": budget.val_time,
                "elapsed_s": budget.elapsed(),
                "val": val,
                "loss_curve": curve,
            }
            history.append(rec)
            if cfg.minutes and not stop:
                total = int(dist.broadcast_object(budget.total_steps(step, steps_per_epoch, max_total)))
                progress.update(task, total=total)
            if main:
                atomic_write_json(out / "metrics" / f"epoch_{epoch:03d}.json", rec)
                state = {
                    "epoch": epoch,
                    "step": step,
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if use_amp else None,
                    "best_miou": best,
                    "best_epoch": best_epoch,
                    "elapsed_s": budget.elapsed(),
                    "train_time_s": train_time,
                    "train_images": train_images,
                    "step_time": budget.step_time,
                    "val_time": budget.val_time,
                    "history": json.dumps(history),
                    "metrics": {k: val[k] for k in ("miou", "per_class_iou", "pixel_accuracy")},
                    "train_config": asdict(cfg),
                    "data_spec": data_spec,
                }
                save_checkpoint(last_path, net, arch_obj, info, state, input_hw=(h, w))
                if improved:
                    save_checkpoint(best_path, net, arch_obj, info, state, input_hw=(h, w))
                plot_curve(history, out / "curve.png", title=f"{arch_obj.name or 'arch'} on {info.name} {h}x{w}")
                con.print(
                    f"epoch {epoch}: loss {mean_loss:.4f}  val mIoU {100 * val['miou']:.2f}%  pixel acc {100 * val['pixel_accuracy']:.2f}%"
                    + ("  (best)" if improved else "")
                    + ("  [budget reached]" if stop else ""),
                    highlight=False,
                )
            dist.barrier()
            if on_epoch is not None:
                on_epoch(rec)
            if stop:
                break

    ips_total = train_images / train_time if train_time > 0 else None
    digest = weights_digest(net)
    ranks = dist.all_gather_object({"rank": dist.rank(), "weights": digest, "miou": final["miou"] if final else None})
    summary = {
        "run": str(out),
        "epochs": epoch if history else 0,
        "steps": step,
        "stopped_by": stopped_by,
        "best_miou": best if best >= 0 else None,
        "best_epoch": best_epoch or None,
        "final": final,
        "train_img_per_s": ips_total,
        "elapsed_s": budget.elapsed(),
        "device": str(device),
        "machine": machine_name(device),
        "world_size": dist.world_size(),
        "input_hw": [h, w],
        "data": data_spec,
        "images": split_sizes(train_ds, val_ds),
        "checkpoint": str(best_path),
        "last": str(last_path),
        "curve": str(out / "curve.png"),
        "ranks": ranks,
        "ranks_agree": len({r["weights"] for r in ranks}) == 1 and len({r["miou"] for r in ranks}) == 1,
    }
    if main:
        atomic_write_json(out / "summary.json", summary)
    dist.barrier()
    return summary


def _comm_device(device: torch.device) -> torch.device:
    """Where small all-reduce tensors live: NCCL needs CUDA tensors, gloo CPU ones."""
    return device if device.type == "cuda" else torch.device("cpu")


def _progress(con: Console, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}[/] ep {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[ips]:.1f} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=con,
        disable=not enabled,
        transient=False,
    )
