"""What every search strategy shares: its settings, its setup and its finish.

A strategy (:mod:`rtseg.search.strategies` lists them) is one module with a config dataclass that
extends :class:`SearchSettings` and a run function ``run(cfg, out, resume, reporter) -> SearchResult``.
Everything before and after the part that makes it a strategy is written here once:

* :func:`prepare` checks the inputs before any work (the budget, the device, the space with its size
  options, the LUT against the space, input size and class count, the budget against the cheapest arch
  the LUT prices, the FLOPs budget against the arch of fewest FLOPs) and returns a
  :class:`SearchContext` that prices archs (LUT latency and FLOPs) and knows what fits;
* :func:`measure_archs` measures archs end to end on the LUT's own runtime (interleaved rounds), when
  this machine is the LUT's device;
* :func:`finish` writes the arch with its provenance (strategy, budgets, the runtime it was priced
  on), ``search.json`` with where the pick lies against each budget, and the strategy's plots.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from rtseg.arch import Arch
from rtseg.backends.device import device_kind
from rtseg.data import DatasetInfo, dataset_info
from rtseg.data.selection import SELECTION_FRACTION
from rtseg.errors import RtsegError
from rtseg.flops import op_flops, sum_op_flops
from rtseg.io import atomic_write_json, config_to_json
from rtseg.latency.lut import LUT, ArchCost, Pricer, load_lut
from rtseg.search.budget import check_feasible
from rtseg.spaces import SearchSpace, get_space


@dataclass
class SearchSettings:
    """The fields every strategy's config has: what is searched, under which budgets, priced by which
    LUT, chosen on which data; strategies add how they search."""

    space: str = "ssr"
    space_options: dict[str, Any] = field(default_factory=dict)  # --space-opt: the space's size (cas, dcnas)
    lut: str = ""
    latency_ms: float = 0.0
    flops_g: float | None = None  # FLOPs budget, G multiply-adds (fvcore's count)
    data: str = "synthetic"
    input_hw: tuple[int, int] = (128, 256)
    # the fraction of a file dataset's training images held out to choose archs on (rtseg.data.selection)
    selection_fraction: float = SELECTION_FRACTION
    seed: int = 0
    device: str = "cpu"
    force: bool = False  # use a LUT whose provenance does not match this run
    verify_latency: bool = True  # measure the result on the LUT's runtime when this machine is its device

    def to_dict(self) -> dict[str, Any]:
        return config_to_json(self)

    @property
    def flops_budget(self) -> float | None:
        return float(self.flops_g) * 1e9 if self.flops_g else None


@dataclass
class SearchResult:
    arch: Arch
    out_dir: Path
    summary: dict[str, Any]


@dataclass
class SearchContext:
    """What a search knows once its inputs are checked: the space (with its options), the LUT, the
    dataset's classes, and the budgets; it prices archs and says which fit."""

    cfg: SearchSettings
    space: SearchSpace
    lut: LUT
    info: DatasetInfo
    cheapest: ArchCost
    notes: list[str] = field(default_factory=list)  # differences from the LUT's run that --force let through
    t_start: float = field(default_factory=time.monotonic)

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.cfg.input_hw[0]), int(self.cfg.input_hw[1])

    @property
    def flops_budget(self) -> float | None:
        return self.cfg.flops_budget

    @cached_property
    def pricer(self) -> Pricer:
        """The LUT's prediction model with a FLOPs counter (:meth:`rtseg.latency.lut.LUT.pricer`)."""
        return self.lut.pricer(op_flops)

    def price(self, arch: Arch) -> ArchCost:
        """LUT latency (ms, with the LUT's per-network constant) and FLOPs of ``arch`` at the search's size."""
        h, w = self.hw
        return self.pricer.price(arch, h, w)

    def within_flops(self, cost: ArchCost) -> bool:
        return self.flops_budget is None or cost.flops <= self.flops_budget

    def runtime(self) -> dict[str, Any]:
        return lut_runtime(self.lut)


def prepare(cfg: SearchSettings, subject: str = "the search") -> SearchContext:
    """Every refusal that needs no data or network, before any work (see the module docstring)."""
    h, w = int(cfg.input_hw[0]), int(cfg.input_hw[1])
    if not cfg.latency_ms or cfg.latency_ms <= 0:
        raise RtsegError("--latency-ms must be a positive budget in milliseconds")
    if cfg.flops_g is not None and not cfg.flops_g > 0:
        raise RtsegError(f"--flops-g must be a positive budget in G multiply-adds, got {cfg.flops_g}")
    if device_kind(cfg.device) == "cuda" and not torch.cuda.is_available():
        raise RtsegError(f"--device {cfg.device} asked for, but this torch sees no CUDA GPU; use --device cpu")
    space = get_space(cfg.space, cfg.space_options)
    space.check_input(h, w)
    lut = load_lut(cfg.lut)
    notes = lut.check_device(force=cfg.force)  # a LUT of another device or backend only with --force
    info = dataset_info(cfg.data)
    lut.check_fits(space=cfg.space, space_options=space.options(), input_hw=(h, w), num_classes=info.num_classes,
                   force=cfg.force, subject=subject)
    cheapest = check_feasible(space, h, w, info.num_classes, cfg.latency_ms, lut.pricer())
    if cfg.flops_budget is not None:
        fewest = space.cheapest_arch(op_flops, h, w, info.num_classes)
        least = sum_op_flops(space.signatures(fewest, h, w))
        if least > cfg.flops_budget:
            raise RtsegError(f"FLOPs budget {cfg.flops_g:g} G is infeasible: the {cfg.space} arch of fewest FLOPs at {h}x{w} "
                             f"has {least / 1e9:.4f} G multiply-adds; raise --flops-g to at least that")
    return SearchContext(cfg, space, lut, info, cheapest, notes=notes)


def lut_runtime(lut: LUT) -> dict[str, Any]:
    """The runtime the LUT was measured on, as the arch and the summary record it: the search's latency
    promise holds there, and a net later run elsewhere says so (:func:`rtseg.arch.deploy_note`)."""
    return {"lut_backend": lut.backend, "lut_precision": lut.precision, "lut_device_kind": lut.device_kind,
            "lut_device_name": lut.device.get("name"), "lut_threads": lut.threads}


def measurable_here(lut: LUT) -> str | None:
    """None when this machine is the LUT's device (so archs can be measured on its runtime), else why not."""
    try:
        lut.check_device(force=False)
    except RtsegError as exc:
        return str(exc)
    return None


def measure_archs(lut: LUT, archs: Sequence[Arch], rounds: int = 6, repeats: int = 60, seed: int = 0) -> list[float] | None:
    """Median end-to-end latency (ms) of each arch on the LUT's backend, device, threads and clock, in
    interleaved shuffled rounds (``lut validate``'s protocol), or None when this is not the LUT's device."""
    if measurable_here(lut) is not None or not archs:
        return None
    from rtseg.latency.validate import measure_archs_like_lut

    return measure_archs_like_lut(lut, list(archs), warmup=5, repeats=repeats, rounds=rounds, seed=seed)


def measure_on_lut_runtime(lut: LUT, arch: Arch, target_ms: float) -> dict[str, Any]:
    """Measure one net end to end on the LUT's runtime, when this machine is the LUT's device."""
    from rtseg.latency.validate import reference_speed_ratio

    why_not = measurable_here(lut)
    if why_not is not None:
        return {"measured_latency_ms": None, "measured_note": f"not measured: {why_not}"}
    ms = measure_archs(lut, [arch], rounds=3, repeats=50)[0]  # type: ignore[index]
    return {"measured_latency_ms": ms, "measured_over_target": ms / target_ms, "measured_backend": lut.backend,
            "measured_device": lut_runtime(lut)["lut_device_name"], "reference_speed_ratio": reference_speed_ratio(lut)}


def finish(ctx: SearchContext, out: Path, arch: Arch, *, strategy: str, summary: dict[str, Any],
           meta: dict[str, Any] | None = None, measured: dict[str, Any] | None = None,
           plot: Callable[[], None] | None = None, write: bool = True) -> SearchResult:
    """Name the arch, record how it was found, measure it (unless ``measured`` already holds its
    figures, or the config says not to), and write ``arch.json``, ``search.json`` and the plots.
    ``write=False`` (a non-main rank) only builds the result."""
    cfg = ctx.cfg
    h, w = ctx.hw
    cost = ctx.price(arch)
    arch.name = f"{strategy.split()[0].replace('+', '-')}-{cfg.space}-{cfg.latency_ms:g}ms"
    searched_with = {"strategy": strategy, "lut": str(cfg.lut), "latency_ms": cfg.latency_ms, "flops_g": cfg.flops_g,
                     "input_hw": [h, w], "data": cfg.data, "space_options": ctx.space.options(), **ctx.runtime()}
    arch.meta = {"searched_with": searched_with, "predicted_latency_ms": cost.latency_ms, "flops": int(cost.flops), **(meta or {})}
    budget = ctx.flops_budget
    full: dict[str, Any] = {
        "arch": str(out / "arch.json"), "strategy": strategy, "space": cfg.space, "space_options": ctx.space.options(),
        "target_latency_ms": cfg.latency_ms, "runtime": ctx.runtime(),
        "predicted_latency_ms": cost.latency_ms, "predicted_over_target": cost.latency_ms / cfg.latency_ms,
        "flops": int(cost.flops), "flops_budget": int(budget) if budget else None,
        "flops_over_budget": cost.flops / budget if budget else None,
        "cheapest_latency_ms": ctx.cheapest.latency_ms, "data": cfg.data, "lut_notes": ctx.notes,
        "wall_time_s": time.monotonic() - ctx.t_start, **summary,
    }
    if write and cfg.verify_latency:
        full.update(measured if measured is not None else measure_on_lut_runtime(ctx.lut, arch, cfg.latency_ms))
    if write:
        out.mkdir(parents=True, exist_ok=True)
        if plot is not None:
            try:
                plot()
            except Exception as exc:  # plotting must never lose a finished search
                full["plot_error"] = str(exc)
        arch.save(out / "arch.json")
        atomic_write_json(out / "search.json", full)
    return SearchResult(arch, out, full)


__all__ = ["SearchContext", "SearchResult", "SearchSettings", "finish", "lut_runtime", "measurable_here", "measure_archs",
           "measure_on_lut_runtime", "prepare"]
