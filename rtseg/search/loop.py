"""The latency-constrained architecture search: one bilevel loop for every space.

Per step (first-order, as in the SSR and CAS papers): the network weights ``w`` take a step on a batch of
split A (cross-entropy only); then the architecture parameters take an Adam step on a batch of split
B with the full architecture loss of :mod:`rtseg.search.objective` (cross-entropy + latency budget
from the LUT + FLOPs budget + per-level regularizer). Every ``shrink_every`` arch steps, hierarchical
progressive shrinking removes weak candidates with their weights. The search ends when every
decision that can still matter has a single candidate (total architecture entropy 0) or at the
epoch limit; the result is decoded, fitted into the budget band if needed, and written as
``RUN/arch.json``.

Everything a run produces lives in its folder: ``arch.json``, ``search_log.jsonl`` (one JSON per
epoch), ``trajectory.json`` (probabilities per arch step), ``search.json`` (summary), the plots, and
``state.pt`` (weights-only checkpoint for ``--resume``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.flops import op_flops
from rtseg.io import atomic_save, atomic_write_json, atomic_write_text, check_same_config, read_json
from rtseg.search.budget import arch_cost, check_feasible, fit_to_budget
from rtseg.search.objective import DEFAULT_LEVEL_WEIGHTS, budget_penalty, flops_penalty, level_regularizer, shrink, total_entropy
from rtseg.spaces import get_space


#: Synthetic scenes per split when a search names no --train-len/--val-len (a file dataset is used whole).
SYNTHETIC_SEARCH_LENGTHS = {"train": 256, "val": 32}
#: Config fields a resumed search may change: limits and resources of this invocation, not what is searched.
RESUME_MAY_DIFFER = ("epochs", "minutes", "workers", "device", "force", "verify_latency")
#: How ``rtseg search`` spells the config fields it sets (the others are library-only).
RESUME_FLAGS = {"space_options": "--space-opt", "input_hw": "--input", "shrink": "--no-shrink",
                **{k: f"--{k.replace('_', '-')}" for k in ("space", "lut", "latency_ms", "flops_g", "data", "batch", "reg",
                                                           "warmup_epochs", "arch_lr", "w_lr", "train_len", "val_len", "seed")}}


@dataclass
class SearchConfig:
    space: str = "ssr"
    space_options: dict[str, Any] = field(default_factory=dict)  # --space-opt: the space's size (CAS, DCNAS)
    lut: str = ""
    latency_ms: float = 0.0
    flops_g: float | None = None
    data: str = "synthetic"
    input_hw: tuple[int, int] = (128, 256)
    epochs: int = 10
    batch: int = 4
    reg: str | None = None  # ssr | entropy | none | a space's own (dcnas); None: the space's paper's (default_reg)
    shrink: bool = True
    shrink_h: float = 0.1
    shrink_every: int = 10  # arch steps between shrink checks
    level_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LEVEL_WEIGHTS))
    latency_weight: float = 5.0
    flops_weight: float = 5.0
    band: tuple[float, float] = (0.85, 0.97)
    # The SSR paper uses Adam with lr 3e-4 (weights) and 2e-3 (arch) over 200 epochs on Cityscapes; the
    # defaults here are larger because rtseg searches are meant to finish in minutes.
    w_lr: float = 2e-3
    w_weight_decay: float = 1e-4
    arch_lr: float = 5e-2
    arch_weight_decay: float = 1e-3
    warmup_epochs: int = 1
    relaxation: str | None = None  # None: the space's own (sigmoid-normalized for ssr, softmax for cas/dcnas)
    single_path: bool = False  # draw one path per step instead of the weighted sum (supernets with sample_paths)
    # synthetic: scenes per split (None: SYNTHETIC_SEARCH_LENGTHS); cityscapes/camvid: None uses the
    # whole split, N only its first N images (an explicit subset, reported in the summary)
    train_len: int | None = None
    val_len: int | None = None
    workers: int = 0
    device: str = "cpu"
    seed: int = 0
    force: bool = False
    verify_latency: bool = True
    minutes: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_hw"] = list(self.input_hw)
        d["band"] = list(self.band)
        return d


@dataclass
class SearchResult:
    arch: Arch
    out_dir: Path
    summary: dict[str, Any]


def _ce(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    return F.cross_entropy(logits, labels, ignore_index=ignore_index)


def _allreduce_grads(params: list[torch.nn.Parameter]) -> None:
    """Data-parallel gradient averaging. Done by hand rather than with the DDP wrapper because
    shrinking deletes parameters mid-run, which a DDP wrapper cannot follow."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    ws = dist.get_world_size()
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= ws


def _broadcast_params(module: torch.nn.Module) -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def _rebuild_optimizer(old: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """A fresh optimizer over the surviving params, keeping their state (moments, step)."""
    new = type(old)(params, **{k: v for k, v in old.defaults.items()})
    for p in params:
        if p in old.state:
            new.state[p] = old.state[p]
    new.param_groups[0]["lr"] = old.param_groups[0]["lr"]
    return new


def run_search(cfg: SearchConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
               on_step: Callable[[int], None] | None = None) -> SearchResult:
    """Run (or ``resume``) a search into ``out_dir``; see the module docstring."""
    from rtseg.train import cpu_threads

    with cpu_threads(torch.device("cuda" if str(cfg.device).startswith("cuda") else "cpu"), cfg.workers):
        return _run_search(cfg, out_dir, resume, progress, on_step)


def _run_search(cfg: SearchConfig, out_dir: str | Path, resume: bool, progress: bool,
                on_step: Callable[[int], None] | None) -> SearchResult:
    from rtseg.data import build_dataset, split_sizes
    from rtseg import distributed as dist
    from rtseg.distributed import init_distributed, is_main, world_size
    from rtseg.evaluate import evaluate
    from rtseg.latency.lut import load_lut
    from rtseg.train import make_loader, poly_lr, weights_digest

    out = Path(out_dir)
    h, w = cfg.input_hw
    space = get_space(cfg.space, cfg.space_options)
    space.check_input(h, w)
    cfg = _resolved(cfg, space)
    if cfg.latency_ms <= 0:
        raise RtsegError("--latency-ms must be a positive budget in milliseconds")
    lut = load_lut(cfg.lut)
    if lut.space != cfg.space and not cfg.force:
        raise RtsegError(f"LUT {cfg.lut} was measured for space {lut.space!r}, not {cfg.space!r}; profile that space or pass --force")
    lut_options = lut.search_space().options() if lut.space == cfg.space else cfg.space_options
    if lut_options != cfg.space_options and not cfg.force:
        raise RtsegError(f"LUT {cfg.lut} was profiled for the {cfg.space} space with options {lut_options or 'default'}, the search asks "
                         f"for {cfg.space_options or 'default'}; profile with the same --space-opt or pass --force")
    if tuple(lut.input_hw) != (h, w) and not cfg.force:
        raise RtsegError(
            f"LUT {cfg.lut} was measured at {lut.input_hw[0]}x{lut.input_hw[1]}, the search runs at {h}x{w}; "
            f"use --input {lut.input_hw[0]}x{lut.input_hw[1]} or profile at {h}x{w}"
        )
    lat_cost, lat_const = lut.cost, float(lut.constant_ms)
    flops_budget = cfg.flops_g * 1e9 if cfg.flops_g else None

    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise RtsegError(f"--device {cfg.device} asked for, but this torch sees no CUDA GPU; use --device cpu")
    device = init_distributed(cfg.device)
    distributed = world_size() > 1
    torch.manual_seed(cfg.seed)

    train_set = build_dataset(cfg.data, "train", (h, w), augment=True, seed=cfg.seed, length=cfg.train_len)
    val_set = build_dataset(cfg.data, "val", (h, w), augment=False, seed=cfg.seed, length=cfg.val_len)
    info = train_set.info
    images = split_sizes(train_set, val_set)
    if lut.num_classes != info.num_classes and not cfg.force:
        raise RtsegError(f"LUT {cfg.lut} was profiled for {lut.num_classes} classes, dataset {cfg.data} has {info.num_classes}; "
                         f"re-run profile-ops with --classes {info.num_classes}")
    cheapest = check_feasible(space, h, w, info.num_classes, cfg.latency_ms, lat_cost, lat_const)
    n = len(train_set)
    split_a = torch.utils.data.Subset(train_set, list(range(0, n, 2)))
    split_b = torch.utils.data.Subset(train_set, list(range(1, n, 2)))
    loader_a = make_loader(split_a, cfg.batch, shuffle=True, workers=cfg.workers, distributed=distributed, seed=cfg.seed)
    loader_b = make_loader(split_b, cfg.batch, shuffle=True, workers=cfg.workers, distributed=distributed, seed=cfg.seed + 1)
    val_loader = make_loader(val_set, cfg.batch, shuffle=False, workers=cfg.workers, distributed=distributed)

    supernet = (space.supernet(info.num_classes, relaxation=cfg.relaxation) if cfg.relaxation
                else space.supernet(info.num_classes)).to(device)
    if cfg.single_path:
        if not hasattr(supernet, "sample_paths"):
            raise RtsegError(f"single-path sampling is not available for the {cfg.space} space; search it without --single-path")
        supernet.sample_paths = True
    w_opt = torch.optim.Adam(supernet.weight_parameters(), lr=cfg.w_lr, weight_decay=cfg.w_weight_decay)
    a_opt = torch.optim.Adam(supernet.arch_parameters(), lr=cfg.arch_lr, betas=(0.5, 0.999), weight_decay=cfg.arch_weight_decay)
    start_epoch, log, trajectory, arch_steps = 0, [], [], 0
    state_path = out / "state.pt"
    if resume and (out / "config.json").exists():
        check_same_config(read_json(out / "config.json", "search config"), cfg.to_dict(), out, may_differ=RESUME_MAY_DIFFER,
                          flags=RESUME_FLAGS)
    if resume and state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        for name, idx in st["removed"]:
            supernet.remove(name, idx)
        supernet.load_state_dict(st["supernet"])
        w_opt = torch.optim.Adam(supernet.weight_parameters(), lr=cfg.w_lr, weight_decay=cfg.w_weight_decay)
        w_opt.load_state_dict(st["w_opt"])
        a_opt.load_state_dict(st["a_opt"])
        start_epoch, arch_steps = int(st["epoch"]) + 1, int(st["arch_steps"])
        log = json.loads(st["log"])
        trajectory = json.loads(st["trajectory"])
    elif resume:
        raise RtsegError(f"nothing to resume in {out}: no state.pt (start without --resume)")
    removed: list[tuple[str, int]] = [tuple(r) for r in (st["removed"] if resume else [])]  # type: ignore[misc]
    _broadcast_params(supernet)
    main = is_main()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", cfg.to_dict())

    steps_per_epoch = min(len(loader_a), len(loader_b))
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    flops_fn = op_flops if flops_budget else None
    # a resumed search counts the time its earlier epochs took: the summary's wall time and the
    # --minutes limit are the whole search's, not this process's
    t_start = time.monotonic() - (float(log[-1].get("elapsed_s") or 0.0) if log else 0.0)
    discrete_epoch = None
    deadline = t_start + cfg.minutes * 60 if cfg.minutes else None

    def time_is_up() -> bool:
        """The wall-clock limit, agreed by every rank (one rank leaving the loop alone would hang the
        others in their next all-reduce)."""
        if deadline is None:
            return False
        flag = torch.tensor([1.0 if time.monotonic() > deadline else 0.0], device=device if device.type == "cuda" else "cpu")
        return bool(dist.all_reduce_max(flag).item())

    def expected_terms() -> tuple[torch.Tensor, torch.Tensor | None]:
        e_lat = supernet.expected_cost(lat_cost, h, w) + lat_const
        e_flops = supernet.expected_cost(op_flops, h, w) if flops_budget else None
        return e_lat, e_flops

    prog = _progress(progress and main)
    task = prog.add_task("search", total=total_steps, completed=start_epoch * steps_per_epoch, info="") if prog else None
    try:
        if prog:
            prog.start()
        for epoch in range(start_epoch, cfg.epochs):
            supernet.train()
            for sampler in (getattr(loader_a, "sampler", None), getattr(loader_b, "sampler", None)):
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch)
            if hasattr(supernet, "on_epoch"):  # e.g. DCNAS anneals its path-sampling temperature
                supernet.on_epoch(epoch, cfg.epochs)
            sums = {"loss_w": 0.0, "ce_b": 0.0, "n": 0}
            for step, ((xa, ya), (xb, yb)) in enumerate(zip(loader_a, loader_b)):
                gstep = epoch * steps_per_epoch + step
                for g in w_opt.param_groups:
                    g["lr"] = poly_lr(cfg.w_lr, gstep, total_steps)
                xa, ya, xb, yb = xa.to(device), ya.to(device), xb.to(device), yb.to(device)
                # 1. weights on split A
                w_opt.zero_grad(set_to_none=True)
                loss_w = _ce(supernet(xa), ya, info.ignore_index)
                loss_w.backward()
                for p in supernet.arch_parameters():
                    p.grad = None
                _allreduce_grads(supernet.weight_parameters())
                w_opt.step()
                sums["loss_w"] += float(loss_w.detach())
                sums["n"] += 1
                # 2. architecture on split B
                if epoch >= cfg.warmup_epochs:
                    a_opt.zero_grad(set_to_none=True)
                    ce_b = _ce(supernet(xb), yb, info.ignore_index)
                    e_lat, e_flops = expected_terms()
                    loss_a = ce_b + cfg.latency_weight * budget_penalty(e_lat, cfg.latency_ms, *cfg.band)
                    if e_flops is not None and flops_budget:
                        loss_a = loss_a + cfg.flops_weight * flops_penalty(e_flops, flops_budget)
                    if cfg.reg in ("ssr", "entropy"):
                        loss_a = loss_a + level_regularizer(supernet, supernet.active_decisions(), cfg.reg, cfg.level_weights)
                    elif cfg.reg in space.own_regs:
                        for term in supernet.regularization().values():
                            loss_a = loss_a + term
                    for p in supernet.weight_parameters():
                        p.grad = None
                    loss_a.backward()
                    _allreduce_grads(supernet.arch_parameters())
                    a_opt.step()
                    arch_steps += 1
                    sums["ce_b"] += float(ce_b.detach())
                    if main:
                        trajectory.append(_snapshot(supernet, arch_steps, float(e_lat.detach())))
                    if cfg.shrink and arch_steps % cfg.shrink_every == 0:
                        newly = shrink(supernet, supernet.decisions(), cfg.shrink_h)
                        if newly:
                            removed += newly
                            w_opt = _rebuild_optimizer(w_opt, supernet.weight_parameters())
                if prog:
                    prog.update(task, advance=1, info=f"loss {float(loss_w.detach()):.3f}")
                if on_step:
                    on_step(gstep)
                if _is_discrete(supernet) or time_is_up():
                    break
            # end of epoch: log, validate, checkpoint (replicas first agree on their BN statistics)
            dist.sync_buffers(supernet)
            with torch.no_grad():
                e_lat, _ = expected_terms()
                e_flops = supernet.expected_cost(op_flops, h, w)
            active = supernet.active_decisions()
            ent = total_entropy(supernet, active)
            metrics = evaluate(supernet, val_loader, info.num_classes, info.ignore_index, device)
            row = {
                "epoch": epoch,
                "expected_latency_ms": float(e_lat),
                "expected_flops_g": float(e_flops) / 1e9,
                "total_entropy": ent,
                "candidates_left": _candidates_left(active),
                "supernet_val_miou": float(metrics["miou"]),
                "train_loss": sums["loss_w"] / max(1, sums["n"]),
                "arch_ce": sums["ce_b"] / max(1, sums["n"]) if epoch >= cfg.warmup_epochs else None,
                "removed_total": len(removed),
                "elapsed_s": time.monotonic() - t_start,
            }
            log.append(row)
            if ent == 0.0 and discrete_epoch is None:
                discrete_epoch = epoch + 1
            if main:
                atomic_write_text(out / "search_log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
                state = {
                    "format": "rtseg.search_state", "schema_version": 1, "epoch": epoch, "arch_steps": arch_steps,
                    "supernet": supernet.state_dict(), "w_opt": w_opt.state_dict(), "a_opt": a_opt.state_dict(),
                    "removed": [list(r) for r in removed], "log": json.dumps(log), "trajectory": json.dumps(trajectory),
                }
                atomic_save(state_path, lambda p: torch.save(state, p))
            if prog:
                prog.console.print(
                    f"epoch {epoch}: E\\[lat] {row['expected_latency_ms']:.3f} ms (T {cfg.latency_ms:.3f}), "
                    f"E\\[FLOPs] {row['expected_flops_g']:.3f} G, entropy {ent:.3f}, left {row['candidates_left']}, "
                    f"supernet mIoU {row['supernet_val_miou']:.3f}"
                )
            if _is_discrete(supernet) or time_is_up():
                break
    finally:
        if prog:
            prog.stop()

    # decode and land in the budget
    fit = fit_to_budget(supernet, h, w, cfg.latency_ms, flops_budget, lat_cost, lat_const, flops_fn, low=cfg.band[0])
    arch = fit.arch
    arch.name = f"searched-{cfg.space}-{cfg.latency_ms:g}ms"
    argmax_cost = arch_cost(supernet.decode(), h, w, lat_cost, lat_const, op_flops)
    final_cost = arch_cost(arch, h, w, lat_cost, lat_const, op_flops)
    arch.meta = {
        "searched_with": {"lut": str(cfg.lut), "latency_ms": cfg.latency_ms, "flops_g": cfg.flops_g, "reg": cfg.reg,
                          "shrink": cfg.shrink, "input_hw": [h, w], "data": cfg.data, "space_options": cfg.space_options,
                          "images": images, **_lut_runtime(lut)},
        "predicted_latency_ms": final_cost.latency_ms,
        "flops": int(final_cost.flops),
    }
    summary: dict[str, Any] = {
        "arch": str(out / "arch.json"),
        "target_latency_ms": cfg.latency_ms,
        "runtime": _lut_runtime(lut),
        "predicted_latency_ms": final_cost.latency_ms,
        "predicted_over_target": final_cost.latency_ms / cfg.latency_ms,
        "flops": int(final_cost.flops),
        "flops_budget": int(flops_budget) if flops_budget else None,
        "cheapest_latency_ms": cheapest.latency_ms,
        "epochs_run": len(log),
        "epochs_to_discrete": discrete_epoch,
        "discrete": _is_discrete(supernet),
        "arch_steps": arch_steps,
        "argmax_predicted_latency_ms": argmax_cost.latency_ms,
        "budget_fit_changes": fit.changes,
        "reg": cfg.reg,
        "shrink": cfg.shrink,
        "space_options": cfg.space_options,
        "data": cfg.data,
        "images": images,
        "wall_time_s": time.monotonic() - t_start,
        "world_size": world_size(),
    }
    ranks = dist.all_gather_object({"rank": dist.rank(), "supernet": weights_digest(supernet), "arch": arch.to_json()})
    summary["ranks"] = [{"rank": r["rank"], "supernet": r["supernet"]} for r in ranks]
    summary["ranks_agree"] = len({r["supernet"] for r in ranks}) == 1 and len({r["arch"] for r in ranks}) == 1
    if main:
        if cfg.verify_latency:
            summary.update(_verify(lut, arch, cfg))
        arch.save(out / "arch.json")
        atomic_write_json(out / "trajectory.json", trajectory)
        atomic_write_json(out / "search.json", summary)
        try:
            from rtseg.search.plots import plot_search

            plot_search(log, trajectory, out, cfg.latency_ms)
        except Exception as exc:  # plotting must never lose a finished search
            summary["plot_error"] = str(exc)
    return SearchResult(arch, out, summary)


def _resolved(cfg: SearchConfig, space) -> SearchConfig:
    """The config with its defaults made explicit (what ``config.json`` records and ``--resume``
    compares): the space's options as the space normalizes them, the space's own regularizer, and the
    synthetic split sizes. A file dataset's ``None`` lengths stay ``None``: the whole split."""
    from rtseg.data import parse_data_spec

    reg = cfg.reg or space.default_reg
    allowed = ("ssr", "entropy", "none", *space.own_regs)
    if reg not in allowed:
        raise RtsegError(f"unknown regularizer {reg!r} for the {cfg.space} space: choose {', '.join(allowed)}")
    synthetic = parse_data_spec(cfg.data)[0] == "synthetic"
    lengths = {}
    for split, n in (("train", cfg.train_len), ("val", cfg.val_len)):
        if n is not None and int(n) < 1:
            raise RtsegError(f"--{split}-len must be at least 1, got {n}")
        lengths[f"{split}_len"] = SYNTHETIC_SEARCH_LENGTHS[split] if n is None and synthetic else n
    return replace(cfg, reg=reg, space_options=space.options(), **lengths)


def _verify(lut, arch: Arch, cfg: SearchConfig) -> dict[str, Any]:
    """Measure the decoded net end to end on the LUT's backend, when this machine is the LUT's device."""
    from rtseg.latency.validate import measure_arch_latency, reference_speed_ratio

    try:
        lut.check_device(force=False)
    except RtsegError as exc:
        return {"measured_latency_ms": None, "measured_note": f"not measured: {exc}"}
    h, w = cfg.input_hw
    stats = measure_arch_latency(arch, h, w, backend=lut.backend, device=lut.provenance.get("device_arg") or "cpu",
                                 precision=lut.precision, batch=lut.batch, threads=lut.threads, clock=lut.clock)
    return {"measured_latency_ms": stats.median_ms, "measured_over_target": stats.median_ms / cfg.latency_ms,
            "measured_backend": lut.backend, "measured_device": _lut_runtime(lut)["lut_device_name"],
            "reference_speed_ratio": reference_speed_ratio(lut)}


def _lut_runtime(lut) -> dict[str, Any]:
    """The runtime the LUT was measured on, as the decoded arch and the summary record it: the search's
    latency promise holds there, and a net later run elsewhere says so (:func:`rtseg.arch.deploy_note`)."""
    dev = lut.provenance.get("device")
    dev = dev if isinstance(dev, dict) else {"name": str(dev)}
    return {"lut_backend": lut.backend, "lut_precision": lut.precision, "lut_device_kind": dev.get("kind", "cpu"),
            "lut_device_name": dev.get("name"), "lut_threads": lut.threads}


def _is_discrete(supernet) -> bool:
    return all(d.n_alive == 1 for d in supernet.active_decisions())


def _candidates_left(decisions) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in decisions:
        out[d.level] = out.get(d.level, 0) + d.n_alive
    return out


def _snapshot(supernet, step: int, e_lat: float) -> dict[str, Any]:
    with torch.no_grad():
        probs = {d.name: [round(float(x), 5) for x in supernet.probs(d.name)] for d in supernet.decisions()}
    return {"step": step, "expected_latency_ms": e_lat, "probs": probs}


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from rtseg.cli._app import console

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=False)


def load_search_summary(run: str | Path) -> dict[str, Any]:
    return read_json(Path(run) / "search.json", "search summary")


__all__ = ["SearchConfig", "SearchResult", "run_search", "load_search_summary"]
