"""The pipeline ``rtseg train`` runs: :func:`train` (run folder, checkpoints, resume, summary).

The pieces it shares with the searches live beside it: the loaders (:mod:`rtseg.train.loader`),
the optimisation step (:mod:`rtseg.train.step`) and the one-thread worker (:mod:`rtseg.train.workers`).

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

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from rtseg import distributed as dist
from rtseg.arch import Arch
from rtseg.checkpoint import load_checkpoint, save_checkpoint, unwrap
from rtseg.data import DatasetInfo, build_dataset, parse_data_spec, split_sizes
from rtseg.data.selection import selection_split
from rtseg.errors import RtsegError
from rtseg.evaluate import evaluate
from rtseg.io import atomic_write_json, check_batch_memory, check_same_config, parse_json_text, read_json
from rtseg.reporting import Reporter, RichReporter, SilentReporter, TaskBar
from rtseg.rundir import RunDir, claim_run_dir
from rtseg.spaces import build_model, get_space, load_arch
from rtseg.train.budget import TimeBudget
from rtseg.train.config import TrainConfig
from rtseg.train.curve import plot_curve
from rtseg.train.device import machine_name, resolve_device
from rtseg.train.loader import cpu_threads, make_loader
from rtseg.train.step import build_loss, build_optimizer, poly_lr, set_lr, weights_digest


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


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------


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


def _resume_progress(run: _Run, model: _Model, meta: dict[str, Any] | None, reporter: Reporter) -> tuple[_Progress, TimeBudget]:
    """Where the run stands: from scratch, or the optimizer, counters, history and timings of ``last.pt``."""
    prog = _Progress()
    if meta is None:
        return prog, TimeBudget(run.cfg.minutes, 0.0)
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
    budget = TimeBudget(run.cfg.minutes, float(meta.get("elapsed_s", 0.0)))
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


def _train_epoch(run: _Run, model: _Model, loader: DataLoader, prog: _Progress, budget: TimeBudget, epoch: int, max_total: int,
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


def _validate(run: _Run, model: _Model, loader: DataLoader, budget: TimeBudget) -> dict[str, Any]:
    """Score the model on the validation split (replicas first agree on their BN statistics); the
    time it took sizes the budget's reserve."""
    info = run.info
    dist.sync_buffers(unwrap(model.net))
    t_val = time.perf_counter()
    val = evaluate(unwrap(model.net), loader, info.num_classes, info.ignore_index, run.device, amp=run.use_amp, class_names=info.class_names)
    val.pop("confusion_matrix", None)
    budget.val_time = time.perf_counter() - t_val
    return val


def _record_epoch(run: _Run, prog: _Progress, epoch: int, stats: dict[str, Any], val: dict[str, Any], budget: TimeBudget) -> dict[str, Any]:
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


def _save_epoch(run: _Run, model: _Model, prog: _Progress, rec: dict[str, Any], budget: TimeBudget, reporter: Reporter) -> None:
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


def _summarize(run: _Run, model: _Model, prog: _Progress, budget: TimeBudget) -> dict[str, Any]:
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


def _comm_device(device: torch.device) -> torch.device:
    """Where small all-reduce tensors live: NCCL needs CUDA tensors, gloo CPU ones."""
    return device if device.type == "cuda" else torch.device("cpu")
