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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from rtseg import distributed as dist
from rtseg.backends.device import device_kind
from rtseg.checkpoint import load_state
from rtseg.data import DatasetInfo, parse_data_spec
from rtseg.data.selection import selection_record, selection_split
from rtseg.errors import RtsegError
from rtseg.flops import op_flops
from rtseg.io import atomic_save, atomic_write_json, atomic_write_text, check_same_config, parse_json_text, read_json
from rtseg.evaluate import evaluate
from rtseg.latency.lut import LUT
from rtseg.reporting import Reporter, SilentReporter, TaskBar, reporter_for
from rtseg.search.budget import fit_to_budget
from rtseg.search.common import SearchContext, SearchResult, SearchSettings, finish, prepare
from rtseg.search.objective import DEFAULT_LEVEL_WEIGHTS, budget_penalty, flops_penalty, level_regularizer, shrink, total_entropy
from rtseg.search.plots import plot_search
from rtseg.spaces import SearchSpace, Supernet, get_space
from rtseg.train.loader import cpu_threads, make_loader
from rtseg.train.step import poly_lr, weights_digest


#: Synthetic scenes per split when a search names no --train-len/--val-len (a file dataset is used whole).
SYNTHETIC_SEARCH_LENGTHS = {"train": 256, "val": 32}
#: Config fields a resumed search may change: limits and resources of this invocation, not what is searched.
RESUME_MAY_DIFFER = ("epochs", "minutes", "workers", "device", "force", "verify_latency")
#: How ``rtseg search`` spells the config fields it sets (the others are library-only).
RESUME_FLAGS = {"space_options": "--space-opt", "input_hw": "--input", "shrink": "--no-shrink",
                **{k: f"--{k.replace('_', '-')}" for k in ("space", "lut", "latency_ms", "flops_g", "data", "batch", "reg",
                                                           "warmup_epochs", "arch_lr", "w_lr", "train_len", "val_len", "seed")}}


@dataclass
class SearchConfig(SearchSettings):
    """The differentiable search's settings (the shared ones are :class:`SearchSettings`)."""

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
    # images of the training split's two parts (rtseg.data.selection): the weights and the arch train
    # on halves of the fit part, the supernet is scored on the select part; synthetic: None uses
    # SYNTHETIC_SEARCH_LENGTHS, file datasets: None uses each part whole, N only its first N images
    train_len: int | None = None
    val_len: int | None = None
    workers: int = 0
    minutes: float | None = None


#: The gradient search under the name the strategy table gives it.
GradientConfig = SearchConfig


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
               on_step: Callable[[int], None] | None = None, reporter: Reporter | None = None) -> SearchResult:
    """Run (or ``resume``) a search into ``out_dir``; see the module docstring.

    ``reporter`` shows the progress bar and one line per epoch (default: a rich one on stderr when
    ``progress``, else silence); ``on_step(global_step)`` is called after every training step."""
    if reporter is None:
        reporter = reporter_for(progress)
    with cpu_threads(torch.device(device_kind(cfg.device)), cfg.workers):
        return _run_search(cfg, Path(out_dir), resume, reporter, on_step)


@dataclass
class _Run:
    """What every step of one search reads and does not change: the resolved config, the space, the
    LUT's costs, the data and the process's place in a distributed run."""

    cfg: SearchConfig
    out: Path
    ctx: SearchContext
    images: dict[str, Any]
    loader_a: Any
    loader_b: Any
    val_loader: Any
    device: torch.device
    main: bool
    deadline: float | None = None

    @property
    def hw(self) -> tuple[int, int]:
        return self.ctx.hw

    @property
    def space(self) -> SearchSpace:
        return self.ctx.space

    @property
    def lut(self) -> LUT:
        return self.ctx.lut

    @property
    def info(self) -> DatasetInfo:
        return self.ctx.info

    @property
    def flops_budget(self) -> float | None:
        return self.cfg.flops_budget

    @property
    def steps_per_epoch(self) -> int:
        return min(len(self.loader_a), len(self.loader_b))

    @property
    def total_steps(self) -> int:
        return max(1, self.cfg.epochs * self.steps_per_epoch)

    def expected_terms(self, supernet: Supernet) -> tuple[torch.Tensor, torch.Tensor | None]:
        """E[latency] from the LUT (plus its constant) and, under a FLOPs budget, E[FLOPs]."""
        h, w = self.hw
        e_lat = self.ctx.pricer.expected_latency(supernet, h, w)
        e_flops = supernet.expected_cost(op_flops, h, w) if self.flops_budget else None
        return e_lat, e_flops

    def time_is_up(self) -> bool:
        """The wall-clock limit, agreed by every rank (one rank leaving the loop alone would hang the
        others in their next all-reduce)."""
        if self.deadline is None:
            return False
        flag = torch.tensor([1.0 if time.monotonic() > self.deadline else 0.0],
                            device=self.device if self.device.type == "cuda" else "cpu")
        return bool(dist.all_reduce_max(flag).item())


@dataclass
class _State:
    """What changes as the search runs, and what ``state.pt`` holds to resume it."""

    supernet: Supernet
    w_opt: torch.optim.Optimizer
    a_opt: torch.optim.Optimizer
    start_epoch: int = 0
    arch_steps: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    removed: list[tuple[str, int]] = field(default_factory=list)
    discrete_epoch: int | None = None


def _run_search(cfg: SearchConfig, out: Path, resume: bool, reporter: Reporter,
                on_step: Callable[[int], None] | None) -> SearchResult:
    """The search as its steps: check the inputs, open the data, build or resume the state, run the
    epochs (each: training steps, validation, checkpoint), then decode, fit the budget and write."""
    space = get_space(cfg.space, cfg.space_options)
    space.check_input(*cfg.input_hw)
    cfg = _resolved(cfg, space)
    ctx = prepare(cfg)
    run = _open_run(cfg, out, ctx)
    st = _new_state(run)
    if resume:
        _resume(run, st)
    _broadcast_params(st.supernet)
    if run.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", cfg.to_dict())
    # a resumed search counts the time its earlier epochs took: the summary's wall time and the
    # --minutes limit are the whole search's, not this process's
    t_start = time.monotonic() - (float(st.log[-1].get("elapsed_s") or 0.0) if st.log else 0.0)
    run.deadline = t_start + cfg.minutes * 60 if cfg.minutes else None
    if not run.main:
        reporter = SilentReporter()
    with reporter.task("search", total=run.total_steps, completed=st.start_epoch * run.steps_per_epoch) as bar:
        for epoch in range(st.start_epoch, cfg.epochs):
            sums = _train_epoch(run, st, epoch, bar, on_step)
            row = _validate_epoch(run, st, epoch, sums, t_start)
            if run.main:
                _checkpoint(run, st, epoch)
            reporter.message(
                f"epoch {epoch}: E\\[lat] {row['expected_latency_ms']:.3f} ms (T {cfg.latency_ms:.3f}), "
                f"E\\[FLOPs] {row['expected_flops_g']:.3f} G, entropy {row['total_entropy']:.3f}, left {row['candidates_left']}, "
                f"supernet mIoU {row['supernet_val_miou']:.3f}"
            )
            if _is_discrete(st.supernet) or run.time_is_up():
                break
    return _finish(run, st, t_start)


def _open_run(cfg: SearchConfig, out: Path, ctx: SearchContext) -> _Run:
    """Join the distributed run (if any), seed, and open the data: the weights and the architecture
    train on the two halves of the training split's fit part, the supernet is scored on its select
    part (:mod:`rtseg.data.selection`); the validation split is never opened."""
    h, w = cfg.input_hw
    device = dist.init_distributed(cfg.device)
    distributed = dist.world_size() > 1
    torch.manual_seed(cfg.seed)
    fit, select = selection_split(cfg.data, (h, w), seed=cfg.seed, fraction=cfg.selection_fraction,
                                  fit_len=cfg.train_len, select_len=cfg.val_len)
    n = len(fit)
    split_a = torch.utils.data.Subset(fit, list(range(0, n, 2)))
    split_b = torch.utils.data.Subset(fit, list(range(1, n, 2)))
    return _Run(
        cfg=cfg, out=out, ctx=ctx, images=selection_record(cfg.data, fit, select, cfg.selection_fraction),
        loader_a=make_loader(split_a, cfg.batch, shuffle=True, workers=cfg.workers, distributed=distributed, seed=cfg.seed),
        loader_b=make_loader(split_b, cfg.batch, shuffle=True, workers=cfg.workers, distributed=distributed, seed=cfg.seed + 1),
        val_loader=make_loader(select, cfg.batch, shuffle=False, workers=cfg.workers, distributed=distributed),
        device=device, main=dist.is_main(),
    )


def _new_state(run: _Run) -> _State:
    """A fresh supernet (single-path if asked and supported) and its two optimizers."""
    cfg = run.cfg
    supernet = run.space.supernet(run.info.num_classes, relaxation=cfg.relaxation).to(run.device)
    if cfg.single_path:
        if not supernet.supports_single_path:
            raise RtsegError(f"single-path sampling is not available for the {cfg.space} space; search it without --single-path")
        supernet.sample_paths = True
    return _State(supernet, _weight_optimizer(cfg, supernet),
                  torch.optim.Adam(supernet.arch_parameters(), lr=cfg.arch_lr, betas=(0.5, 0.999), weight_decay=cfg.arch_weight_decay))


def _weight_optimizer(cfg: SearchConfig, supernet: Supernet) -> torch.optim.Optimizer:
    return torch.optim.Adam(supernet.weight_parameters(), lr=cfg.w_lr, weight_decay=cfg.w_weight_decay)


def _resume(run: _Run, st: _State) -> None:
    """Refuse a changed config, then replay the removals, load weights, optimizers and logs from ``state.pt``."""
    cfg, out = run.cfg, run.out
    if (out / "config.json").exists():
        check_same_config(read_json(out / "config.json", "search config"), cfg.to_dict(), out, may_differ=RESUME_MAY_DIFFER,
                          flags=RESUME_FLAGS)
    state_path = out / "state.pt"
    if not state_path.exists():
        raise RtsegError(f"nothing to resume in {out}: no state.pt (start without --resume)")
    saved = load_state(state_path, "rtseg.search_state", "search state", "pass --overwrite to start over, or choose another --out",
                       schema_version=1)
    try:
        for name, idx in saved["removed"]:
            st.supernet.remove(name, idx)
        st.supernet.load_state_dict(saved["supernet"])
        st.w_opt = _weight_optimizer(cfg, st.supernet)
        st.w_opt.load_state_dict(saved["w_opt"])
        st.a_opt.load_state_dict(saved["a_opt"])
        st.start_epoch, st.arch_steps = int(saved["epoch"]) + 1, int(saved["arch_steps"])
        st.log = parse_json_text(saved["log"], "search log")
        st.trajectory = parse_json_text(saved["trajectory"], "search trajectory")
        st.removed = [tuple(r) for r in saved["removed"]]  # type: ignore[misc]
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise RtsegError(f"{state_path} does not fit this search ({type(exc).__name__}); pass --overwrite to start over, "
                         "or choose another --out") from None


def _train_epoch(run: _Run, st: _State, epoch: int, bar: TaskBar, on_step: Callable[[int], None] | None) -> dict[str, float]:
    """One epoch of bilevel steps: weights on split A, then (after the warm-up) the architecture on
    split B. Stops early once the arch is discrete or the time is up."""
    cfg, supernet = run.cfg, st.supernet
    supernet.train()
    run.loader_a.sampler.set_epoch(epoch)
    run.loader_b.sampler.set_epoch(epoch)
    supernet.on_epoch(epoch, cfg.epochs)
    sums = {"loss_w": 0.0, "ce_b": 0.0, "n": 0}
    for step, ((xa, ya), (xb, yb)) in enumerate(zip(run.loader_a, run.loader_b)):
        gstep = epoch * run.steps_per_epoch + step
        for g in st.w_opt.param_groups:
            g["lr"] = poly_lr(cfg.w_lr, gstep, run.total_steps)
        d = run.device
        loss_w = _weight_step(run, st, xa.to(d), ya.to(d))
        sums["loss_w"] += loss_w
        sums["n"] += 1
        if epoch >= cfg.warmup_epochs:
            sums["ce_b"] += _arch_step(run, st, xb.to(d), yb.to(d))
        bar.advance(info=f"loss {loss_w:.3f}")
        if on_step:
            on_step(gstep)
        if _is_discrete(supernet) or run.time_is_up():
            break
    return sums


def _weight_step(run: _Run, st: _State, x: torch.Tensor, y: torch.Tensor) -> float:
    """One step of the network weights on split A (cross-entropy only); returns the loss."""
    supernet = st.supernet
    st.w_opt.zero_grad(set_to_none=True)
    loss = _ce(supernet(x), y, run.info.ignore_index)
    loss.backward()
    for p in supernet.arch_parameters():
        p.grad = None
    _allreduce_grads(supernet.weight_parameters())
    st.w_opt.step()
    return float(loss.detach())


def _arch_loss(run: _Run, supernet: Supernet, ce: torch.Tensor, e_lat: torch.Tensor, e_flops: torch.Tensor | None) -> torch.Tensor:
    """The architecture loss of :mod:`rtseg.search.objective`: cross-entropy + latency band + FLOPs
    budget + the regularizer ``--reg`` names (per-level SSR or entropy, or the supernet's own)."""
    cfg = run.cfg
    loss = ce + cfg.latency_weight * budget_penalty(e_lat, cfg.latency_ms, *cfg.band)
    if e_flops is not None and run.flops_budget:
        loss = loss + cfg.flops_weight * flops_penalty(e_flops, run.flops_budget)
    if cfg.reg in ("ssr", "entropy"):
        loss = loss + level_regularizer(supernet, supernet.active_decisions(), cfg.reg, cfg.level_weights)
    elif cfg.reg in run.space.own_regs:
        for term in supernet.regularization().values():
            loss = loss + term
    return loss


def _arch_step(run: _Run, st: _State, x: torch.Tensor, y: torch.Tensor) -> float:
    """One Adam step of the architecture on split B, the trajectory snapshot, and every
    ``shrink_every`` arch steps a round of shrinking; returns the cross-entropy."""
    cfg, supernet = run.cfg, st.supernet
    st.a_opt.zero_grad(set_to_none=True)
    ce = _ce(supernet(x), y, run.info.ignore_index)
    e_lat, e_flops = run.expected_terms(supernet)
    loss = _arch_loss(run, supernet, ce, e_lat, e_flops)
    for p in supernet.weight_parameters():
        p.grad = None
    loss.backward()
    _allreduce_grads(supernet.arch_parameters())
    st.a_opt.step()
    st.arch_steps += 1
    if run.main:
        st.trajectory.append(_snapshot(supernet, st.arch_steps, float(e_lat.detach())))
    if cfg.shrink and st.arch_steps % cfg.shrink_every == 0:
        newly = shrink(supernet, h=cfg.shrink_h)
        if newly:
            st.removed += newly
            st.w_opt = _rebuild_optimizer(st.w_opt, supernet.weight_parameters())
    return float(ce.detach())


def _validate_epoch(run: _Run, st: _State, epoch: int, sums: dict[str, float], t_start: float) -> dict[str, Any]:
    """End of an epoch: replicas agree on their BN statistics, the supernet is scored on the
    validation set, and the epoch's row (expected costs, entropy, candidates left...) is logged."""
    cfg, supernet, info = run.cfg, st.supernet, run.info
    h, w = run.hw
    dist.sync_buffers(supernet)
    with torch.no_grad():
        e_lat, _ = run.expected_terms(supernet)
        e_flops = supernet.expected_cost(op_flops, h, w)
    active = supernet.active_decisions()
    ent = total_entropy(supernet, active)
    metrics = evaluate(supernet, run.val_loader, info.num_classes, info.ignore_index, run.device)
    row = {
        "epoch": epoch,
        "expected_latency_ms": float(e_lat),
        "expected_flops_g": float(e_flops) / 1e9,
        "total_entropy": ent,
        "candidates_left": _candidates_left(active),
        "supernet_val_miou": float(metrics["miou"]),
        "train_loss": sums["loss_w"] / max(1, sums["n"]),
        "arch_ce": sums["ce_b"] / max(1, sums["n"]) if epoch >= cfg.warmup_epochs else None,
        "removed_total": len(st.removed),
        "elapsed_s": time.monotonic() - t_start,
    }
    st.log.append(row)
    if ent == 0.0 and st.discrete_epoch is None:
        st.discrete_epoch = epoch + 1
    return row


def _checkpoint(run: _Run, st: _State, epoch: int) -> None:
    """The log so far and ``state.pt`` (weights only, atomically): what ``--resume`` restarts from."""
    out = run.out
    atomic_write_text(out / "search_log.jsonl", "".join(json.dumps(r) + "\n" for r in st.log))
    state = {
        "format": "rtseg.search_state", "schema_version": 1, "epoch": epoch, "arch_steps": st.arch_steps,
        "supernet": st.supernet.state_dict(), "w_opt": st.w_opt.state_dict(), "a_opt": st.a_opt.state_dict(),
        "removed": [list(r) for r in st.removed], "log": json.dumps(st.log), "trajectory": json.dumps(st.trajectory),
    }
    atomic_save(out / "state.pt", lambda p: torch.save(state, p))


def _finish(run: _Run, st: _State, t_start: float) -> SearchResult:
    """Decode, land in the budget band, summarize, and (rank 0) measure and write the run's files."""
    cfg, supernet, lut, out = run.cfg, st.supernet, run.lut, run.out
    h, w = run.hw
    flops_budget = run.flops_budget
    fit = fit_to_budget(supernet, h, w, cfg.latency_ms, flops_budget, lut.pricer(op_flops if flops_budget else None), low=cfg.band[0])
    summary: dict[str, Any] = {
        "epochs_run": len(st.log),
        "epochs_to_discrete": st.discrete_epoch,
        "discrete": _is_discrete(supernet),
        "arch_steps": st.arch_steps,
        "argmax_predicted_latency_ms": run.ctx.price(supernet.decode()).latency_ms,
        "budget_fit_changes": fit.changes,
        "reg": cfg.reg,
        "shrink": cfg.shrink,
        "images": run.images,
        "world_size": dist.world_size(),
    }
    ranks = dist.all_gather_object({"rank": dist.rank(), "supernet": weights_digest(supernet), "arch": fit.arch.to_json()})
    summary["ranks"] = [{"rank": r["rank"], "supernet": r["supernet"]} for r in ranks]
    summary["ranks_agree"] = len({r["supernet"] for r in ranks}) == 1 and len({r["arch"] for r in ranks}) == 1
    run.ctx.t_start = t_start
    meta = {"searched_with_details": {"reg": cfg.reg, "shrink": cfg.shrink, "images": run.images}}
    if run.main:
        atomic_write_json(out / "trajectory.json", st.trajectory)
    return finish(run.ctx, out, fit.arch, strategy="gradient", summary=summary, meta=meta, write=run.main,
                  plot=lambda: plot_search(st.log, st.trajectory, out, cfg.latency_ms))


def _resolved(cfg: SearchConfig, space: SearchSpace) -> SearchConfig:
    """The config with its defaults made explicit (what ``config.json`` records and ``--resume``
    compares): the space's options as the space normalizes them, the space's own regularizer, and the
    synthetic split sizes. A file dataset's ``None`` lengths stay ``None``: the whole split."""
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


def _is_discrete(supernet: Supernet) -> bool:
    return all(d.n_alive == 1 for d in supernet.active_decisions())


def _candidates_left(decisions) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in decisions:
        out[d.level] = out.get(d.level, 0) + d.n_alive
    return out


def _snapshot(supernet: Supernet, step: int, e_lat: float) -> dict[str, Any]:
    with torch.no_grad():
        probs = {d.name: [round(float(x), 5) for x in supernet.probs(d.name)] for d in supernet.decisions()}
    return {"step": step, "expected_latency_ms": e_lat, "probs": probs}


def load_search_summary(run: str | Path) -> dict[str, Any]:
    return read_json(Path(run) / "search.json", "search summary")


__all__ = ["GradientConfig", "SearchConfig", "SearchResult", "run_search", "load_search_summary"]
