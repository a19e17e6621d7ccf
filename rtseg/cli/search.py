"""``rtseg search``: latency-constrained architecture search with LUT costs and a FLOPs budget."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rtseg.cli import params as P
from rtseg.cli._app import app, console, print_json
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
    out: Path = typer.Option(Path("runs/search"), help="Run folder.", callback=P.output_dir),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Search the space for the most accurate net whose measured-cost latency fits the budget."""
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
    t = Table(title=f"search result: {out / 'arch.json'}")
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
