"""``rtseg search``: latency-constrained architecture search with LUT costs and a FLOPs budget."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

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
    space: str = typer.Option("ssr", help="Search space."),
    space_opt: Optional[list[str]] = typer.Option(None, "--space-opt", help="Size option of the space, KEY=VALUE, repeatable (cas: width, nodes, ms_nodes, ms_width, layout, stem; dcnas: width, layers, stem, head, max_inputs). Recorded in the LUT and the arch. Must match the LUT's."),
    flops_g: Optional[float] = typer.Option(None, "--flops-g", help="FLOPs budget in G multiply-adds (optional).", callback=P.POSITIVE),
    data: str = typer.Option("synthetic", help="Dataset: synthetic, cityscapes:PATH or camvid:PATH."),
    input: str = typer.Option("128x256", "--input", help="Search input size HxW (must match the LUT).", callback=P.hw_size),
    epochs: int = typer.Option(10, help="Epoch limit (the search stops earlier once the arch is discrete).", callback=P.COUNT),
    batch: int = typer.Option(4, help="Batch size per split and process.", callback=P.COUNT),
    reg: Optional[str] = typer.Option(None, help="Architecture regularizer: ssr (SSR loss, eq. 9), entropy, none, dcnas (DCNAS supplement sec. 1.4) [default: the space's own paper's: ssr for ssr, none for cas, dcnas for dcnas]."),
    no_shrink: bool = typer.Option(False, "--no-shrink", help="Disable hierarchical progressive shrinking."),
    single_path: bool = typer.Option(False, "--single-path", help="Train one sampled path per step instead of the weighted sum of all candidates (ssr; about ten times the steps per minute)."),
    warmup_epochs: int = typer.Option(1, help="Epochs that train only the weights before arch updates.", callback=P.NON_NEGATIVE),
    arch_lr: float = typer.Option(5e-2, help="Adam learning rate of the architecture parameters.", callback=P.POSITIVE),
    w_lr: float = typer.Option(2e-3, help="Adam learning rate of the supernet weights (poly decay).", callback=P.POSITIVE),
    train_len: Optional[int] = typer.Option(None, help="synthetic: training scenes per epoch, split in two halves [default: 256]; cityscapes/camvid: search on the first N training images only [default: all].", callback=P.at_least(2)),
    val_len: Optional[int] = typer.Option(None, help="synthetic: validation scenes [default: 32]; cityscapes/camvid: the first N validation images only [default: all].", callback=P.COUNT),
    minutes: Optional[float] = typer.Option(None, help="Wall-clock limit in minutes; the search decodes what it has at the limit.", callback=P.POSITIVE),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, help="Seed of weights, data order and sampling.", callback=P.SEED),
    workers: int = typer.Option(0, help="Data loader workers.", callback=P.NON_NEGATIVE),
    resume: bool = typer.Option(False, help="Continue an interrupted search in --out (refused if any setting but --epochs, --minutes, --workers, --device, --force or --no-verify differs)."),
    force: bool = typer.Option(False, help="Use a LUT whose provenance does not match."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip measuring the decoded net end to end."),
    strategy: str = typer.Option("gradient", help="How archs are judged: gradient (the differentiable search), oneshot (a supernet trained on in-band paths, then evolution scored by its weights), proxy (evolution scored by short training runs), oneshot+proxy (the proxy evolution started from the one-shot finalists). ssr only; see search/README.md for what each measured."),
    seed_arch: Optional[list[str]] = typer.Option(None, "--seed-arch", help="proxy, oneshot+proxy: an arch (JSON file or built-in name) the evolution starts from, e.g. `rtseg arch scale baseline1 --latency-ms T`; repeatable."),
    evaluations: Optional[int] = typer.Option(None, help="oneshot, proxy: archs the evolution scores [default: 96 for oneshot, 14 for proxy].", callback=P.COUNT),
    band_low: float = typer.Option(0.9, "--band-low", help="oneshot, proxy: every evolved arch's predicted latency lies in [band-low x T, T].", callback=P.number(0, 1, lo_open=True)),
    jobs: int = typer.Option(1, help="proxy: proxy trainings at a time, one CPU thread each.", callback=P.COUNT),
    out: Path = typer.Option(Path("runs/search"), help="Run folder.", callback=P.output_dir),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Search the space for the most accurate net whose measured-cost latency fits the budget."""
    if strategy != "gradient":
        _evolution_search(strategy=strategy, space=space, space_opt=space_opt, flops_g=flops_g, reg=reg, no_shrink=no_shrink,
                          single_path=single_path, lut=lut, latency_ms=latency_ms, data=data, input=input, epochs=epochs,
                          batch=batch, w_lr=w_lr, train_len=train_len, minutes=minutes, device=device, seed=seed, workers=workers,
                          resume=resume, no_verify=no_verify, seed_arch=seed_arch or [], evaluations=evaluations,
                          band_low=band_low, jobs=jobs, out=out, json_out=json_out)
        return
    if seed_arch or evaluations is not None or jobs != 1:
        raise RtsegError("--seed-arch, --evaluations and --jobs belong to the evolution strategies (--strategy oneshot, proxy, oneshot+proxy)")
    from rtseg.reporting import reporter_for
    from rtseg.search import SearchConfig, run_search
    from rtseg.spaces import get_space, parse_space_options

    options = parse_space_options(space_opt)
    hw = parse_hw(input, get_space(space, options).size_divisor)
    cfg = SearchConfig(space=space, space_options=options, lut=str(lut), latency_ms=latency_ms, flops_g=flops_g, data=data, input_hw=hw,
                       epochs=epochs, batch=batch, reg=reg, shrink=not no_shrink, single_path=single_path, warmup_epochs=warmup_epochs,
                       arch_lr=arch_lr, w_lr=w_lr, train_len=train_len, val_len=val_len, minutes=minutes, device=device,
                       seed=seed, workers=workers, force=force, verify_latency=not no_verify)
    from rtseg import distributed as dist

    main = True
    try:
        result = run_search(cfg, out, resume=resume, reporter=reporter_for(not json_out, console))
        main = dist.is_main()
    finally:
        dist.cleanup()
    if not main:  # under torchrun only rank 0 reports
        return
    s = result.summary
    if json_out:
        print_json(s)
        return
    t = _budget_table(s, f"search result: {out / 'arch.json'}")
    im = s["images"]
    t.add_row("images (train / val)", " / ".join(f"{im[k]}" + (f" of {im[k + '_available']}" if k + "_available" in im else "") for k in ("train", "val"))
              + f" ({s['data']})")
    t.add_row("regularizer / shrinking", f"{s['reg']} / {'on' if s['shrink'] else 'off'}")
    t.add_row("FLOPs", f"{s['flops'] / 1e9:.3f} G multiply-adds" + (f" (budget {s['flops_budget'] / 1e9:.3f} G)" if s["flops_budget"] else ""))
    t.add_row("epochs run / to discrete", f"{s['epochs_run']} / {s['epochs_to_discrete'] or '-'}")
    t.add_row("budget-fit changes after decoding", str(len(s["budget_fit_changes"])))
    t.add_row("wall time", f"{s['wall_time_s']:.0f} s")
    if s["world_size"] > 1:
        t.add_row("processes", f"{s['world_size']} ({'replicas identical' if s['ranks_agree'] else 'REPLICAS DIFFER'})")
    console.print(t)


def _budget_table(s: dict, title: str) -> Table:
    """The rows every search summary has: the budget, the LUT's prediction and the measured latency."""
    t = Table(title=title)
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("budget T", f"{s['target_latency_ms']:.3f} ms")
    t.add_row("predicted latency (LUT)", f"{s['predicted_latency_ms']:.3f} ms ({s['predicted_over_target']:.1%} of T)")
    if s.get("measured_latency_ms") is not None:
        ref = s.get("reference_speed_ratio")
        t.add_row(f"measured latency ({s['measured_backend']})", f"{s['measured_latency_ms']:.3f} ms ({s['measured_over_target']:.1%} of T)"
                  + (f"; reference op runs x{ref:.2f} its profiling time" if ref else ""))
    elif s.get("measured_note"):
        t.add_row("measured latency", s["measured_note"])
    return t


#: Search strategies besides the differentiable one, and the library function each runs.
EVOLUTION_STRATEGIES = ("oneshot", "proxy", "oneshot+proxy")


def _evolution_search(*, strategy: str, space: str, space_opt: Optional[list[str]], flops_g: Optional[float], reg: Optional[str],
                      no_shrink: bool, single_path: bool, lut: Path, latency_ms: float, data: str, input: str, epochs: int,
                      batch: int, w_lr: float, train_len: Optional[int], minutes: Optional[float], device: str, seed: int,
                      workers: int, resume: bool, no_verify: bool, seed_arch: list[str], evaluations: Optional[int],
                      band_low: float, jobs: int, out: Path, json_out: bool) -> None:
    """``rtseg search --strategy oneshot|proxy|oneshot+proxy``: the evolution searches of
    :mod:`rtseg.search.oneshot` and :mod:`rtseg.search.proxy`."""
    from rtseg.reporting import reporter_for
    from rtseg.search.oneshot import OneShotConfig, run_oneshot
    from rtseg.search.proxy import ProxyConfig, run_oneshot_then_proxy, run_proxy
    from rtseg.spaces import get_space

    if strategy not in EVOLUTION_STRATEGIES:
        raise RtsegError(f"unknown --strategy {strategy!r}: choose gradient, {', '.join(EVOLUTION_STRATEGIES)}")
    unused = [flag for flag, used in (("--flops-g", flops_g is not None), ("--reg", reg is not None), ("--no-shrink", no_shrink),
                                      ("--single-path", single_path), ("--space-opt", bool(space_opt))) if used]
    if space != "ssr" or unused:
        raise RtsegError(f"--strategy {strategy} searches the ssr space by LUT latency alone; drop "
                         + (", ".join(unused) if unused else f"--space {space}") + " or use --strategy gradient")
    if seed_arch and strategy == "oneshot":
        raise RtsegError("--seed-arch starts a proxy evolution: use --strategy proxy or oneshot+proxy")
    hw = parse_hw(input, get_space(space).size_divisor)
    band = (band_low, 1.0)
    reporter = reporter_for(not json_out, console)
    ocfg = OneShotConfig(lut=str(lut), latency_ms=latency_ms, data=data, input_hw=hw, band=band, epochs=epochs, batch=batch,
                         train_len=train_len or 256, w_lr=w_lr, evaluations=evaluations or 96, minutes=minutes, seed=seed,
                         workers=workers, device=device, verify_latency=not no_verify)
    pcfg = ProxyConfig(lut=str(lut), latency_ms=latency_ms, data=data, input_hw=hw, band=band, evaluations=evaluations or 14,
                       seed_archs=list(seed_arch), seed=seed, jobs=jobs, device=device, verify_latency=not no_verify)
    if strategy == "oneshot":
        s = run_oneshot(ocfg, out, resume=resume, reporter=reporter).summary
    elif strategy == "proxy":
        s = run_proxy(pcfg, out, resume=resume, reporter=reporter).summary
    else:
        s = run_oneshot_then_proxy(ocfg, pcfg, out, resume=resume, reporter=reporter).summary
    if json_out:
        print_json(s)
        return
    t = _budget_table(s, f"search result ({s['strategy']}): {out / 'arch.json'}")
    score = s.get("proxy_score", s.get("oneshot_score"))
    t.add_row("score of the chosen arch", f"{score:.3f} mIoU ({'proxy training' if 'proxy_score' in s else 'one-shot weights'})")
    t.add_row("archs scored / generations", f"{s['evaluations']} / {s['generations']}")
    t.add_row("FLOPs", f"{s['flops'] / 1e9:.3f} G multiply-adds")
    t.add_row("wall time", f"{s['wall_time_s']:.0f} s")
    console.print(t)
