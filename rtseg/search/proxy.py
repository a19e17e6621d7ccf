"""Proxy search: evolution inside the latency band, each arch scored by a short training run of its own.

Weight-sharing estimators (the differentiable search's path weights, a one-shot supernet's accuracy)
are cheap but can rank archs wrongly when the supernet has seen little training; ``search/README.md``
has this project's measurement of that. This search pays for a direct estimate instead: every arch
the evolution (:mod:`rtseg.search.evolution`) proposes is trained from scratch with a short recipe
(``epochs`` x ``train_len`` scenes) and scored by its final mIoU, the low-fidelity estimate of
regularized evolution (Real et al., "Regularized Evolution for Image Classifier Architecture Search",
AAAI 2019, sec. 3 and 4). Proxy runs train and validate on a different synthetic world
(``proxy_data_seed``) from the one a final comparison reports, so the choice never sees the scenes it
is judged on. Runs go ``jobs`` at a time, one CPU thread each.

Seed archs (``seed_archs``: names or files, e.g. the space's hand-designed net scaled to the budget)
start the population beside uniform in-band draws, so the search refines what a user would otherwise
ship; every arch keeps to the band ``[band[0] T, T]`` of LUT-predicted latency.

Run folder: ``arch.json``, ``search.json``, ``evolution.json``, ``evolution.png``, ``config.json``,
``state.json`` and one folder per proxy run under ``proxy/`` (each resumable); a re-run resumes.
"""

from __future__ import annotations

import hashlib
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from rtseg.arch import load_arch
from rtseg.data import build_dataset
from rtseg.errors import RtsegError
from rtseg.flops import op_flops
from rtseg.io import atomic_write_json, check_same_config, read_json
from rtseg.latency.lut import load_lut
from rtseg.reporting import Reporter, SilentReporter
from rtseg.search.budget import arch_cost
from rtseg.search.evolution import (BandSampler, EvolutionConfig, EvolutionState, evolve, key_of, plot_evolution, rng_from_json, rng_to_json,
                                    top_archs, write_evolution)
from rtseg.search.loop import SearchResult, lut_runtime, measure_on_lut_runtime
from rtseg.search.oneshot import OneShotConfig, run_oneshot
from rtseg.spaces import get_space
from rtseg.train import final_miou, train_one_thread

#: Config fields a resumed proxy search may change: limits and resources, not what is searched.
RESUME_MAY_DIFFER = ("evaluations", "jobs", "device", "verify_latency")


@dataclass
class ProxyConfig(EvolutionConfig):
    epochs: int = 2  # proxy recipe: epochs x train_len scenes, batch
    train_len: int = 240
    val_len: int = 48
    batch: int = 8
    proxy_data_seed: int = 1  # the synthetic world proxies train and validate on
    train_seed: int = 0
    population: int = 6
    parents: int = 2
    evaluations: int = 14
    mutate_prob: float = 0.05
    seed_archs: list[str] = field(default_factory=list)
    jobs: int = 1


def run_proxy(cfg: ProxyConfig, out_dir: str | Path, resume: bool = False, reporter: Reporter | None = None) -> SearchResult:
    """Run (or ``resume``) a proxy search into ``out_dir``; see the module docstring."""
    reporter = reporter or SilentReporter()
    out = Path(out_dir)
    t_start = time.monotonic()
    if cfg.latency_ms <= 0:
        raise RtsegError("--latency-ms must be a positive budget in milliseconds")
    h, w = cfg.input_hw
    space = get_space(cfg.space)
    space.check_input(h, w)
    lut = load_lut(cfg.lut)
    info = build_dataset(cfg.data, "val", (h, w), augment=False, seed=cfg.proxy_data_seed, length=1).info
    lut.check_fits(space=cfg.space, space_options=space.options(), input_hw=(h, w), num_classes=info.num_classes,
                   subject=f"the {cfg.space} search")
    supernet = space.supernet(info.num_classes)
    seeds = [load_arch(s).with_(num_classes=info.num_classes) for s in cfg.seed_archs]
    for s in seeds:
        space.validate(s, source=f"seed arch {s.name or ''}")

    state_path = out / "state.json"
    if resume and (out / "config.json").exists():
        check_same_config(read_json(out / "config.json", "proxy search config"), cfg.to_dict(), out, may_differ=RESUME_MAY_DIFFER)
    saved = read_json(state_path, "proxy search state") if resume and state_path.exists() else None
    state = EvolutionState.from_dict(saved["evolution"]) if saved else EvolutionState()
    elapsed_before = float(saved["elapsed_s"]) if saved else 0.0
    rng = random.Random(cfg.seed)
    if saved:
        rng_from_json(rng, saved["rng"])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", cfg.to_dict())
    sampler = BandSampler(supernet, lut, h, w, cfg.band[0] * cfg.latency_ms, cfg.band[1] * cfg.latency_ms, rng)

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - t_start

    def save() -> None:
        atomic_write_json(state_path, {"format": "rtseg.proxy_state", "schema_version": 1, "evolution": state.to_dict(),
                                       "elapsed_s": elapsed(), "rng": rng_to_json(rng)})

    def score(batch: Sequence[dict[str, int]]) -> list[float]:
        jobs = []
        for choices in batch:
            arch = sampler.arch(choices)
            run = out / "proxy" / hashlib.sha1(key_of(arch).encode()).hexdigest()[:12]
            jobs.append({"run": str(run), "arch": arch.to_dict(), "epochs": cfg.epochs, "batch": cfg.batch,
                         "train_len": cfg.train_len, "val_len": cfg.val_len, "seed": cfg.train_seed,
                         "data_seed": cfg.proxy_data_seed, "device": cfg.device, "data": cfg.data, "input_hw": [h, w]})
        if cfg.jobs <= 1:
            return [final_miou(train_one_thread(j)) for j in jobs]
        with ProcessPoolExecutor(max_workers=cfg.jobs) as pool:
            return [final_miou(s) for s in pool.map(train_one_thread, jobs)]

    seed_choices = [{**supernet.argmax_choices(), **supernet.choices_of(s)} for s in seeds]
    with reporter.task("proxy evolution", total=cfg.evaluations, completed=len(state.scored)) as bar:
        evolve(state, sampler, score, population=cfg.population, parents=cfg.parents, evaluations=cfg.evaluations,
               mutate_prob=cfg.mutate_prob, seeds=seed_choices, save=save, bar=bar)

    best = state.best()
    arch = sampler.arch(best["choices"])
    arch.name = f"proxy-{cfg.space}-{cfg.latency_ms:g}ms"
    cost = arch_cost(arch, h, w, lut.cost, float(lut.constant_ms), op_flops)
    arch.meta = {
        "searched_with": {"lut": str(cfg.lut), "latency_ms": cfg.latency_ms, "strategy": "proxy evolution",
                          "band": list(cfg.band), "input_hw": [h, w], "data": cfg.data, "seed_archs": list(cfg.seed_archs),
                          **lut_runtime(lut)},
        "predicted_latency_ms": cost.latency_ms, "flops": int(cost.flops), "proxy_score": best["score"],
    }
    summary: dict[str, Any] = {
        "arch": str(out / "arch.json"), "strategy": "proxy evolution", "target_latency_ms": cfg.latency_ms,
        "runtime": lut_runtime(lut), "predicted_latency_ms": cost.latency_ms,
        "predicted_over_target": cost.latency_ms / cfg.latency_ms, "flops": int(cost.flops),
        "proxy_score": best["score"], "origin": best["origin"], "generation_found": best["generation"],
        "evaluations": len(state.scored), "generations": state.generation, "seed_archs": list(cfg.seed_archs),
        "seed_scores": [r["score"] for r in state.scored.values() if r["origin"] == "seed"],
        "band": list(cfg.band), "data": cfg.data, "wall_time_s": elapsed(),
    }
    if cfg.verify_latency:
        summary.update(measure_on_lut_runtime(lut, arch, cfg))
    save()
    arch.save(out / "arch.json")
    write_evolution(out / "evolution.json", state, sampler)
    atomic_write_json(out / "search.json", summary)
    try:
        plot_evolution(list(state.scored.values()), out / "evolution.png", cfg.latency_ms, cfg.band,
                       ylabel=f"proxy mIoU, {cfg.epochs} x {cfg.train_len} scenes (%)")
    except Exception as exc:  # plotting must never lose a finished search
        summary["plot_error"] = str(exc)
    return SearchResult(arch, out, summary)


def run_oneshot_then_proxy(ocfg: OneShotConfig, pcfg: ProxyConfig, out_dir: str | Path, finalists: int = 3,
                           resume: bool = False, reporter: Reporter | None = None,
                           oneshot_dir: str | Path | None = None) -> SearchResult:
    """The two searches in sequence: the one-shot search looks broadly (many archs, each scored in
    seconds by shared weights), then the proxy search looks closely (a few archs, each trained) starting
    from the one-shot's ``finalists`` best archs and ``pcfg.seed_archs`` (a hand-designed net scaled to
    the budget, say). Shared weights rank archs coarsely and a short training ranks them expensively; the
    first narrows the field for the second. Runs land in ``OUT/oneshot`` (or ``oneshot_dir``, a one-shot
    run to reuse or resume) and ``OUT/proxy``; the chosen arch and the summary are copied to
    ``OUT/arch.json`` and ``OUT/search.json``."""
    out = Path(out_dir)
    if (ocfg.lut, ocfg.latency_ms, tuple(ocfg.input_hw), ocfg.space) != (pcfg.lut, pcfg.latency_ms, tuple(pcfg.input_hw), pcfg.space):
        raise RtsegError("the one-shot and proxy stages must search the same space, LUT, budget and input size")
    first_dir = Path(oneshot_dir) if oneshot_dir is not None else out / "oneshot"
    first = run_oneshot(ocfg, first_dir, resume=resume and (first_dir / "state.pt").exists(), reporter=reporter)
    seeds = list(pcfg.seed_archs)
    for i, arch in enumerate(top_archs(first_dir / "evolution.json", finalists)):
        path = first_dir / f"finalist{i}.json"
        arch.save(path)
        seeds.append(str(path))
    second = run_proxy(replace(pcfg, seed_archs=seeds), out / "proxy", resume=resume and (out / "proxy" / "state.json").exists(),
                       reporter=reporter)
    summary = {**second.summary, "strategy": "one-shot then proxy evolution", "arch": str(out / "arch.json"),
               "oneshot": {k: first.summary.get(k) for k in ("oneshot_score", "evaluations", "supernet_steps", "wall_time_s")},
               "wall_time_s": first.summary["wall_time_s"] + second.summary["wall_time_s"]}
    arch = second.arch
    arch.meta["searched_with"]["strategy"] = summary["strategy"]
    arch.save(out / "arch.json")
    atomic_write_json(out / "search.json", summary)
    return SearchResult(arch, out, summary)


__all__ = ["ProxyConfig", "run_proxy", "run_oneshot_then_proxy"]
