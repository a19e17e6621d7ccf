"""Proxy search: evolution inside the latency band, each arch scored by a short training run of its own.

Weight-sharing estimators (the differentiable search's path weights, a one-shot supernet's accuracy)
are cheap but can rank archs wrongly when the supernet has seen little training; ``search/README.md``
has this project's measurement of that. This search pays for a direct estimate instead: every arch
the evolution (:mod:`rtseg.search.evolution`) proposes is trained from scratch with a short recipe
(``epochs`` x ``train_len`` images) and scored by its final mIoU, the low-fidelity estimate of
regularized evolution (Real et al., "Regularized Evolution for Image Classifier Architecture Search",
AAAI 2019, sec. 3 and 4). Proxy runs train on the fit part of the training split and are scored on
its select part (:mod:`rtseg.data.selection`); on ``synthetic`` they use another world
(``proxy_data_seed``) besides, so the choice never sees the images a final comparison reports.

Runs go ``jobs`` at a time, one CPU thread each. Under ``torchrun`` each process trains its share of
every generation's archs on its own device (one GPU per rank) and the scores are gathered through
``torch.distributed``, so every rank evolves the same population and gets the same pick.

Seed archs (``seed_archs``: names or files, e.g. the space's hand-designed net scaled to the budget)
start the population beside uniform in-band draws; every arch keeps to the band ``[band[0] T, T]`` of
LUT-predicted latency and under the FLOPs budget. The finalists are measured on the LUT's runtime and
the best one that fits T as measured is picked (:func:`rtseg.search.evolution.choose_measured`).

Run folder: ``arch.json``, ``search.json``, ``evolution.json``, ``evolution.png``, ``config.json``,
``state.json`` and one folder per proxy run under ``proxy/`` (each resumable); a re-run resumes.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

from rtseg import distributed as dist
from rtseg.arch import Arch
from rtseg.backends.device import device_kind
from rtseg.errors import RtsegError
from rtseg.io import atomic_write_json, check_same_config, read_json
from rtseg.reporting import Reporter, SilentReporter
from rtseg.search.common import SearchContext, SearchResult, finish, prepare
from rtseg.search.evolution import (BandSampler, EvolutionConfig, EvolutionState, choose_measured, evolve, key_of, plot_evolution,
                                    ranked_for_pick, rng_from_json, rng_to_json, write_evolution)
from rtseg.spaces import load_arch
from rtseg.train.workers import final_miou, train_one_thread

#: Config fields a resumed proxy search may change: limits and resources, not what is searched.
RESUME_MAY_DIFFER = ("evaluations", "jobs", "device", "verify_latency", "force", "final_seeds")


@dataclass
class ProxyConfig(EvolutionConfig):
    epochs: int = 2  # proxy recipe: epochs x train_len images, batch
    train_len: int = 240
    val_len: int = 48  # images of the select part each proxy run is scored on
    batch: int = 8
    proxy_data_seed: int = 1  # the synthetic world proxies train and are scored on
    train_seed: int = 0
    population: int = 6
    parents: int = 2
    evaluations: int = 14
    mutate_prob: float = 0.05
    final_round: int = 3  # best-scored archs trained again, longer, before the pick (0: none); the reference joins them
    final_factor: int = 3  # the final round's runs are this many times longer than a proxy run
    final_seeds: int = 3  # the final round trains each arch from this many seeds and ranks them by the mean
    finalists: int = 4  # best archs measured on the LUT's runtime before the pick
    fit_low: float = 0.95  # the pick is moved to measure within [fit_low T, T] where small changes can
    seed_archs: list[str] = field(default_factory=list)
    jobs: int = 1


class ProxyScorer:
    """Scores genomes by short training runs: ``jobs`` at a time in this process, or (under torchrun)
    each rank its share, gathered so that every rank returns every score. Records which rank trained
    each arch in ``trained_by``."""

    def __init__(self, cfg: ProxyConfig, sampler: BandSampler, runs_dir: Path) -> None:
        self.cfg, self.sampler, self.runs_dir = cfg, sampler, runs_dir
        self.trained_by: dict[str, int] = {}

    def job(self, choices: dict[str, int]) -> dict[str, Any]:
        cfg = self.cfg
        arch = self.sampler.arch(choices)
        run = self.runs_dir / hashlib.sha1(key_of(arch).encode()).hexdigest()[:12]
        device = cfg.device
        if device_kind(device) == "cuda" and dist.world_size() > 1:
            device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        h, w = self.sampler.ctx.hw
        return {"run": str(run), "arch": arch.to_dict(), "epochs": cfg.epochs, "batch": cfg.batch, "train_len": cfg.train_len,
                "val_len": cfg.val_len, "seed": cfg.train_seed, "data_seed": cfg.proxy_data_seed, "device": device,
                "data": cfg.data, "input_hw": [h, w], "holdout": cfg.selection_fraction}

    def __call__(self, batch: Sequence[dict[str, int]]) -> list[float]:
        jobs = [self.job(c) for c in batch]
        world, me = dist.world_size(), dist.rank()
        mine = [i for i in range(len(jobs)) if i % world == me]
        scores = self._train([jobs[i] for i in mine])
        gathered = dist.all_gather_object({"rank": me, "scores": dict(zip(mine, scores))})
        out: dict[int, float] = {}
        for g in gathered:
            for i, s in g["scores"].items():
                out[int(i)] = s
                self.trained_by[key_of(Arch.from_dict(jobs[int(i)]["arch"]))] = g["rank"]
        return [out[i] for i in range(len(jobs))]

    def _train(self, jobs: list[dict[str, Any]]) -> list[float]:
        """Train ``jobs`` here, or in worker processes: ``jobs`` at a time, and always under torchrun,
        where each run is a single process of its own (started fresh, outside the rank's group)."""
        if not jobs:
            return []
        if dist.world_size() > 1:
            with ProcessPoolExecutor(max_workers=max(1, min(self.cfg.jobs, len(jobs))), mp_context=mp.get_context("spawn")) as pool:
                return [final_miou(s) for s in pool.map(train_one_thread, [{**j, "isolated": True} for j in jobs])]
        if self.cfg.jobs <= 1 or len(jobs) <= 1:
            return [final_miou(train_one_thread(j)) for j in jobs]
        with ProcessPoolExecutor(max_workers=min(self.cfg.jobs, len(jobs))) as pool:
            return [final_miou(s) for s in pool.map(train_one_thread, jobs)]


def final_recipe(cfg: ProxyConfig, seed_index: int = 0) -> ProxyConfig:
    """The final round's runs: ``final_factor`` times the images of a proxy run (per epoch where the
    proxy recipe sets them, else as many times the epochs over the whole training split), from seed
    ``train_seed + 1 + seed_index`` (never the proxy runs' own)."""
    seed = cfg.train_seed + 1 + seed_index
    if cfg.train_len is None:
        return replace(cfg, epochs=cfg.epochs * cfg.final_factor, train_seed=seed)
    return replace(cfg, train_len=cfg.train_len * cfg.final_factor, train_seed=seed)


def final_scores(record: dict[str, Any]) -> list[float]:
    """An arch's final-round scores, one per seed (a record written before the round had seeds holds
    its single score as ``final_score``)."""
    if "final_scores" in record:
        return list(record["final_scores"])
    return [record["final_score"]] if "final_score" in record else []


def final_round(cfg: ProxyConfig, state: EvolutionState, sampler: BandSampler, out: Path, save: Callable[[], None],
                reporter: Reporter) -> None:
    """Train the ``final_round`` best-scored archs again, ``final_factor`` times longer and from
    ``final_seeds`` other seeds, and keep each one's ``final_score``, the mean over its seeds: the last
    rung of successive halving (Jamieson and Talwalkar, "Non-stochastic Best Arm Identification and
    Hyperparameter Optimization", AISTATS 2016, sec. 3; Li et al., "Hyperband", JMLR 2018, sec. 3). A
    short proxy run ranks many archs cheaply, but the top few differ by less than its noise; longer
    runs decide among them. At small budgets the finalists also differ by less than one longer run's
    seed-to-seed spread, so a single seed would pick among them by chance; the mean of a few does not.
    The space's hand-designed reference joins them when it was scored, so the pick has beaten it at the
    longer recipe too. Runs go to ``out/final`` (first seed) and ``out/final-seedN``, each resumable
    like the proxy runs, and a resumed search with more seeds trains only the seeds it lacks."""
    if cfg.final_round <= 0 or not state.scored:
        return
    ranked = sorted(state.scored, key=lambda k: -state.scored[k]["score"])
    keys = ranked[: cfg.final_round]
    keys += [k for k in ranked if state.scored[k]["origin"] == "reference" and k not in keys][:1]
    seeds = max(1, cfg.final_seeds)
    todo = [(i, k) for i in range(seeds) for k in keys if len(final_scores(state.scored[k])) <= i]
    if not todo:
        return
    with reporter.task("final round", total=len(todo)) as bar:
        for i in range(seeds):
            now = [k for j, k in todo if j == i]
            if not now:
                continue
            runs = out / ("final" if i == 0 else f"final-seed{i + 1}")
            scores = ProxyScorer(final_recipe(cfg, i), sampler, runs)([state.scored[k]["choices"] for k in now])
            for k, score in zip(now, scores):
                rec = state.scored[k]
                got = final_scores(rec)[:i] + [score]
                rec["final_scores"], rec["final_score"] = got, sum(got) / len(got)
            save()
            bar.advance(len(now))


def run_proxy(cfg: ProxyConfig, out_dir: str | Path, resume: bool = False, reporter: Reporter | None = None,
              seeds: Sequence[tuple[Arch, str]] = (), ctx: SearchContext | None = None,
              band_ms: tuple[float, float] | None = None, extra: dict[str, Any] | None = None, strategy: str = "proxy",
              result_dir: str | Path | None = None, as_is: Collection[str] = ()) -> SearchResult:
    """Run (or ``resume``) a proxy search into ``out_dir``; see the module docstring. ``seeds`` (arch,
    origin) join ``cfg.seed_archs``; ``band_ms`` replaces the band's latencies (the default strategy
    passes a band corrected by measurement); ``extra`` goes into the summary; the pick is written to
    ``result_dir`` (default ``out_dir``) under the name of ``strategy``; seeds of an origin in ``as_is``
    (measured to fit T) are scored as they are, inside the band or not."""
    out = Path(out_dir)
    dist.init_distributed(cfg.device if device_kind(cfg.device) == "cpu" else None)
    reporter = reporter if (reporter is not None and dist.is_main()) else SilentReporter()
    ctx = ctx or prepare(cfg, subject=f"the {cfg.space} search")
    t_start = time.monotonic()
    supernet = ctx.space.supernet(ctx.info.num_classes)
    all_seeds: list[tuple[Arch, str]] = [(load_arch(s).with_(num_classes=ctx.info.num_classes), "seed") for s in cfg.seed_archs]
    all_seeds += list(seeds)
    for s, origin in all_seeds:
        ctx.space.validate(s, source=f"{origin} arch {s.name or ''}")
        if not ctx.within_flops(ctx.price(s)):
            raise RtsegError(f"{origin} arch {s.name or ''} has {ctx.price(s).flops / 1e9:.3f} G FLOPs, over the --flops-g "
                             f"budget {cfg.flops_g:g} G; scale it down first")

    state_path = out / "state.json"
    if resume and (out / "config.json").exists():
        check_same_config(read_json(out / "config.json", "proxy search config"), cfg.to_dict(), out, may_differ=RESUME_MAY_DIFFER)
    saved = read_json(state_path, "proxy search state") if resume and state_path.exists() else None
    state = EvolutionState.from_dict(saved["evolution"]) if saved else EvolutionState()
    elapsed_before = float(saved["elapsed_s"]) if saved else 0.0
    rng = random.Random(cfg.seed)
    if saved:
        rng_from_json(rng, saved["rng"])
    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", cfg.to_dict())
    low, high = band_ms or (cfg.band[0] * cfg.latency_ms, cfg.band[1] * cfg.latency_ms)
    sampler = BandSampler(supernet, ctx, low, high, rng)
    scorer = ProxyScorer(cfg, sampler, out / "proxy")

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - t_start

    def save() -> None:
        if dist.is_main():
            atomic_write_json(state_path, {"format": "rtseg.proxy_state", "schema_version": 1, "evolution": state.to_dict(),
                                           "elapsed_s": elapsed(), "rng": rng_to_json(rng)})

    seed_choices = [({**supernet.argmax_choices(), **supernet.choices_of(a)}, origin) for a, origin in all_seeds]
    with reporter.task("proxy evolution", total=cfg.evaluations, completed=len(state.scored)) as bar:
        evolve(state, sampler, scorer, population=cfg.population, parents=cfg.parents, evaluations=cfg.evaluations,
               mutate_prob=cfg.mutate_prob, seeds=seed_choices, save=save, bar=bar, as_is=as_is)
    for key, rank in scorer.trained_by.items():
        if key in state.scored:
            state.scored[key]["trained_by_rank"] = rank
    final_round(cfg, state, sampler, out, save, reporter)
    best, measured = (choose_measured(ctx, state, sampler, cfg.finalists, fit_low=cfg.fit_low, say=reporter.message)
                      if dist.is_main() else (None, None))
    best, measured = dist.broadcast_object((best, measured))
    arch = sampler.arch(best["choices"])
    picks = dist.all_gather_object(key_of(arch))
    summary = _summary(cfg, state, best, (low, high), same_pick=len(set(picks)) == 1, extra=extra)
    save()
    if dist.is_main():
        write_evolution(out / "evolution.json", state, sampler)
    ctx.t_start = time.monotonic() - elapsed()
    return finish(ctx, Path(result_dir or out), arch, strategy=strategy, summary=summary,
                  meta={"proxy_score": best["score"]}, measured=measured, write=dist.is_main(),
                  plot=lambda: plot_evolution(list(state.scored.values()), out / "evolution.png", cfg.latency_ms, cfg.band,
                                              ylabel=f"proxy mIoU, {cfg.epochs} x {cfg.train_len} images (%)"))


def _summary(cfg: ProxyConfig, state: EvolutionState, best: dict[str, Any], band_ms: tuple[float, float], same_pick: bool,
             extra: dict[str, Any] | None) -> dict[str, Any]:
    """What ``search.json`` says of the proxy stage: the pick's scores and origin, the seeds, the recipe,
    the final round, and which images were read."""
    summary: dict[str, Any] = {
        "proxy_score": best["score"], "origin": best["origin"], "generation_found": best["generation"],
        "evaluations": len(state.scored), "generations": state.generation, "seed_archs": list(cfg.seed_archs),
        "seeds": [{"origin": r["origin"], "score": r["score"], "predicted_latency_ms": r["predicted_latency_ms"]}
                  for r in state.scored.values() if r["generation"] == 0 and r["origin"] != "random"],
        "band": list(cfg.band), "band_ms": list(band_ms), "proxy_recipe": {"epochs": cfg.epochs, "train_len": cfg.train_len,
                                                                         "val_len": cfg.val_len, "batch": cfg.batch},
        "images": {"split": "train", "held_out": cfg.selection_fraction, "validation_split_read": False},
        "world_size": dist.world_size(), "ranks_agree": same_pick, **(extra or {}),
        "final_round": {"recipe": {**{k: getattr(final_recipe(cfg), k) for k in ("epochs", "train_len", "train_seed")},
                                   "train_seeds": [final_recipe(cfg, i).train_seed for i in range(max(1, cfg.final_seeds))]},
                        "archs": [{"origin": r["origin"], "score": r["score"], "final_score": r["final_score"],
                                   "final_scores": final_scores(r)} for r in ranked_for_pick(state) if "final_score" in r]},
    }
    summary.update({k: best[k] for k in ("final_score", "fitted_from") if k in best})
    return summary


__all__ = ["ProxyConfig", "ProxyScorer", "run_proxy"]
