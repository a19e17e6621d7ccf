"""The default search: candidates from every source, decided by proxy trainings, the finalists measured.

Each source of candidates is good at something the others miss (``search/README.md`` has the
measurements): the papers' differentiable searches look at the whole space in one run, a one-shot
supernet scores many archs in seconds each, and the space's hand-designed net scaled to the budget
is what a user would otherwise ship. None of them ranks archs well enough on its own at a CPU-sized
budget; short training runs do. So the stages are:

1. **calibrate**: a few in-band archs are measured on the LUT's own runtime and the LUT's prediction
   is scaled by what it missed (the median of measured / predicted), so that every later stage aims at
   the budget as measured, not as predicted (skipped, with a note, when this machine is not the LUT's
   device).
2. **gradient**: the space's paper's differentiable search (:mod:`rtseg.search.loop`: the SSR loss and
   shrinking on ``ssr``, the CAS cost on ``cas``, DCNAS path sampling on ``dcnas``), decoded and brought
   into the band.
3. **oneshot**: a one-shot supernet (:mod:`rtseg.search.oneshot`, trained across budgets and reusable
   with ``supernet``: a search that reuses one leaves the gradient stage out unless asked, so that it
   costs the evolutions and the proxy trainings only) and its evolution's best archs; on spaces whose supernet cannot run one path the
   stage is skipped and says so.
4. **reference**: the space's hand-designed family (:attr:`SearchSpace.reference_family`), where the
   space has one, scaled to the budget as measured on the LUT's runtime (by the LUT where this machine
   is not its device): the net a user would ship instead of searching, seeded as it is. A space with
   no family seeds its built-in reference arch (:attr:`SearchSpace.reference_arch`) instead. Where the
   space offers a layer kind beside the family's own (``ssr``'s STDC layers), the uniform nets of that
   kind, as deep as the band allows, are seeded beside it (:meth:`SearchSpace.layer_kind_references`).
5. **proxy**: an evolution seeded with all of them (:mod:`rtseg.search.proxy`), every arch scored by a
   short training run on held-out training data (the strongest seeds first: a small evaluation budget
   scores only the first ones). Where no one-shot stage ran, the evolution scores more archs and the
   final round takes more of them (:data:`PROXY_EFFORT`): it starts from fewer good seeds, and the
   time the one-shot stage would have taken is spent on training runs instead.
6. **final round**: the best few archs and the reference trained again, longer and from 3 other seeds
   (:func:`rtseg.search.proxy.final_round`): the top of a short run's ranking lies within its noise.
7. **pick**: the final round's archs measured on the LUT's runtime, the best one that fits T as measured
   chosen, and moved by the fewest decisions into ``[fit_low T, T]`` as measured where it missed
   (:func:`rtseg.search.evolution.choose_measured`).

Every stage keeps to the FLOPs budget when one is given. Each stage runs in its own folder under the
run folder (``gradient/``, ``oneshot/``, ``proxy/``) and is kept when the search is resumed;
``search.json`` records which stages ran and what each found.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtseg import distributed as dist
from rtseg.arch import Arch
from rtseg.backends.device import device_kind
from rtseg.io import atomic_write_json, read_json
from rtseg.reporting import Reporter, SilentReporter
from rtseg.search.common import SearchContext, SearchResult, measurable_here, measure_archs, prepare
from rtseg.search.evolution import BandSampler, top_archs
from rtseg.search.loop import SearchConfig, run_search
from rtseg.search.oneshot import OneShotConfig, run_oneshot
from rtseg.search.proxy import ProxyConfig, run_proxy
from rtseg.spaces import load_arch

#: Config fields a resumed default search may change: limits and resources, not what is searched.
RESUME_MAY_DIFFER = ("evaluations", "jobs", "device", "verify_latency", "force", "gradient_minutes", "oneshot_minutes", "workers",
                     "final_seeds")
#: The largest correction the calibration applies to the LUT's prediction (either way).
MAX_CORRECTION = 1.5
#: Where the hand-designed reference is scaled to, as measured: inside [0.95 T, T], the band a pick aims at.
REFERENCE_AIM = 0.975
#: The proxy stage's evaluations and final-round size when the config leaves them unset (``None``), by
#: whether one-shot finalists seed the evolution. Without them the seeds are few (the gradient decode,
#: maybe a reference), so the evolution starts mostly from uniform draws and needs more of its own
#: evaluations to find what the finalists would have brought; the search stays within the time of one
#: that trains a supernet (``search/README.md`` has both measured).
PROXY_EFFORT = {True: {k: ProxyConfig.__dataclass_fields__[k].default for k in ("evaluations", "final_round")},
                False: {"evaluations": 40, "final_round": 5}}
#: How long a rank may wait for rank 0's one-shot stage under torchrun (seconds).
STAGE_WAIT_S = 6 * 3600


@dataclass
class StagedConfig(ProxyConfig):
    evaluations: int | None = None  # None: by whether one-shot finalists seed the proxy (PROXY_EFFORT)
    final_round: int | None = None  # None: likewise
    gradient_stage: bool | None = None  # None: on, unless a trained supernet is reused (then the search costs its evolutions only)
    gradient_epochs: int = 4
    gradient_minutes: float | None = None
    gradient_train_len: int | None = None  # None: the gradient search's own default
    oneshot_stage: bool = True
    oneshot_epochs: int = 12
    oneshot_train_len: int = 256
    oneshot_evaluations: int = 96
    oneshot_score_len: int = 64  # held-out training images that score an arch on the supernet's weights
    oneshot_minutes: float | None = None
    oneshot_finalists: int = 3  # the one-shot evolution's best archs that seed the proxy evolution
    focus: float = 0.5  # one-shot: share of training paths in this search's band (the rest across budgets)
    supernet: str | None = None  # a trained supernet's folder to reuse (skips the one-shot training)
    reference: bool = True  # seed with the space's hand-designed family scaled to the budget
    calibrate: bool = True  # correct the LUT's prediction by measuring a few archs first
    batch: int = 8
    workers: int = 0


def run_staged(cfg: StagedConfig, out_dir: str | Path, resume: bool = False, reporter: Reporter | None = None) -> SearchResult:
    """Run (or ``resume``) the default search into ``out_dir``; see the module docstring."""
    out = Path(out_dir)
    dist.init_distributed(cfg.device if device_kind(cfg.device) == "cpu" else None, timeout_s=STAGE_WAIT_S)
    main = dist.is_main()
    reporter = reporter if (reporter is not None and main) else SilentReporter()
    ctx = prepare(cfg, subject=f"the {cfg.space} search")
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", cfg.to_dict())
    stages: dict[str, Any] = {}
    scale = _calibrate(cfg, ctx, out, stages, reporter) if cfg.calibrate else 1.0
    aim = cfg.latency_ms / scale  # the budget in the LUT's predicted milliseconds
    floor = 1.25 * ctx.cheapest.latency_ms / cfg.band[0]  # a band near the cheapest arch holds few archs
    if aim < floor:  # even the cheapest archs miss T as measured: aim as low as the space allows
        stages["calibrate"]["note"] = (f"archs measure {scale:.2f}x their prediction here, so no arch of the space fits T as "
                                       f"measured; aiming at {floor:.3f} ms predicted, the lowest band the space fills")
        aim = floor
    gradient: list[tuple[Arch, str]] = []
    if cfg.gradient_stage or (cfg.gradient_stage is None and not cfg.supernet):
        gradient = _gradient(cfg, ctx, out, aim, resume, stages, reporter)
    else:
        stages["gradient"] = {"ran": False, "note": "left out" + (" (a trained supernet is reused)" if cfg.supernet else "")}
    oneshot = _oneshot(cfg, ctx, out, aim, resume, stages, reporter) if cfg.oneshot_stage else []
    reference = _reference(cfg, ctx, aim, out, stages) if cfg.reference else []
    if cfg.reference:  # and the uniform nets of any layer kind the space offers beside its family's own
        kinds = ctx.space.layer_kind_references(lambda a: ctx.price(a).latency_ms, cfg.band[1] * aim, ctx.info.num_classes)
        if kinds:
            reference += kinds
            stages["reference"]["layer_kinds"] = [origin for _, origin in kinds]
    # the user's own seed archs join the stages' and, like them, are moved into the (calibrated) band; the
    # strongest sources first, since a small evaluation budget scores only the first seeds
    users = [(load_arch(s).with_(num_classes=ctx.info.num_classes), "seed-arch") for s in cfg.seed_archs]
    seeds = _into_band(cfg, ctx, users + reference + oneshot + gradient, aim, stages)
    effort = proxy_effort(cfg, bool(oneshot))
    stages["proxy"] = {"ran": True, "seeds": [origin for _, origin in seeds], **effort}
    pcfg = ProxyConfig(**{**{f: getattr(cfg, f) for f in ProxyConfig.__dataclass_fields__}, "seed_archs": [], **effort})
    band_ms = (cfg.band[0] * aim, cfg.band[1] * aim)
    extra = {"stages": stages, "measured_over_predicted": scale, "aimed_predicted_ms": aim}
    result = run_proxy(pcfg, out / "proxy", resume=resume and (out / "proxy" / "state.json").exists(), reporter=reporter,
                       seeds=seeds, ctx=ctx, band_ms=band_ms, extra=extra, strategy="default", result_dir=out,
                       as_is=fits_as_measured(cfg, stages))
    # the whole search's time, from the stages' records (a resumed search counts its earlier processes too)
    result.summary["wall_time_s"] = result.summary["wall_time_s"] + sum(
        float(stages[k].get(f) or 0.0) for k, f in (("calibrate", "seconds"), ("gradient", "wall_time_s"), ("oneshot", "wall_time_s"))
        if isinstance(stages.get(k), dict))
    if main:
        atomic_write_json(out / "search.json", result.summary)
    return result


def _calibrate(cfg: StagedConfig, ctx: SearchContext, out: Path, stages: dict[str, Any], reporter: Reporter) -> float:
    """Measured / predicted latency of a few in-band archs on the LUT's runtime (1.0 when not measurable
    here); rank 0 measures, every rank gets the figure. Kept in ``calibration.json`` for a resume."""
    path = out / "calibration.json"
    if path.exists():
        rec = read_json(path, "search calibration")
        stages["calibrate"] = rec
        return float(rec["scale"])
    rec: dict[str, Any] = {"ran": False}
    if dist.is_main():
        why_not = measurable_here(ctx.lut)
        if why_not is not None or not cfg.verify_latency:
            rec = {"ran": False, "scale": 1.0, "note": why_not or "verify_latency is off: the LUT's prediction is taken as it is"}
        else:
            t0 = time.monotonic()
            supernet = ctx.space.supernet(ctx.info.num_classes)
            sampler = BandSampler(supernet, ctx, cfg.band[0] * cfg.latency_ms, cfg.band[1] * cfg.latency_ms, random.Random(cfg.seed + 3))
            archs = [sampler.arch(sampler.uniform()) for _ in range(4)]
            reporter.message("\\[calibrate] measuring 4 in-band archs on the LUT's runtime")
            ms = measure_archs(ctx.lut, archs, rounds=4, repeats=40, seed=cfg.seed) or []
            ratios = [m / ctx.price(a).latency_ms for a, m in zip(archs, ms)]
            scale = statistics.median(ratios)
            rec = {"ran": True, "scale": scale, "ratios": ratios, "predicted_ms": [ctx.price(a).latency_ms for a in archs],
                   "measured_ms": ms, "seconds": time.monotonic() - t0}
            if not MAX_CORRECTION ** -1 <= scale <= MAX_CORRECTION:  # not a drift: another runtime, or a machine busy elsewhere
                rec.update(scale=1.0, measured_scale=scale,
                           note=f"archs measure {scale:.2f}x their prediction: too far to be a drift of the LUT's runtime; "
                                "the prediction is taken as it is (profile the LUT again on this machine, idle)")
        atomic_write_json(path, rec)
    rec = dist.broadcast_object(rec)
    stages["calibrate"] = rec
    return float(rec["scale"])


def _stage_result(folder: Path) -> dict[str, Any] | None:
    return read_json(folder / "search.json", "stage summary") if (folder / "search.json").exists() else None


def _gradient(cfg: StagedConfig, ctx: SearchContext, out: Path, aim: float, resume: bool, stages: dict[str, Any],
              reporter: Reporter) -> list[tuple[Arch, str]]:
    """The space's paper's differentiable search (single-path where the supernet can), aimed at ``aim``."""
    folder = out / "gradient"
    supernet = ctx.space.supernet(ctx.info.num_classes)
    gcfg = SearchConfig(space=cfg.space, space_options=cfg.space_options, lut=cfg.lut, latency_ms=aim, flops_g=cfg.flops_g,
                        data=cfg.data, input_hw=cfg.input_hw, selection_fraction=cfg.selection_fraction, seed=cfg.seed,
                        device=cfg.device, force=cfg.force, verify_latency=False, epochs=cfg.gradient_epochs, batch=min(cfg.batch, 4),
                        single_path=supernet.supports_single_path, train_len=cfg.gradient_train_len, minutes=cfg.gradient_minutes,
                        workers=cfg.workers)
    done = _stage_result(folder)
    if done is None:
        res = run_search(gcfg, folder, resume=resume and (folder / "state.pt").exists(), reporter=reporter)
        done = res.summary
    arch = load_arch(folder / "arch.json")
    stages["gradient"] = {"ran": True, "folder": str(folder), "predicted_latency_ms": done["predicted_latency_ms"],
                          "flops": done["flops"], "discrete": done.get("discrete"), "single_path": gcfg.single_path,
                          "wall_time_s": done.get("wall_time_s")}
    return [(arch, "gradient")]


def proxy_effort(cfg: StagedConfig, oneshot_seeded: bool) -> dict[str, int]:
    """The proxy stage's ``evaluations`` and ``final_round``: the config's where set, else
    :data:`PROXY_EFFORT`'s for a search with or without one-shot finalists among its seeds."""
    fallback = PROXY_EFFORT[oneshot_seeded]
    return {k: fallback[k] if getattr(cfg, k) is None else int(getattr(cfg, k)) for k in fallback}


def _oneshot(cfg: StagedConfig, ctx: SearchContext, out: Path, aim: float, resume: bool, stages: dict[str, Any],
             reporter: Reporter) -> list[tuple[Arch, str]]:
    """The one-shot search (rank 0 under torchrun) and its best archs; skipped where the space cannot run one path."""
    if not ctx.space.supernet(ctx.info.num_classes).supports_path_forward:
        stages["oneshot"] = {"ran": False, "note": f"the {cfg.space} supernet cannot run one path: no one-shot stage"}
        return []
    folder = out / "oneshot"
    ocfg = OneShotConfig(space=cfg.space, space_options=cfg.space_options, lut=cfg.lut, latency_ms=aim, flops_g=cfg.flops_g,
                         data=cfg.data, input_hw=cfg.input_hw, selection_fraction=cfg.selection_fraction, seed=cfg.seed,
                         device=cfg.device, force=cfg.force, verify_latency=False, band=cfg.band, epochs=cfg.oneshot_epochs,
                         train_len=cfg.oneshot_train_len, score_len=cfg.oneshot_score_len, evaluations=cfg.oneshot_evaluations,
                         minutes=cfg.oneshot_minutes,
                         focus=cfg.focus, supernet=cfg.supernet, workers=cfg.workers)
    record = None
    if dist.is_main():
        done = _stage_result(folder)
        if done is None:
            resumable = resume and ((folder / "state.pt").exists() or (folder / "state.json").exists())
            done = run_oneshot(ocfg, folder, resume=resumable, reporter=reporter).summary
        finalists = [a.to_dict() for a in top_archs(folder / "evolution.json", cfg.oneshot_finalists)]
        record = {"ran": True, "folder": str(folder), "supernet": done.get("supernet"), "oneshot_score": done.get("oneshot_score"),
                  "evaluations": done.get("evaluations"), "wall_time_s": done.get("wall_time_s"),
                  "evolution_s": done.get("evolution_s"), "finalists": finalists}
    record = dist.broadcast_object(record)
    stages["oneshot"] = {k: v for k, v in record.items() if k != "finalists"}
    return [(Arch.from_dict(a), f"oneshot-{i + 1}") for i, a in enumerate(record["finalists"])]


def _reference(cfg: StagedConfig, ctx: SearchContext, aim: float, out: Path, stages: dict[str, Any]) -> list[tuple[Arch, str]]:
    """The space's hand-designed family scaled to the budget: the member nearest ``REFERENCE_AIM`` T as
    measured on the LUT's runtime where this machine is its device (what a user would ship instead of
    searching, so the search is judged against it), else the member the LUT prices nearest ``aim``.
    Rank 0 picks; kept in ``reference.json`` so a resumed search seeds the same member. A space with no
    family may name a built-in arch instead (:attr:`SearchSpace.reference_arch`), brought into the band
    like the other seeds."""
    family = ctx.space.reference_family
    if family is None:
        return _reference_arch(cfg, ctx, stages)
    path = out / "reference.json"
    rec = read_json(path, "search reference") if path.exists() else None
    if rec is None and dist.is_main():
        rec = _pick_reference(cfg, ctx, family, aim)
        atomic_write_json(path, rec)
    rec = dist.broadcast_object(rec)
    stages["reference"] = {k: v for k, v in rec.items() if k != "arch"}
    return [(Arch.from_dict(rec["arch"]), "reference")]


def _reference_arch(cfg: StagedConfig, ctx: SearchContext, stages: dict[str, Any]) -> list[tuple[Arch, str]]:
    """The space's built-in reference arch, its operations put in this supernet (at the space's size
    options), where its decisions are this supernet's: the band step then changes operations until the
    LUT prices it into the band, since nothing here scales it."""
    name = ctx.space.reference_arch
    if name is None:
        stages["reference"] = {"ran": False, "note": f"the {cfg.space} space has no hand-designed family or reference arch"}
        return []
    supernet = ctx.space.supernet(ctx.info.num_classes)
    made = load_arch(name).with_(num_classes=ctx.info.num_classes)
    try:
        arch = supernet.arch_from_choices(supernet.choices_of(made))
        same = {k: v for k, v in arch.genotype.items() if k != "config"} == {k: v for k, v in made.genotype.items() if k != "config"}
    except (KeyError, IndexError, ValueError):
        same = False
    if not same:
        stages["reference"] = {"ran": False, "note": f"the built-in arch {name} does not fit this {cfg.space} space's cells"}
        return []
    stages["reference"] = {"ran": True, "arch_name": name, "predicted_latency_ms": ctx.price(arch).latency_ms}
    return [(arch, "reference")]


def _pick_reference(cfg: StagedConfig, ctx: SearchContext, family: str, aim: float) -> dict[str, Any]:
    from rtseg.spaces.families import pick_nearest

    if measurable_here(ctx.lut) is None and cfg.verify_latency:
        from rtseg.latency.validate import like_lut

        target = REFERENCE_AIM * cfg.latency_ms
        pick = pick_nearest(family, target, like_lut(ctx.lut), input_hw=ctx.hw, num_classes=ctx.info.num_classes, confirm=2)
        how = {"scaled_by": "measured on the LUT's runtime", "measured_latency_ms": pick.measured_ms}
    else:
        pick = pick_nearest(family, cfg.band[1] * aim * 0.99, lambda a: ctx.price(a).latency_ms, input_hw=ctx.hw,
                            num_classes=ctx.info.num_classes, confirm=0)
        how = {"scaled_by": "the LUT's prediction"}
    arch = pick.member.arch.with_(num_classes=ctx.info.num_classes)
    return {"ran": True, "family": family, "knobs": pick.member.knobs, "predicted_latency_ms": ctx.price(arch).latency_ms,
            **how, "arch": arch.to_dict()}


def _into_band(cfg: StagedConfig, ctx: SearchContext, seeds: list[tuple[Arch, str]], aim: float,
               stages: dict[str, Any]) -> list[tuple[Arch, str]]:
    """Seeds brought into the band by small changes where needed; one that no small change brings in
    (or that breaks the FLOPs budget) is left out, and the stage record says so."""
    supernet = ctx.space.supernet(ctx.info.num_classes)
    sampler = BandSampler(supernet, ctx, cfg.band[0] * aim, cfg.band[1] * aim, random.Random(cfg.seed + 5))
    kept = []
    as_is = fits_as_measured(cfg, stages)
    for arch, origin in seeds:
        choices = {**supernet.argmax_choices(), **supernet.choices_of(arch)}
        if origin in as_is and ctx.within_flops(ctx.price(arch)):
            kept.append((arch, origin))  # measured to fit T: the net a user would ship, seeded as it is
            continue
        moved = sampler.into_band(choices, cfg.mutate_prob) or sampler.toward(choices, sampler.low, sampler.high, steps=200)
        stage = stages.setdefault("seed_archs" if origin == "seed-arch" else origin.split("-")[0], {"ran": True})
        if moved is None:
            stage.setdefault("left_out", []).append(f"{origin}: predicted {ctx.price(arch).latency_ms:.3f} ms, not brought into the band")
            continue
        if moved != choices:
            stage.setdefault("moved_into_band", []).append(origin)
        kept.append((sampler.arch(moved), origin))
    if not kept and dist.is_main():
        stages.setdefault("proxy", {})["note"] = "no stage gave an arch in the band: the evolution starts from uniform draws"
    return kept


def fits_as_measured(cfg: StagedConfig, stages: dict[str, Any]) -> set[str]:
    """Origins of seeds measured on the LUT's runtime to lie in [band[0] T, T]: the evolution scores them
    as they are, whatever the LUT predicts for them (its prediction is what they would be moved by)."""
    ms = (stages.get("reference") or {}).get("measured_latency_ms")
    return {"reference"} if ms is not None and cfg.band[0] * cfg.latency_ms <= ms <= cfg.latency_ms else set()


def stage_names(summary: dict[str, Any]) -> list[str]:
    """The stages a default search ran, in order (for tables and reports)."""
    return [k for k, v in (summary.get("stages") or {}).items() if isinstance(v, dict) and v.get("ran")]


__all__ = ["StagedConfig", "run_staged", "stage_names"]
