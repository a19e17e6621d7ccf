"""One-shot search: a weight-sharing supernet trained on sampled paths, then evolution scored by its weights.

The differentiable search (:mod:`rtseg.search.loop`) learns the architecture from the gradient of the
loss with respect to path weights; on a short CPU search that gradient mostly says how the loss reacts
to scaling a path's output early in training. This search asks the supernet a more direct question
(Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020,
sec. 3.2-3.4):

1. **Supernet training.** Each step trains the weights of exactly one discrete path
   (:meth:`Supernet.forward_path`). With probability ``focus`` the path is drawn uniformly from the
   archs whose LUT latency lies in the search's band ``[band[0] T, T]``; otherwise a budget ``b`` is
   drawn uniformly between the cheapest and the dearest arch of the space and the path from
   ``[0.9 b, b]``. The second kind makes one trained supernet serve other budgets and other devices'
   LUTs, as the once-for-all network of Cai et al. ("Once-for-All: Train One Network and Specialize it
   for Efficient Deployment", ICLR 2020, sec. 3) serves every deployment scenario; the first keeps most
   of the training where this search looks. ``supernet`` (``rtseg search --supernet DIR``) reuses a
   supernet trained by an earlier search of the same space, size and classes and skips training.
2. **Evolution.** A population of in-band archs is scored by the mIoU of the supernet's weights on the
   select part of the training split (:mod:`rtseg.data.selection`; never the validation split), with
   batch statistics in the BatchNorms (the running statistics of a shared BN mix every path). The best
   archs are mutated and crossed over (:mod:`rtseg.search.evolution`), every child kept in the band and
   under the FLOPs budget, and the best score found wins.

Run folder: ``arch.json``, ``search.json`` (summary), ``evolution.json`` (every scored arch),
``evolution.png``, ``config.json``, ``supernet.pt`` + ``supernet.json`` (the trained supernet, weights
only, and what it was trained on: what ``--supernet`` reads), ``state.pt`` (supernet training, for
``resume``) and ``state.json`` (the evolution, for ``resume``).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.backends.device import device_kind
from rtseg.data.selection import selection_record, selection_split
from rtseg.errors import RtsegError
from rtseg.evaluate import evaluate
from rtseg.checkpoint import load_state
from rtseg.io import atomic_save, atomic_write_json, check_same_config, parse_json_text, read_json
from rtseg.reporting import Reporter, SilentReporter
from rtseg.search.common import SearchContext, SearchResult, finish, prepare
from rtseg.search.evolution import (BandSampler, EvolutionConfig, EvolutionState, evolve, plot_evolution, rng_from_json, rng_to_json,
                                    write_evolution)
from rtseg.spaces import get_space, space_slug
from rtseg.train.loader import cpu_threads, make_loader
from rtseg.train.step import poly_lr

#: Config fields a resumed one-shot search may change: limits and resources, not what is searched (more
#: evaluations continue the evolution; the supernet is not trained further).
RESUME_MAY_DIFFER = ("evaluations", "minutes", "workers", "device", "verify_latency", "force")
SUPERNET_FORMAT = "rtseg.supernet"


@dataclass
class OneShotConfig(EvolutionConfig):
    epochs: int = 12  # supernet training epochs over train_len scenes
    batch: int = 4
    train_len: int = 256  # images of the fit part the supernet trains on
    score_len: int = 64  # images of the select part that score an arch
    score_batch: int = 16
    w_lr: float = 2e-3
    w_weight_decay: float = 1e-4
    focus: float = 0.5  # share of training paths drawn in this search's band (the rest across all budgets)
    minutes: float | None = None  # wall-clock limit on supernet training (evolution runs after it)
    workers: int = 0
    supernet: str | None = None  # a trained supernet's folder to reuse instead of training one
    population: int = 16
    parents: int = 6
    evaluations: int = 96


class _PathModel(nn.Module):
    """One fixed path of a supernet as a plain module, scored with batch statistics in its BatchNorms."""

    def __init__(self, supernet: nn.Module, choices: dict[str, int]) -> None:
        super().__init__()
        self.supernet = supernet
        self.choices = choices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.supernet.train()  # batch statistics; momentum 0 (set by the caller) keeps the running ones
        return self.supernet.forward_path(x, self.choices)


def run_oneshot(cfg: OneShotConfig, out_dir: str | Path, resume: bool = False, reporter: Reporter | None = None) -> SearchResult:
    """Run (or ``resume``) a one-shot search into ``out_dir``; see the module docstring."""
    with cpu_threads(torch.device(device_kind(cfg.device)), cfg.workers):
        return _OneShot(cfg, Path(out_dir), resume, reporter or SilentReporter()).run()


def supernet_record(path: str | Path) -> dict[str, Any]:
    """What a trained supernet's folder says it is (``supernet.json``), refused in one line when absent."""
    folder = Path(path)
    if not (folder / "supernet.json").is_file() or not (folder / "supernet.pt").is_file():
        raise RtsegError(f"{folder} holds no trained supernet (supernet.json and supernet.pt); give the folder of a one-shot "
                         "or default search that finished its supernet training")
    rec = read_json(folder / "supernet.json", "supernet record")
    if not isinstance(rec, dict) or rec.get("format") != SUPERNET_FORMAT:
        raise RtsegError(f"{folder / 'supernet.json'} is not an rtseg supernet record")
    return rec


class _OneShot:
    def __init__(self, cfg: OneShotConfig, out: Path, resume: bool, reporter: Reporter) -> None:
        self.cfg, self.out, self.resume, self.reporter = cfg, out, resume, reporter

    # -- steps --------------------------------------------------------------------------------
    def run(self) -> SearchResult:
        self._setup()
        self._load_state()
        if self.cfg.supernet:
            self._reuse_supernet()
        else:
            self._train_supernet()
        self._evolve()
        return self._finish()

    def _setup(self) -> None:
        cfg = self.cfg
        if not 0 < cfg.band[0] < cfg.band[1]:
            raise RtsegError(f"the band must be two fractions 0 < low < high, got {cfg.band}")
        if not 0.0 <= cfg.focus <= 1.0:
            raise RtsegError(f"focus must lie in [0, 1], got {cfg.focus}")
        self.ctx: SearchContext = prepare(cfg, subject=f"the {cfg.space} search")
        if cfg.supernet:
            self.reused = self._check_reusable(supernet_record(cfg.supernet))
        h, w = self.ctx.hw
        fit, select = selection_split(cfg.data, (h, w), seed=cfg.seed, fraction=cfg.selection_fraction,
                                      fit_len=cfg.train_len, select_len=cfg.score_len)
        self.images = selection_record(cfg.data, fit, select, cfg.selection_fraction)
        self.device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.loader = make_loader(fit, cfg.batch, shuffle=True, workers=cfg.workers, seed=cfg.seed)
        # every scored arch sees the same few images: rendered or decoded once, kept in memory
        xs, ys = zip(*(select[i] for i in range(len(select))))
        scored = torch.utils.data.TensorDataset(torch.stack(xs), torch.stack(ys))
        self.score_loader = make_loader(scored, cfg.score_batch, shuffle=False, workers=0)
        self.supernet = self.ctx.space.supernet(self.ctx.info.num_classes).to(self.device)
        if not self.supernet.supports_path_forward:
            raise RtsegError(f"the one-shot search needs a supernet that runs one path; the {cfg.space} space has none: "
                             "use --strategy default or gradient")
        self.opt = torch.optim.Adam(self.supernet.weight_parameters(), lr=cfg.w_lr, weight_decay=cfg.w_weight_decay)
        self.rng = random.Random(cfg.seed)
        self.sampler = BandSampler(self.supernet, self.ctx, cfg.band[0] * cfg.latency_ms, cfg.band[1] * cfg.latency_ms, self.rng)
        self.span = self._budget_span()
        self.epoch, self.steps, self.train_log = 0, 0, []
        self.evolution = EvolutionState()
        self.elapsed_before = 0.0
        self.t_start = time.monotonic()

    def _budget_span(self) -> tuple[float, float]:
        """The budgets the supernet's across-budget paths are drawn from: from the 5th percentile of 512
        uniform draws' LUT latency (or the search's band, if lower) to the dearest draw (or T)."""
        draws = random.Random(self.cfg.seed + 17)
        ms = sorted(self.sampler.latency({n: draws.randrange(len(d.choices)) for n, d in self.sampler.decisions.items()})
                    for _ in range(512))
        return min(ms[len(ms) // 20], self.sampler.low), max(ms[-1], self.cfg.latency_ms)

    def _check_reusable(self, rec: dict[str, Any]) -> dict[str, Any]:
        cfg = self.cfg
        h, w = self.ctx.hw
        want = {"space": cfg.space, "space_options": self.ctx.space.options(), "input_hw": [h, w],
                "num_classes": self.ctx.info.num_classes}
        if rec.get("space") == cfg.space and isinstance(rec.get("space_options"), dict):  # an option given at its default reads as none
            rec = {**rec, "space_options": get_space(cfg.space, rec["space_options"]).options()}
        diff = [f"{k} {rec.get(k)!r} (this search: {v!r})" for k, v in want.items() if rec.get(k) != v]
        if diff:
            raise RtsegError(f"the supernet in {cfg.supernet} was trained for another search: {'; '.join(diff)}; train a new "
                             "one (leave out --supernet)")
        return rec

    def _load_state(self) -> None:
        out, cfg = self.out, self.cfg
        if self.resume and (out / "config.json").exists():
            check_same_config(read_json(out / "config.json", "one-shot search config"), cfg.to_dict(), out, may_differ=RESUME_MAY_DIFFER)
        state_path, evo_path = out / "state.pt", out / "state.json"
        if self.resume and not (state_path.exists() or evo_path.exists()):
            raise RtsegError(f"nothing to resume in {out}: no state.pt or state.json (start without --resume)")
        if self.resume and state_path.exists():
            st = _load_torch_state(state_path, "rtseg.oneshot_state")
            try:
                self.supernet.load_state_dict(st["supernet"])
                self.opt.load_state_dict(st["opt"])
                rest = parse_json_text(st["progress"], "one-shot progress")
                self.epoch, self.steps, self.train_log = int(rest["epoch"]), int(rest["steps"]), list(rest["train_log"])
                self.elapsed_before = float(rest["elapsed_s"])
                rng_from_json(self.rng, rest["rng"])
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
                raise RtsegError(f"{state_path} does not fit this search ({type(exc).__name__}); delete it to start over") from None
        if self.resume and evo_path.exists():
            saved = read_json(evo_path, "one-shot evolution state")
            self.evolution = EvolutionState.from_dict(saved["evolution"])
            self.elapsed_before = max(self.elapsed_before, float(saved["elapsed_s"]))
            rng_from_json(self.rng, saved["rng"])
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", cfg.to_dict())

    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t_start

    def _save_training(self) -> None:
        rest = {"epoch": self.epoch, "steps": self.steps, "train_log": self.train_log, "elapsed_s": self._elapsed(),
                "rng": rng_to_json(self.rng)}
        state = {"format": "rtseg.oneshot_state", "schema_version": 2, "supernet": self.supernet.state_dict(),
                 "opt": self.opt.state_dict(), "progress": json.dumps(rest)}
        atomic_save(self.out / "state.pt", lambda p: torch.save(state, p))

    def _save_evolution(self) -> None:
        atomic_write_json(self.out / "state.json", {"format": "rtseg.oneshot_evolution", "schema_version": 1,
                                                    "evolution": self.evolution.to_dict(), "elapsed_s": self._elapsed(),
                                                    "rng": rng_to_json(self.rng)})

    def _draw_path(self) -> dict[str, int]:
        """One training path: in the search's band with probability ``focus``, else at a budget ``b``
        drawn across the span, from ``[0.9 b, b]`` (the nearest of 64 uniform draws, walked in)."""
        if self.rng.random() < self.cfg.focus:
            return self.sampler.uniform()
        lo, hi = self.span
        b = self.rng.uniform(lo, hi)
        draws = [{n: self.rng.randrange(len(d.choices)) for n, d in self.sampler.decisions.items()} for _ in range(64)]
        near = min(draws, key=lambda c: abs(self.sampler.latency(c) - 0.95 * b))
        return self.sampler.toward(near, 0.9 * b, b, steps=20) or near

    def _train_supernet(self) -> None:
        cfg = self.cfg
        steps_per_epoch = len(self.loader)
        total = max(1, cfg.epochs * steps_per_epoch)
        deadline = None if cfg.minutes is None else cfg.minutes * 60
        done = self.epoch >= cfg.epochs or (deadline is not None and self.train_log and self.train_log[-1].get("stopped"))
        if not done:
            with self.reporter.task("one-shot supernet", total=total, completed=self.epoch * steps_per_epoch) as bar:
                while self.epoch < cfg.epochs:
                    stopped = self._train_epoch(bar, total, deadline)
                    self._save_training()
                    if stopped:
                        break
        self._write_supernet()

    def _train_epoch(self, bar: Any, total: int, deadline: float | None) -> bool:
        """One epoch of single-path steps; True when the time limit stopped it."""
        cfg, info = self.cfg, self.ctx.info
        self.supernet.train()
        loss_sum, n, stopped = 0.0, 0, False
        for x, y in self.loader:
            for g in self.opt.param_groups:
                g["lr"] = poly_lr(cfg.w_lr, self.steps, total)
            choices = self._draw_path()
            x, y = x.to(self.device), y.to(self.device)
            self.opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.supernet.forward_path(x, choices), y, ignore_index=info.ignore_index)
            loss.backward()
            self.opt.step()
            self.steps += 1
            loss_sum, n = loss_sum + float(loss.detach()), n + 1
            bar.advance(info=f"loss {float(loss.detach()):.3f}")
            if deadline is not None and self._elapsed() > deadline:
                stopped = True
                break
        self.train_log.append({"epoch": self.epoch, "train_loss": loss_sum / max(1, n), "steps": self.steps,
                               "elapsed_s": self._elapsed(), "stopped": stopped})
        self.epoch += 1
        return stopped

    def _write_supernet(self) -> None:
        """``supernet.pt`` (weights only) and ``supernet.json``: what ``--supernet`` reuses."""
        h, w = self.ctx.hw
        rec = {"format": SUPERNET_FORMAT, "schema_version": 1, "space": self.cfg.space, "space_options": self.ctx.space.options(),
               "space_slug": space_slug(self.cfg.space, self.ctx.space.options()), "input_hw": [h, w],
               "num_classes": self.ctx.info.num_classes, "data": self.cfg.data, "epochs": self.epoch, "steps": self.steps,
               "focus": self.cfg.focus, "focus_band_ms": [self.sampler.low, self.sampler.high], "span_ms": list(self.span),
               "drawn_on": self.ctx.runtime(), "training_s": self._elapsed()}
        state = {"format": SUPERNET_FORMAT, "schema_version": 1, "supernet": self.supernet.state_dict()}
        atomic_save(self.out / "supernet.pt", lambda p: torch.save(state, p))
        atomic_write_json(self.out / "supernet.json", rec)

    def _reuse_supernet(self) -> None:
        st = _load_torch_state(Path(self.cfg.supernet) / "supernet.pt", SUPERNET_FORMAT)  # type: ignore[arg-type]
        try:
            self.supernet.load_state_dict(st["supernet"])
        except (RuntimeError, KeyError) as exc:
            raise RtsegError(f"the supernet in {self.cfg.supernet} does not fit the {self.cfg.space} space: {str(exc)[:200]}") from None

    def _score(self, choices: dict[str, int]) -> float:
        bns = [m for m in self.supernet.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.momentum = 0.0  # batch statistics, running statistics left as they are
        try:
            metrics = evaluate(_PathModel(self.supernet, choices), self.score_loader, self.ctx.info.num_classes,
                               self.ctx.info.ignore_index, self.device)
        finally:
            for m, mom in zip(bns, momenta):
                m.momentum = mom
        return float(metrics["miou"])

    def _evolve(self) -> None:
        cfg = self.cfg
        self.evolve_start = self._elapsed()
        with self.reporter.task("one-shot evolution", total=cfg.evaluations, completed=len(self.evolution.scored)) as bar:
            evolve(self.evolution, self.sampler, lambda batch: [self._score(c) for c in batch], population=cfg.population,
                   parents=cfg.parents, evaluations=cfg.evaluations, mutate_prob=cfg.mutate_prob, save=self._save_evolution, bar=bar)
        self._save_evolution()

    def _finish(self) -> SearchResult:
        cfg = self.cfg
        best = self.evolution.best()
        arch = self.sampler.arch(best["choices"])
        summary: dict[str, Any] = {
            "oneshot_score": best["score"], "origin": best["origin"], "generation_found": best["generation"],
            "evaluations": len(self.evolution.scored), "generations": self.evolution.generation, "epochs_run": self.epoch,
            "supernet_steps": self.steps, "train_log": self.train_log, "band": list(cfg.band), "images": self.images,
            "supernet": {"reused": cfg.supernet, "folder": str(cfg.supernet or self.out), "span_ms": list(self.span),
                         "focus": cfg.focus},
            "evolution_s": self._elapsed() - self.evolve_start,
        }
        write_evolution(self.out / "evolution.json", self.evolution, self.sampler)
        self.ctx.t_start = time.monotonic() - self._elapsed()
        return finish(self.ctx, self.out, arch, strategy="oneshot", summary=summary, meta={"oneshot_score": best["score"]},
                      plot=lambda: plot_evolution(list(self.evolution.scored.values()), self.out / "evolution.png", cfg.latency_ms,
                                                  cfg.band, ylabel="one-shot mIoU on held-out training images (%)"))


def _load_torch_state(path: Path, fmt: str) -> dict[str, Any]:
    """A weights-only torch state of ``fmt``, refused in one line when unreadable or of another kind."""
    return load_state(path, fmt, f"{fmt} file", "delete it to start over, or choose another --out")


__all__ = ["OneShotConfig", "run_oneshot", "supernet_record"]
