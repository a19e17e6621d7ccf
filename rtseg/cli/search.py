"""``rtseg search``: latency-constrained architecture search with LUT costs and a FLOPs budget.

The command is a thin layer over :mod:`rtseg.search.strategies`: it turns the flags the user gave into
fields of the chosen strategy's config (a flag left out takes the dataclass's default) and refuses a
flag the strategy has no field for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from rtseg.cli import params as P
from rtseg.cli._app import app, console, print_json
from rtseg.errors import RtsegError
from rtseg.io import parse_hw



@app.command("search")
def search(
    lut: Path = typer.Option(..., help="Latency LUT from `rtseg profile-ops` (same space and input size).", callback=P.input_file),
    latency_ms: float = typer.Option(..., "--latency-ms", help="Latency budget T in ms (on the LUT's device and backend).", callback=P.POSITIVE),
    strategy: str = typer.Option("default", help="default (gradient search, one-shot finalists and the hand-designed net scaled to T, decided by short training runs, finalists measured), gradient, oneshot, proxy or oneshot+proxy; see search/README.md for what each measured."),
    space: str = typer.Option("ssr", help="Search space."),
    space_opt: Optional[list[str]] = typer.Option(None, "--space-opt", help=P.SPACE_OPT_HELP + " Must match the LUT's."),
    flops_g: Optional[float] = typer.Option(None, "--flops-g", help="FLOPs budget in G multiply-adds: no arch over it is sampled, seeded or picked.", callback=P.POSITIVE),
    data: str = typer.Option("synthetic", help="Dataset: synthetic, cityscapes:PATH or camvid:PATH (archs are chosen on held-out training images, never on the validation split)."),
    input: str = typer.Option("128x256", "--input", help="Search input size HxW (must match the LUT).", callback=P.hw_size),
    selection_fraction: Optional[float] = typer.Option(None, "--selection-fraction", help="File datasets: the fraction of training images held out to choose archs on [default: 0.2].", callback=P.number(0, 1, lo_open=True)),
    epochs: Optional[int] = typer.Option(None, help="gradient: search epochs; oneshot: supernet epochs; proxy, default: epochs of each proxy training [default: the strategy's].", callback=P.COUNT),
    batch: Optional[int] = typer.Option(None, help="Batch size [default: the strategy's].", callback=P.BATCH),
    train_len: Optional[int] = typer.Option(None, help="Training images per run (gradient: of the search; oneshot: of the supernet; proxy, default: of each proxy training) [default: the strategy's].", callback=P.at_least(2)),
    val_len: Optional[int] = typer.Option(None, help="gradient, proxy, default: held-out training images that score [default: the strategy's].", callback=P.COUNT),
    reg: Optional[str] = typer.Option(None, help="gradient: architecture regularizer ssr, entropy, none, dcnas [default: the space's paper's]."),
    no_shrink: bool = typer.Option(False, "--no-shrink", help="gradient: disable hierarchical progressive shrinking."),
    single_path: bool = typer.Option(False, "--single-path", help="gradient: one sampled path per step (ssr)."),
    warmup_epochs: Optional[int] = typer.Option(None, help="gradient: epochs that train only the weights before arch updates.", callback=P.NON_NEGATIVE),
    arch_lr: Optional[float] = typer.Option(None, help="gradient: Adam learning rate of the architecture parameters.", callback=P.POSITIVE),
    w_lr: Optional[float] = typer.Option(None, help="gradient, oneshot: Adam learning rate of the supernet weights.", callback=P.POSITIVE),
    minutes: Optional[float] = typer.Option(None, help="gradient, oneshot: wall-clock limit in minutes.", callback=P.POSITIVE),
    gradient_minutes: Optional[float] = typer.Option(None, help="default: wall-clock limit of the gradient stage.", callback=P.POSITIVE),
    oneshot_minutes: Optional[float] = typer.Option(None, help="default: wall-clock limit of the one-shot supernet training.", callback=P.POSITIVE),
    seed_arch: Optional[list[str]] = typer.Option(None, "--seed-arch", help="proxy, default: an arch (JSON file or built-in name) the evolution starts from; repeatable."),
    evaluations: Optional[int] = typer.Option(None, help="oneshot, proxy, default: archs the evolution scores [default: the strategy's; the default strategy's: 14, or 40 where no one-shot stage runs].", callback=P.COUNT),
    band_low: Optional[float] = typer.Option(None, "--band-low", help="oneshot, proxy, default: every evolved arch's latency lies in [band-low x T, T] [default: 0.9].", callback=P.number(0, 1, lo_open=True)),
    supernet: Optional[str] = typer.Option(None, "--supernet", help="oneshot, default: reuse the supernet trained by an earlier search (the folder holding its supernet.pt: RUN/oneshot for the default strategy) for a new budget or another device's LUT."),
    jobs: Optional[int] = typer.Option(None, help="proxy, default: proxy trainings at a time, one CPU thread each.", callback=P.COUNT),
    final_round: Optional[int] = typer.Option(None, "--final-round", help="proxy, default: best archs trained again, longer, before the pick (0: none) [default: 3; the default strategy's: 5 where no one-shot stage runs].", callback=P.NON_NEGATIVE),
    final_factor: Optional[int] = typer.Option(None, "--final-factor", help="proxy, default: how many times longer the final round's runs are [default: 3].", callback=P.COUNT),
    final_seeds: Optional[int] = typer.Option(None, "--final-seeds", help="proxy, default: seeds each final-round arch is trained from; the pick is by their mean [default: 3].", callback=P.COUNT),
    workers: Optional[int] = typer.Option(None, help="Data loader workers.", callback=P.WORKERS),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N.", callback=P.device),
    seed: int = typer.Option(0, help="Seed of weights, data order and sampling.", callback=P.SEED),
    resume: bool = typer.Option(False, help="Continue an interrupted search in --out (refused if what is searched differs)."),
    overwrite: bool = typer.Option(False, help="Replace a finished or foreign search in --out (its search files only)."),
    force: bool = typer.Option(False, help="Use a LUT whose provenance does not match."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip measuring on the LUT's runtime (finalists and the result)."),
    out: Path = typer.Option(Path("runs/search"), help="Run folder.", callback=P.output_dir),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Search the space for the most accurate net whose measured latency fits the budget."""
    from rtseg import distributed as dist
    from rtseg.reporting import reporter_for
    from rtseg.search import get_strategy, run_strategy
    from rtseg.spaces import get_space, parse_space_options

    from rtseg.search.strategies import FIELD_FLAGS

    field_of = {flag.lstrip("-").replace("-", "_"): name for name, flag in FIELD_FLAGS.items()}
    chosen = get_strategy(strategy)
    options = parse_space_options(space_opt)
    given: dict[str, Any] = {
        "space": space, "lut": str(lut), "latency_ms": latency_ms, "data": data, "device": device, "seed": seed,
        "input_hw": parse_hw(input, get_space(space, options).size_divisor),
        "space_opt": options or None, "flops_g": flops_g, "selection_fraction": selection_fraction, "epochs": epochs,
        "batch": batch, "train_len": train_len, "val_len": val_len, "reg": reg, "no_shrink": False if no_shrink else None,
        "single_path": True if single_path else None, "warmup_epochs": warmup_epochs, "arch_lr": arch_lr, "w_lr": w_lr,
        "minutes": minutes, "gradient_minutes": gradient_minutes, "oneshot_minutes": oneshot_minutes,
        "seed_arch": list(seed_arch) if seed_arch else None, "evaluations": evaluations,
        "band_low": (band_low, 1.0) if band_low is not None else None, "supernet": supernet,
        "jobs": jobs, "final_round": final_round, "final_factor": final_factor, "final_seeds": final_seeds, "workers": workers, "force": True if force else None, "no_verify": False if no_verify else None,
    }
    values = {field_of.get(flag, flag): v for flag, v in given.items() if v is not None}
    unknown = [f"--{flag.replace('_', '-')}" for flag, v in given.items()
               if v is not None and field_of.get(flag, flag) not in chosen.field_names()]
    if unknown:
        raise RtsegError(f"--strategy {strategy} has no {', '.join(unknown)}; drop {'it' if len(unknown) == 1 else 'them'} "
                         "or choose a strategy that has it (rtseg search --help says which)")
    cfg = chosen.make_config(**values)
    main = True
    try:
        result = run_strategy(strategy, cfg, out, resume=resume, reporter=reporter_for(not json_out, console), overwrite=overwrite)
        main = dist.is_main()
    finally:
        dist.cleanup()
    if not main:  # under torchrun only rank 0 reports
        return
    s = result.summary
    if json_out:
        print_json(s)
        return
    console.print(summary_table(s, f"search result ({s['strategy']}): {out / 'arch.json'}"))


def summary_table(s: dict[str, Any], title: str) -> Table:
    """The rows every search summary has (budgets, the LUT's prediction, the measured latency), then
    the rows of the strategy that ran."""
    t = Table(title=title)
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("budget T", f"{s['target_latency_ms']:.3f} ms")
    t.add_row("predicted latency (LUT)", f"{s['predicted_latency_ms']:.3f} ms ({s['predicted_over_target']:.1%} of T)")
    if s.get("measured_latency_ms") is not None:
        t.add_row(f"measured latency ({s['measured_backend']})", f"{s['measured_latency_ms']:.3f} ms ({s['measured_over_target']:.1%} of T)")
    elif s.get("measured_note"):
        t.add_row("measured latency", s["measured_note"])
    if s.get("measured_over_predicted") not in (None, 1.0):
        t.add_row("measured / predicted (calibration)", f"{s['measured_over_predicted']:.3f}")
    t.add_row("FLOPs", f"{s['flops'] / 1e9:.3f} G multiply-adds" + (f" (budget {s['flops_budget'] / 1e9:.3f} G)" if s.get("flops_budget") else ""))
    for name, stage in (s.get("stages") or {}).items():
        t.add_row(f"stage {name}", _stage_line(stage))
    if "proxy_score" in s or "oneshot_score" in s:
        score = s.get("proxy_score", s.get("oneshot_score"))
        t.add_row("score of the chosen arch", f"{score:.3f} mIoU ({'proxy training' if 'proxy_score' in s else 'one-shot weights'}), origin {s.get('origin')}")
        t.add_row("archs scored / generations", f"{s['evaluations']} / {s['generations']}")
    if "epochs_run" in s and "discrete" in s:
        t.add_row("epochs run / to discrete", f"{s['epochs_run']} / {s['epochs_to_discrete'] or '-'}")
        t.add_row("budget-fit changes after decoding", str(len(s["budget_fit_changes"])))
    if (s.get("final_round") or {}).get("archs"):
        seeds = len((s["final_round"].get("recipe") or {}).get("train_seeds") or [1])
        t.add_row("final round (proxy -> final score)", "; ".join(f"{a['origin']} {a['score']:.3f} -> {a['final_score']:.3f}"
                                                                  for a in s["final_round"]["archs"])
                  + (f" (means over {seeds} seeds)" if seeds > 1 else ""))
    if s.get("fit_walks"):
        t.add_row("fit to T as measured", "; ".join(f"{', '.join(w['changed'])}: {w['measured_latency_ms']:.2f} ms"
                                                    + (" (kept)" if w.get("kept") else "") for w in s["fit_walks"] if "changed" in w)
                  or s["fit_walks"][0].get("note", ""))
    if s.get("finalists"):
        t.add_row("finalists measured (score, ms)", "; ".join(f"{f['score']:.3f} {f['measured_latency_ms']:.2f}" for f in s["finalists"]))
    t.add_row("wall time", f"{s['wall_time_s']:.0f} s")
    if s.get("world_size", 1) > 1:
        t.add_row("processes", f"{s['world_size']} ({'ranks agree' if s.get('ranks_agree') else 'RANKS DIFFER'})")
    return t


def _stage_line(stage: Any) -> str:
    if not isinstance(stage, dict):
        return str(stage)
    if not stage.get("ran"):
        return "skipped" + (f": {stage['note']}" if stage.get("note") else "")
    parts = []
    for key, fmt in (("scale", "measured/predicted {:.3f}"), ("predicted_latency_ms", "{:.3f} ms predicted"),
                     ("oneshot_score", "best one-shot score {:.3f}"), ("wall_time_s", "{:.0f} s")):
        if isinstance(stage.get(key), (int, float)):
            parts.append(fmt.format(stage[key]))
    if stage.get("seeds"):
        parts.append("seeds: " + ", ".join(stage["seeds"]))
    if stage.get("family"):
        parts.append(f"{stage['family']} {stage.get('knobs')}")
    return "; ".join(parts) or "ran"
