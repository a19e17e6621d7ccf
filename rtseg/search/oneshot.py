"""One-shot search: train a weight-sharing supernet on sampled in-budget paths, then choose by evolution.

The differentiable search (:mod:`rtseg.search.loop`) learns the architecture from the gradient of the
loss with respect to path weights. On a short CPU search that gradient mostly says how the loss
reacts to scaling a path's output early in training, and it decoded nets that sat at the budget band's
low edge and ran most layers at half resolution. This search asks the supernet a more direct question
(Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020,
sec. 3.2-3.4):

1. **Supernet training.** Each step draws one architecture uniformly from those whose latency, as
   the LUT predicts it on the deploy runtime, lies in the band ``[band[0] T, T]``, and trains the
   weights of exactly that path (:meth:`SSRSupernet.forward_path`). Every candidate the evolution may
   pick is trained as the discrete subnet it is; nothing outside the budget takes training time.
2. **Evolution.** A population of in-band archs is scored by the mIoU of the supernet's weights on
   held-out *training* scenes (not the validation split a final comparison reports), with batch
   statistics in the BatchNorms (the running statistics of a shared BN mix every path). The best
   archs are mutated (each decision redrawn with a small probability) and crossed over, children
   outside the band are redrawn, and the best score found wins. Every evaluated arch is kept.

Latency enters twice, both times from the LUT: the band constrains every sampled, mutated and crossed
arch, and the result records its predicted and (on the LUT's machine) measured latency.

Everything lives in the run folder: ``arch.json``, ``search.json`` (summary), ``evolution.json``
(every scored arch), ``evolution.png``, ``config.json`` and ``state.pt`` (weights-only; a re-run with
``resume=True`` continues from the last finished epoch or generation).
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

from rtseg.data import build_dataset
from rtseg.errors import RtsegError
from rtseg.evaluate import evaluate
from rtseg.flops import op_flops
from rtseg.io import atomic_save, atomic_write_json, check_same_config, read_json
from rtseg.latency.lut import load_lut
from rtseg.reporting import Reporter, SilentReporter
from rtseg.search.budget import arch_cost
from rtseg.search.evolution import (BandSampler, EvolutionConfig, EvolutionState, evolve, plot_evolution, rng_from_json, rng_to_json,
                                    write_evolution)
from rtseg.search.loop import SearchResult, lut_runtime, measure_on_lut_runtime
from rtseg.spaces import get_space
from rtseg.train import cpu_threads, make_loader, poly_lr

#: Config fields a resumed one-shot search may change: limits and resources, not what is searched (more
#: evaluations continue the evolution; the supernet is not trained further).
RESUME_MAY_DIFFER = ("evaluations", "minutes", "workers", "device", "verify_latency")


@dataclass
class OneShotConfig(EvolutionConfig):
    epochs: int = 12  # supernet training epochs over train_len scenes
    batch: int = 4
    train_len: int = 256
    score_len: int = 64  # held-out training scenes that score an arch (after the first train_len)
    score_batch: int = 16
    w_lr: float = 2e-3
    w_weight_decay: float = 1e-4
    minutes: float | None = None  # wall-clock limit on supernet training (evolution runs after it)
    workers: int = 0


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
    with cpu_threads(torch.device("cuda" if str(cfg.device).startswith("cuda") else "cpu"), cfg.workers):
        return _OneShot(cfg, Path(out_dir), resume, reporter or SilentReporter()).run()


class _OneShot:
    def __init__(self, cfg: OneShotConfig, out: Path, resume: bool, reporter: Reporter) -> None:
        self.cfg, self.out, self.resume, self.reporter = cfg, out, resume, reporter

    # -- steps --------------------------------------------------------------------------------
    def run(self) -> SearchResult:
        self._setup()
        self._load_state()
        self._train_supernet()
        self._evolve()
        return self._finish()

    def _setup(self) -> None:
        cfg = self.cfg
        if cfg.latency_ms <= 0:
            raise RtsegError("--latency-ms must be a positive budget in milliseconds")
        if not 0 < cfg.band[0] < cfg.band[1]:
            raise RtsegError(f"the band must be two fractions 0 < low < high, got {cfg.band}")
        h, w = cfg.input_hw
        self.h, self.w = h, w
        space = get_space(cfg.space)
        space.check_input(h, w)
        self.lut = load_lut(cfg.lut)
        train_set = build_dataset(cfg.data, "train", (h, w), augment=True, seed=cfg.seed, length=cfg.train_len)
        self.info = train_set.info
        self.lut.check_fits(space=cfg.space, space_options=space.options(), input_hw=(h, w), num_classes=self.info.num_classes,
                            subject=f"the {cfg.space} search")
        score_all = build_dataset(cfg.data, "train", (h, w), augment=False, seed=cfg.seed, length=cfg.train_len + cfg.score_len)
        if len(score_all) < cfg.train_len + cfg.score_len:
            raise RtsegError(f"{cfg.data} has {len(score_all)} training images, fewer than --train-len + --score-len")
        score_set = torch.utils.data.Subset(score_all, list(range(cfg.train_len, cfg.train_len + cfg.score_len)))
        self.device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.loader = make_loader(train_set, cfg.batch, shuffle=True, workers=cfg.workers, seed=cfg.seed)
        self.score_loader = make_loader(score_set, cfg.score_batch, shuffle=False, workers=cfg.workers)
        self.supernet = space.supernet(self.info.num_classes).to(self.device)
        if not self.supernet.supports_path_forward:
            raise RtsegError(f"the one-shot search needs a supernet that runs one path; the {cfg.space} space has none yet")
        self.opt = torch.optim.Adam(self.supernet.weight_parameters(), lr=cfg.w_lr, weight_decay=cfg.w_weight_decay)
        self.rng = random.Random(cfg.seed)
        self.sampler = BandSampler(self.supernet, self.lut, h, w, cfg.band[0] * cfg.latency_ms, cfg.band[1] * cfg.latency_ms, self.rng)
        self.epoch, self.steps, self.train_log = 0, 0, []
        self.evolution = EvolutionState()
        self.elapsed_before = 0.0
        self.t_start = time.monotonic()

    def _load_state(self) -> None:
        out, cfg = self.out, self.cfg
        if self.resume and (out / "config.json").exists():
            check_same_config(read_json(out / "config.json", "one-shot search config"), cfg.to_dict(), out, may_differ=RESUME_MAY_DIFFER)
        state_path = out / "state.pt"
        if self.resume and state_path.exists():
            st = torch.load(state_path, map_location="cpu", weights_only=True)
            self.supernet.load_state_dict(st["supernet"])
            self.opt.load_state_dict(st["opt"])
            rest = json.loads(st["progress"])
            self.epoch, self.steps, self.train_log = rest["epoch"], rest["steps"], rest["train_log"]
            self.evolution = EvolutionState.from_dict(rest["evolution"])
            self.elapsed_before = rest["elapsed_s"]
            rng_from_json(self.rng, rest["rng"])
        elif self.resume:
            raise RtsegError(f"nothing to resume in {out}: no state.pt (start without --resume)")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", cfg.to_dict())

    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t_start

    def _save(self) -> None:
        rest = {"epoch": self.epoch, "steps": self.steps, "train_log": self.train_log,
                "evolution": self.evolution.to_dict(), "elapsed_s": self._elapsed(),
                "rng": rng_to_json(self.rng)}
        state = {"format": "rtseg.oneshot_state", "schema_version": 1, "supernet": self.supernet.state_dict(),
                 "opt": self.opt.state_dict(), "progress": json.dumps(rest)}
        atomic_save(self.out / "state.pt", lambda p: torch.save(state, p))

    def _train_supernet(self) -> None:
        cfg = self.cfg
        steps_per_epoch = len(self.loader)
        total = max(1, cfg.epochs * steps_per_epoch)
        deadline = None if cfg.minutes is None else cfg.minutes * 60
        if self.epoch >= cfg.epochs or (deadline is not None and self.train_log and self.train_log[-1].get("stopped")):
            return
        with self.reporter.task("one-shot supernet", total=total, completed=self.epoch * steps_per_epoch) as bar:
            while self.epoch < cfg.epochs:
                self.supernet.train()
                loss_sum, n, stopped = 0.0, 0, False
                for x, y in self.loader:
                    for g in self.opt.param_groups:
                        g["lr"] = poly_lr(cfg.w_lr, self.steps, total)
                    choices = self.sampler.uniform()
                    x, y = x.to(self.device), y.to(self.device)
                    self.opt.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(self.supernet.forward_path(x, choices), y, ignore_index=self.info.ignore_index)
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
                self._save()
                if stopped:
                    break

    def _score(self, choices: dict[str, int]) -> float:
        bns = [m for m in self.supernet.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.momentum = 0.0  # batch statistics, running statistics left as they are
        try:
            metrics = evaluate(_PathModel(self.supernet, choices), self.score_loader, self.info.num_classes,
                               self.info.ignore_index, self.device)
        finally:
            for m, mom in zip(bns, momenta):
                m.momentum = mom
        return float(metrics["miou"])

    def _evolve(self) -> None:
        cfg = self.cfg
        with self.reporter.task("evolution", total=cfg.evaluations, completed=len(self.evolution.scored)) as bar:
            evolve(self.evolution, self.sampler, lambda batch: [self._score(c) for c in batch], population=cfg.population,
                   parents=cfg.parents, evaluations=cfg.evaluations, mutate_prob=cfg.mutate_prob, save=self._save, bar=bar)

    def _finish(self) -> SearchResult:
        cfg, h, w = self.cfg, self.h, self.w
        best = self.evolution.best()
        arch = self.sampler.arch(best["choices"])
        arch.name = f"oneshot-{cfg.space}-{cfg.latency_ms:g}ms"
        cost = arch_cost(arch, h, w, self.lut.cost, float(self.lut.constant_ms), op_flops)
        arch.meta = {
            "searched_with": {"lut": str(cfg.lut), "latency_ms": cfg.latency_ms, "strategy": "one-shot evolution",
                              "band": list(cfg.band), "input_hw": [h, w], "data": cfg.data, **lut_runtime(self.lut)},
            "predicted_latency_ms": cost.latency_ms,
            "flops": int(cost.flops),
            "oneshot_score": best["score"],
        }
        summary: dict[str, Any] = {
            "arch": str(self.out / "arch.json"), "strategy": "one-shot evolution", "target_latency_ms": cfg.latency_ms,
            "runtime": lut_runtime(self.lut), "predicted_latency_ms": cost.latency_ms,
            "predicted_over_target": cost.latency_ms / cfg.latency_ms, "flops": int(cost.flops),
            "oneshot_score": best["score"], "origin": best["origin"], "generation_found": best["generation"],
            "evaluations": len(self.evolution.scored), "generations": self.evolution.generation, "epochs_run": self.epoch,
            "supernet_steps": self.steps, "train_log": self.train_log, "band": list(cfg.band), "data": cfg.data,
            "wall_time_s": self._elapsed(),
        }
        if cfg.verify_latency:
            summary.update(measure_on_lut_runtime(self.lut, arch, cfg))
        arch.save(self.out / "arch.json")
        write_evolution(self.out / "evolution.json", self.evolution, self.sampler)
        atomic_write_json(self.out / "search.json", summary)
        try:
            plot_evolution(list(self.evolution.scored.values()), self.out / "evolution.png", cfg.latency_ms, cfg.band,
                           ylabel="one-shot mIoU on held-out training scenes (%)")
        except Exception as exc:  # plotting must never lose a finished search
            summary["plot_error"] = str(exc)
        return SearchResult(arch, self.out, summary)


__all__ = ["OneShotConfig", "run_oneshot"]
