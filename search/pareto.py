"""Does the search beat chance and hand-designed nets at equal measured latency? A rerunnable Pareto experiment.

    python search/pareto.py --lut LUT --fractions 0.3 0.5 0.8 --seeds 3 --out runs/pareto

The LUT names the deploy runtime (its backend, device, threads and clock): every latency here is
measured there. For each budget T = fraction x baseline1's latency as the LUT predicts it (the
LUT's terms, which the search and the random draws use; baseline1's measured latency is reported
beside it, since one arch can sit off the LUT's line):

* the searched nets, one per ``--variants`` entry: ``searched-df`` (``rtseg search``'s default strategy),
  ``searched`` (the single-path gradient search), ``searched-ws`` (the weighted-sum gradient search),
  ``searched-os`` (one-shot), ``searched-px`` (proxy) and ``searched-hy`` (one-shot then proxy);
* ``random0..N``: archs drawn uniformly from the same space whose LUT-predicted latency lies in
  [0.85 T, T] (the band the search decodes into);
* one member of each hand-designed family (``rtseg.spaces.families``: baseline1 scaled, ERFNet
  scaled, an LR-ASPP MobileNetV3-style net, STDC1-Seg and DDRNet-23-slim scaled), the one whose
  measured latency is nearest T. They are picked first: the proxy variants start from some of them.

Every candidate is trained with the same recipe (optimizer, schedule, steps, data) from ``--seeds``
initialisations, ``--jobs`` runs at a time, each on one CPU thread. After all training, every
candidate's latency is measured on the deploy runtime in interleaved rounds (a burst of load falls on
all of them alike). Output in OUT: ``pareto.json`` (every figure and setting), ``pareto.md`` (the
table: mean +- std mIoU over seeds, measured latency, multiply-adds, params, the verdict per budget)
and ``pareto.png`` (mIoU against measured latency with error bars). Every run is kept in its own
folder; a re-run skips what finished, so an interrupted experiment resumes. A candidate whose arch
changed since its runs (a search picked again, or a family re-picked with ``--repick-families`` on a
quieter machine than its first pick) trains afresh; its earlier runs are kept as ``RUN.replaced-N``, and
every candidate's latency is measured again.

The verdict per budget: the searched net's mean mIoU against (a) the best random arch's mean plus
one pooled standard deviation (the square root of the mean of the per-arch seed variances of the
searched and random archs: the noise of one trained mIoU at this recipe) and (b) every family's mean.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

from rtseg.arch import Arch
from rtseg.io import atomic_write_json, atomic_write_text
from rtseg.spaces import load_arch
from rtseg.train.workers import final_miou, train_one_thread


#: Candidate name of each search variant.
VARIANT_NAMES = {"single-path": "searched", "weighted": "searched-ws", "oneshot": "searched-os", "proxy": "searched-px",
                 "oneshot+proxy": "searched-hy", "default": "searched-df"}


def _measure(lut: Any) -> Any:
    """A latency measure with the LUT's backend, device, threads and clock (the deploy runtime)."""
    from rtseg.latency.validate import like_lut

    return like_lut(lut)


def _clear_stale_run(run: Path, arch: dict[str, Any]) -> None:
    """A run folder that trained another arch than this candidate's now (a re-picked family member, a
    search picked again) is moved aside to ``RUN.replaced-N``, kept, so that the candidate trains afresh."""
    config = run / "config.json"
    if not config.exists():
        return
    trained = json.loads(config.read_text()).get("arch") or {}
    if (trained.get("space"), trained.get("genotype")) == (arch.get("space"), arch.get("genotype")):
        return
    n = 1
    while run.with_name(f"{run.name}.replaced-{n}").exists():
        n += 1
    run.rename(run.with_name(f"{run.name}.replaced-{n}"))


def _arch_id(arch: Arch) -> str:
    """A short fingerprint of an arch (its space and genotype), to tell a measured latency from a stale one."""
    return hashlib.sha1(json.dumps([arch.space, arch.genotype], sort_keys=True).encode()).hexdigest()[:12]


def _latencies(names: list[tuple[str, str]], archs: list[Arch], path: Path,
               measure: Callable[[list[Arch]], list[float]]) -> list[dict[str, Any]]:
    """Each candidate's measured latency (``(budget, name)`` rows), read from ``path`` when it holds
    exactly these candidates with these archs, else measured for all of them together (interleaved
    rounds: a burst of load falls on all alike) and saved: a search picked again or a family re-picked
    is never reported at its old arch's latency."""
    ids = [_arch_id(a) for a in archs]
    saved = json.loads(path.read_text())["rows"] if path.exists() else []
    if [(r["budget"], r["name"], r.get("arch_id")) for r in saved] == [(f, n, i) for (f, n), i in zip(names, ids)]:
        return saved
    rows = [{"budget": f, "name": n, "arch_id": i, "measured_ms": m} for (f, n), i, m in zip(names, ids, measure(archs))]
    atomic_write_json(path, {"rows": rows, "measure": "rtseg.latency.validate.measure_archs_like_lut: the LUT's backend, device, "
                             "threads and clock, 100 runs per arch in 10 interleaved rounds, median"})
    return rows


def _search(lut: Any, lut_path: str, target: float, out: Path, args: argparse.Namespace, variant: str) -> Arch:
    """The variant's search at T on the LUT's space, through the strategy table (resumed when its folder
    holds a run)."""
    if (out / "arch.json").exists():
        return load_arch(out / "arch.json")
    from rtseg.reporting import RichReporter
    from rtseg.search import get_strategy, run_strategy

    seeds = []
    if variant in ("proxy", "oneshot+proxy"):
        for fam in args.px_seed_families:  # the family's pick at this budget (measured nearest T), as an arch file
            picked = json.loads((out.parent / "families.json").read_text())[fam]["arch"]
            seeds.append(str(out.parent / f"{fam}-pick.json"))
            atomic_write_json(Path(seeds[-1]), picked)
    common = dict(space=lut.space, space_options=lut.space_options, lut=lut_path, latency_ms=target, input_hw=tuple(args.input_hw), seed=0)
    oneshot = dict(oneshot_epochs=args.os_epochs, oneshot_train_len=args.search_train_len, oneshot_score_len=args.os_score_len,
                   oneshot_evaluations=args.os_evaluations, oneshot_minutes=args.os_minutes, oneshot_finalists=args.hy_finalists)
    proxy = dict(epochs=args.px_epochs, train_len=args.px_train_len, batch=args.batch, evaluations=args.px_evaluations,
                 population=args.px_population, jobs=args.jobs, band=tuple(args.os_band))
    os_dir = out.parent / VARIANT_NAMES["oneshot"]
    if variant in ("single-path", "weighted"):
        strategy = "gradient"
        cfg = get_strategy(strategy).make_config(**common, epochs=args.search_epochs, batch=args.search_batch,
                                                 train_len=args.search_train_len, val_len=args.val_len,
                                                 warmup_epochs=args.search_warmup_epochs, minutes=args.search_minutes,
                                                 single_path=variant == "single-path")
    elif variant == "oneshot":
        strategy = "oneshot"
        cfg = get_strategy(strategy).make_config(**common, epochs=args.os_epochs, batch=args.search_batch, train_len=args.search_train_len,
                                                 score_len=args.os_score_len, band=tuple(args.os_band), evaluations=args.os_evaluations,
                                                 minutes=args.os_minutes)
    elif variant == "proxy":
        strategy = "proxy"
        cfg = get_strategy(strategy).make_config(**common, **proxy, seed_archs=seeds)
    elif variant == "default":  # what `rtseg search` gives a user: the strategy's own settings, but for --default-set
        strategy = "default"
        reuse = _reusable_supernet(out, target)
        # --default-set wins over this script's own values (the search's seed included)
        cfg = get_strategy(strategy).make_config(**{**common, "jobs": args.jobs, **reuse, **_default_settings(args.default_set)})
    else:  # oneshot+proxy: a finished one-shot variant's supernet is reused, not trained again
        strategy = variant
        reuse = {"supernet": str(os_dir)} if (os_dir / "supernet.pt").exists() else {}
        cfg = get_strategy(strategy).make_config(**common, **proxy, **oneshot, **reuse, seed_archs=seeds)
    run_strategy(strategy, cfg, out, resume=(out / "config.json").exists(), reporter=RichReporter())
    return load_arch(out / "arch.json")


def _default_settings(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` settings of the default strategy (its config's field names), values read as JSON
    where they parse (numbers, true/false, null), else as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: --default-set takes KEY=VALUE pairs, got {pair!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out[key.replace("-", "_")] = tuple(parsed) if isinstance(parsed, list) else parsed
    return out


def _reusable_supernet(out: Path, target: float) -> dict[str, str]:
    """An earlier budget's default-search supernet whose span of budgets holds this one (its record's
    ``span_ms``), so that every budget after the first costs the evolutions and proxy trainings only, as
    ``rtseg search --supernet`` does for a user."""
    for rec_path in sorted(out.parent.parent.glob(f"T*/{VARIANT_NAMES['default']}/oneshot/supernet.json")):
        if rec_path.parent.parent == out:
            continue
        span = json.loads(rec_path.read_text()).get("span_ms") or [0.0, 0.0]
        if span[0] <= 0.9 * target and target <= span[1] and (rec_path.parent / "supernet.pt").exists():
            return {"supernet": str(rec_path.parent)}
    return {}


def _candidates(lut: Any, lut_path: str, target: float, out: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """name -> {"arch", "kind", extra record} for one budget (resumable: written to candidates.json)."""
    path = out / "candidates.json"
    cands = {k: {**v, "arch": load_arch(v["arch"])} for k, v in json.loads(path.read_text()).items()} if path.exists() else {}
    h, w = lut.input_hw
    for variant in args.variants:
        name = VARIANT_NAMES[variant]
        if name in cands and not (out / name / "arch.json").exists():
            continue  # the search's folder is gone: its record stays as it was
        # a search folder's own arch is the candidate, so a search picked again (rtseg search --resume) is
        # trained and measured as it is now
        arch = _search(lut, lut_path, target, out / name, args, variant)
        summary = json.loads((out / name / "search.json").read_text())
        cands[name] = {"arch": arch, "kind": "searched", "search": {k: summary.get(k) for k in (
            "predicted_latency_ms", "predicted_over_target", "measured_latency_ms", "measured_over_target", "epochs_run",
            "discrete", "arch_steps", "budget_fit_changes", "wall_time_s", "reference_speed_ratio", "strategy", "oneshot_score",
            "evaluations", "supernet_steps", "proxy_score", "seeds", "origin", "stages", "measured_over_predicted") if k in summary}}
        atomic_write_json(path, {k: {**v, "arch": v["arch"].to_dict()} for k, v in cands.items()})
    space = lut.search_space()
    rng = random.Random(args.seed)
    found = 0
    while found < args.randoms:  # the same seeded draws every time: a re-run finds the same archs
        a = space.sample(rng, num_classes=lut.num_classes)
        if 0.85 * target <= lut.predict(a, h, w).total_ms <= target:
            a.name = f"random{found}"
            cands.setdefault(a.name, {"arch": a, "kind": "random"})
            found += 1
    atomic_write_json(path, {k: {**v, "arch": v["arch"].to_dict()} for k, v in cands.items()})
    return {k: v for k, v in cands.items() if v["kind"] != "searched" or k in {VARIANT_NAMES[x] for x in args.variants}}


def _families(lut: Any, target: float, out: Path, names: list[str] | None = None, repick: bool = False) -> dict[str, dict[str, Any]]:
    """The member of each hand-designed family whose latency measured on the deploy runtime is nearest
    T (kept in families.json; none when this rtseg has no families). ``repick``: measured again now,
    where the first pick ran on a busier machine than the final rounds (a member that changes is
    trained again: :func:`_clear_stale_run`)."""
    try:
        from rtseg.spaces.families import family_names, pick_nearest
    except ImportError:
        return {}

    path = out / "families.json"
    wanted = names or family_names()
    saved = json.loads(path.read_text()) if path.exists() else {}
    if repick:  # only the families asked for are picked again; the others' picks stay
        saved = {k: v for k, v in saved.items() if k not in wanted}
    h, w = lut.input_hw
    measure = _measure(lut)
    for fam in wanted:
        if fam not in saved:
            pick = pick_nearest(fam, target, measure, input_hw=(h, w), num_classes=lut.num_classes)
            saved[fam] = {"arch": pick.arch().to_dict(), "kind": "family",
                          "pick": {k: v for k, v in pick.to_dict().items() if k not in ("arch", "tried")}}
            atomic_write_json(path, saved)
    return {k: {**v, "arch": load_arch(v["arch"])} for k, v in saved.items() if not names or k in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lut", required=True, help="LUT measured on the deploy runtime (rtseg profile-ops)")
    ap.add_argument("--fractions", type=float, nargs="+", default=None,
                    help="budgets as fractions of baseline1's LUT-predicted latency, rounded to the microsecond (ssr LUTs; default 0.3 0.5 0.8)")
    ap.add_argument("--targets-ms", type=float, nargs="+", default=None, help="budgets in ms instead (any space's LUT)")
    ap.add_argument("--default-set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="settings of the default strategy's config that differ from its defaults (e.g. evaluations=8)")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per candidate")
    ap.add_argument("--randoms", type=int, default=5)
    ap.add_argument("--variants", nargs="+", default=["default", "single-path"], choices=list(VARIANT_NAMES))
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs per run (the same for every candidate)")
    ap.add_argument("--train-len", type=int, default=400, help="training images per epoch")
    ap.add_argument("--val-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--search-minutes", type=float, default=10.0)
    ap.add_argument("--search-epochs", type=int, default=12)
    ap.add_argument("--search-train-len", type=int, default=256)
    ap.add_argument("--search-batch", type=int, default=4)
    ap.add_argument("--search-warmup-epochs", type=int, default=2)
    ap.add_argument("--os-epochs", type=int, default=20, help="one-shot: supernet training epochs")
    ap.add_argument("--os-minutes", type=float, default=10.0, help="one-shot: limit on supernet training")
    ap.add_argument("--os-evaluations", type=int, default=96, help="one-shot: archs scored by the evolution")
    ap.add_argument("--os-score-len", type=int, default=48, help="one-shot: held-out training scenes that score an arch")
    ap.add_argument("--os-band", type=float, nargs=2, default=[0.9, 1.0], help="one-shot: latency band, fractions of T")
    ap.add_argument("--px-epochs", type=int, default=2, help="proxy: epochs of each proxy training")
    ap.add_argument("--px-train-len", type=int, default=240, help="proxy: scenes per proxy epoch")
    ap.add_argument("--px-evaluations", type=int, default=14, help="proxy: archs trained by the evolution")
    ap.add_argument("--px-population", type=int, default=6, help="proxy: population size")
    ap.add_argument("--px-seed-families", nargs="*", default=["baseline1"],
                    help="proxy: start the population from these families' picks at T (families inside the space)")
    ap.add_argument("--hy-finalists", type=int, default=3, help="oneshot+proxy: one-shot finalists that seed the proxy search")
    ap.add_argument("--only-candidates", action="store_true", help="search and pick the candidates, train nothing yet")
    ap.add_argument("--families", nargs="+", default=["baseline1", "erfnet", "lraspp_mbv3", "stdc", "ddrnet"], help="hand-designed families to compare (rtseg arch families lists them)")
    ap.add_argument("--no-families", action="store_true", help="leave the hand-designed families out")
    ap.add_argument("--repick-families", action="store_true",
                    help="pick the families' members again, measured now (after a first pick on a busier machine)")
    ap.add_argument("--jobs", type=int, default=2, help="training runs at a time (one CPU thread each)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random archs")
    ap.add_argument("--out", default="runs/pareto")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)  # every stage on one thread: an OpenMP pool on a shared machine stalls on busy cores
    from rtseg.latency.lut import load_lut
    from rtseg.latency.validate import measure_archs_like_lut

    t_start = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lut = load_lut(args.lut)
    lut.check_device()
    args.input_hw = list(lut.input_hw)
    h, w = lut.input_hw
    base = load_arch("baseline1").with_(num_classes=lut.num_classes)
    base_ms = lut.predict(base, h, w).total_ms if base.space == lut.space else None
    if base_ms is not None:
        print(f"baseline1 predicted {base_ms:.3f} ms on {lut.backend} ({lut.provenance['device'].get('name')}, {lut.threads} thread(s))",
              file=sys.stderr)
    if args.targets_ms and args.fractions:
        raise SystemExit("error: give budgets either as --fractions or as --targets-ms")
    if args.targets_ms is None and base_ms is None:
        raise SystemExit(f"error: a {lut.space} LUT cannot price baseline1: give the budgets as --targets-ms")
    # T in the LUT's terms (what the search and the random draws see), to the microsecond
    plan = ([(f"T{t:g}ms", round(t, 3), None) for t in args.targets_ms] if args.targets_ms else
            [(f"T{f:g}", round(f * base_ms, 3), f) for f in (args.fractions or [0.3, 0.5, 0.8])])

    budgets: list[dict[str, Any]] = []
    for label, target, f in plan:
        bdir = out / label
        print(f"budget {label}: T = {target:.3f} ms: choosing candidates", file=sys.stderr)
        # the family picks first: the proxy variants start their population from some of them
        seeded = [fam for fam in args.px_seed_families if {"proxy", "oneshot+proxy"} & set(args.variants)]
        picked = [*([] if args.no_families else args.families), *seeded]
        fams = _families(lut, target, bdir, list(dict.fromkeys(picked)), args.repick_families) if picked else {}
        cands = _candidates(lut, args.lut, target, bdir, args)
        if not args.no_families:
            cands.update({k: v for k, v in fams.items() if k in args.families})
        budgets.append({"label": label, "fraction": f, "target_ms": target, "dir": bdir, "cands": cands})
    if args.only_candidates:
        return

    jobs = []
    for b in budgets:
        for name, c in b["cands"].items():
            for s in range(args.seeds):
                jobs.append({"run": str(b["dir"] / "train" / f"{name}-s{s}"), "arch": c["arch"].to_dict(), "seed": s,
                             "epochs": args.epochs, "batch": args.batch, "train_len": args.train_len, "val_len": args.val_len,
                             "data": args.data, "input_hw": [h, w], "key": (b["label"], name, s)})
    for job in jobs:
        _clear_stale_run(Path(job["run"]), job["arch"])
    print(f"training {len(jobs)} runs, {args.jobs} at a time", file=sys.stderr)
    results: dict[tuple, dict[str, Any]] = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for job, summary in zip(jobs, pool.map(train_one_thread, [{k: v for k, v in j.items() if k != "key"} for j in jobs])):
            results[job["key"]] = summary
            print(f"  {job['run']}: mIoU {final_miou(summary):.4f}", file=sys.stderr)

    # latency of every candidate of every budget, measured together after training
    names = [(b["label"], n) for b in budgets for n in b["cands"]] + [("", "baseline1")]
    archs = [c["arch"] for b in budgets for c in b["cands"].values()] + [base]
    measured = _latencies(names, archs, out / "latency.json", lambda a: measure_archs_like_lut(lut, a))
    lat = {(r["budget"], r["name"]): r["measured_ms"] for r in measured}

    record = summarize(budgets, results, lat, args, lut, base_ms, time.monotonic() - t_start)
    atomic_write_json(out / "pareto.json", record)
    atomic_write_text(out / "pareto.md", to_markdown(record))
    plot(record, out / "pareto.png")
    for b in budgets:
        _plot_picks(b, lut, out)
    print(to_markdown(record))


def _plot_picks(budget: dict[str, Any], lut: Any, out: Path) -> None:
    """``OUT/<budget>/layers.png``: per layer, the searched nets beside baseline1 scaled to the same T
    (resolution, width, dilation and LUT latency), where the LUT can price them."""
    from rtseg.search.plots import plot_layers

    shown = {n: c["arch"] for n, c in budget["cands"].items() if (c["kind"] == "searched" or n == "baseline1")
             and c["arch"].space == lut.space}
    if len(shown) > 1:
        plot_layers(shown, lut, budget["dir"] / "layers.png", title=f"T = {budget['target_ms']:.3f} ms ({budget['label']}): "
                    "where each net spends the budget, per layer (LUT-predicted ms)")


def summarize(budgets: list[dict[str, Any]], results: dict[tuple, dict[str, Any]], lat: dict[tuple, float],
              args: argparse.Namespace, lut: Any, base_ms: float, wall_s: float) -> dict[str, Any]:
    from rtseg.flops import count_params, sum_op_flops
    from rtseg.spaces import build_model, get_space

    h, w = lut.input_hw
    base_measured = lat[("", "baseline1")]
    out_budgets = []
    for b in budgets:
        target = b["target_ms"]
        rows = []
        for name, c in b["cands"].items():
            mious = [final_miou(results[(b["label"], name, s)]) for s in range(args.seeds)]
            arch = c["arch"]
            rows.append({
                "name": name, "kind": c["kind"], "miou_mean": statistics.mean(mious),
                "miou_std": statistics.stdev(mious) if len(mious) > 1 else 0.0, "mious": mious,
                "measured_ms": lat[(b["label"], name)], "measured_over_target": lat[(b["label"], name)] / target,
                "predicted_ms": lut.predict(arch, h, w).total_ms if arch.space == lut.space else None,
                "macs_g": sum_op_flops(get_space(arch.space).signatures(arch, h, w)) / 1e9,
                "params": count_params(build_model(arch)),
                "train_wall_s": [_run_seconds(results[(b["label"], name, s)]) for s in range(args.seeds)],
                **{k: c[k] for k in ("search", "pick") if k in c},
                "arch": arch.to_dict(),
            })
        searched = [r for r in rows if r["kind"] == "searched"]
        randoms = [r for r in rows if r["kind"] == "random"]
        fams = [r for r in rows if r["kind"] == "family"]
        pooled = math.sqrt(statistics.mean([r["miou_std"] ** 2 for r in searched + randoms])) if args.seeds > 1 else 0.0
        best_random = max(randoms, key=lambda r: r["miou_mean"])
        verdicts = []
        for s in searched:
            beats_random = s["miou_mean"] >= best_random["miou_mean"] + pooled
            beats_fams = all(s["miou_mean"] > f["miou_mean"] for f in fams)
            verdicts.append({"searched": s["name"], "beats_best_random_by_pooled_std": beats_random, "beats_every_family": beats_fams,
                             "margin_over_best_random": s["miou_mean"] - best_random["miou_mean"],
                             "margin_over_best_family": s["miou_mean"] - max((f["miou_mean"] for f in fams), default=float("nan"))})
        out_budgets.append({"label": b["label"], "fraction": b["fraction"], "target_ms": target,
                            "rows": rows, "pooled_std": pooled,
                            "best_random": best_random["name"], "verdicts": verdicts})
    from rtseg.backends.device import device_name

    return {
        "format": "rtseg.pareto", "schema_version": 1,
        "lut": str(args.lut), "space": lut.space, "space_options": dict(lut.space_options),
        "runtime": {"backend": lut.backend, "precision": lut.precision, "device": device_name("cpu")
                    if lut.device_kind == "cpu" else lut.device.get("name"), "threads": lut.threads, "clock": lut.clock},
        "input": [h, w], "data": args.data, "baseline1_measured_ms": base_measured, "baseline1_predicted_ms": base_ms,
        "recipe": {"epochs": args.epochs, "train_len": args.train_len, "batch": args.batch, "val_len": args.val_len,
                   "seeds": args.seeds, "optimizer": "adam (rtseg train defaults)", "metric": "last validation mIoU"},
        "search": {"variants": args.variants, "minutes": args.search_minutes, "epochs": args.search_epochs,
                   "train_len": args.search_train_len, "batch": args.search_batch, "warmup_epochs": args.search_warmup_epochs,
                   "default_set": _default_settings(args.default_set)},
        "budgets": out_budgets, "wall_time_s": wall_s,
    }


def _run_seconds(summary: dict[str, Any]) -> float | None:
    """A training run's wall time: this call's, or the run's own record where an earlier call trained it."""
    return summary.get("wall_s") or summary.get("elapsed_s")


def budget_cost(budget: dict[str, Any]) -> str:
    """What a budget cost, from its rows: each search's own wall time and the training runs' time summed
    (runs go ``--jobs`` at a time, so their wall time is that sum over the jobs, about), whichever
    invocation of the script ran them."""
    searches = [f"{r['name']} {r['search']['wall_time_s'] / 60:.1f} min" for r in budget["rows"]
                if r["kind"] == "searched" and (r.get("search") or {}).get("wall_time_s") is not None]
    train_s = sum(s or 0.0 for r in budget["rows"] for s in r.get("train_wall_s") or [])
    runs = sum(len(r.get("train_wall_s") or []) for r in budget["rows"])
    return f"Searches: {', '.join(searches) or 'none'}; {runs} training runs: {train_s / 60:.0f} min summed over runs."


def to_markdown(rec: dict[str, Any]) -> str:
    rt = rec["runtime"]
    lines = [f"# Pareto experiment: {rt['backend']} {rt['precision']} on {rt['device']} ({rt['threads']} thread(s)), "
             f"{rec['input'][0]}x{rec['input'][1]}, data {rec['data']}", "",
             (f"T = fraction x baseline1's LUT-predicted latency ({rec['baseline1_predicted_ms']:.3f} ms; "
              if rec["baseline1_predicted_ms"] is not None else "T in the LUT's predicted ms (baseline1 ")
             + f"measured in the final rounds: {rec['baseline1_measured_ms']:.3f} ms); recipe: {rec['recipe']['epochs']} epochs x "
             f"{rec['recipe']['train_len']} images, batch {rec['recipe']['batch']}, {rec['recipe']['seeds']} seeds; "
             f"this invocation's wall time {rec['wall_time_s'] / 60:.0f} min (a resumed run skips what finished).", ""]
    for b in rec["budgets"]:
        of = f" ({b['fraction']:g} x baseline1)" if b.get("fraction") else ""
        lines += [f"## T = {b['target_ms']:.3f} ms{of}", "", budget_cost(b), "",
                  "| candidate | kind | mIoU mean ± std (%) | measured ms (of T) | predicted ms | multiply-adds (G) | params |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in sorted(b["rows"], key=lambda r: -r["miou_mean"]):
            pred = f"{r['predicted_ms']:.3f}" if r["predicted_ms"] is not None else "-"
            lines.append(f"| {r['name']} | {r['kind']} | {100 * r['miou_mean']:.1f} ± {100 * r['miou_std']:.1f} | "
                         f"{r['measured_ms']:.3f} ({r['measured_over_target']:.0%}) | {pred} | {r['macs_g']:.3f} | {r['params']:,} |")
        lines.append("")
        for v in b["verdicts"]:
            lines.append(f"{v['searched']}: {100 * v['margin_over_best_random']:+.1f} points over the best random ({b['best_random']}), "
                         f"pooled std {100 * b['pooled_std']:.1f}: {'beats' if v['beats_best_random_by_pooled_std'] else 'does not beat'} "
                         f"it by one pooled std; {100 * v['margin_over_best_family']:+.1f} over the best family: "
                         f"{'beats' if v['beats_every_family'] else 'does not beat'} every family.")
        lines.append("")
    return "\n".join(lines)


def plot(rec: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rtseg.io import atomic_save

    colors = {"searched": "tab:red", "random": "tab:gray", "family": "tab:blue"}
    markers = {"searched": "*", "random": "o", "family": "s"}
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    searched_colors = dict(zip(sorted({r["name"] for b in rec["budgets"] for r in b["rows"] if r["kind"] == "searched"}),
                               ["tab:red", "tab:orange", "tab:purple", "tab:green", "tab:brown"] * 3))
    searched_colors.update(zip(sorted({r["name"] for b in rec["budgets"] for r in b["rows"] if r["kind"] == "family"}),
                               ["tab:blue", "tab:cyan", "navy", "tab:olive", "tab:pink", "tab:green", "black"] * 3))
    seen = set()
    for b in rec["budgets"]:
        ax.axvline(b["target_ms"], color="k", lw=0.8, ls="--")
        for r in b["rows"]:
            label = r["name"] if r["kind"] != "random" else "random"
            color = searched_colors.get(r["name"], colors[r["kind"]])
            ax.errorbar(r["measured_ms"], 100 * r["miou_mean"], yerr=100 * r["miou_std"], fmt=markers[r["kind"]],
                        color=color, ms=10 if r["kind"] == "searched" else 6, capsize=3, label=label if label not in seen else None)
            seen.add(label)
    rt = rec["runtime"]
    ax.set_xlabel(f"measured latency (ms), {rt['backend']} on {rt['device']}, {rt['threads']} thread(s)")
    ax.set_ylabel(f"val mIoU (%), mean ± std over {rec['recipe']['seeds']} seeds")
    ax.set_title("searched vs random vs hand-designed at T = " + ", ".join(f"{b['target_ms']:.2f}" for b in rec["budgets"])
                 + f" ms (dashed), {rec['input'][0]}x{rec['input'][1]}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


if __name__ == "__main__":
    main()
