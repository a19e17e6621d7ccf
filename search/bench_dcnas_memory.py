"""Benchmark: DCNAS supernet memory and step time with and without path / partial-channel sampling.

    python search/bench_dcnas_memory.py                      # F=8, L=3, batch 2, 128x256, CPU
    python search/bench_dcnas_memory.py --width 16 --layers 4 --steps 5 --out runs/dcnas-mem.json
    python search/bench_dcnas_memory.py --device cuda        # on a GPU: torch.cuda peak allocation

The DCNAS paper (sec. 3.3) claims that partial-channel sampling at ratio 1/4 saves about 75% of the memory and
makes the search about 4x faster. This measures the four combinations of path sampling (on/off) and
partial-channel ratio (1 or 4) on the same supernet and input, one fresh Python process per
combination so nothing one run allocates is seen by the next.

What is measured per combination (training mode, cross-entropy forward + backward, the search's
weight step without the optimizer update):

* peak memory of a step. CPU: the process's peak resident set size (``getrusage`` ru_maxrss) minus its
  resident size just before the measured steps; the child runs with ``MALLOC_MMAP_THRESHOLD_=131072``
  so glibc maps every buffer of 128 KiB or more on its own and returns it on free, which makes RSS
  follow the live tensors. A warm-up step at a tiny input first allocates the gradients and
  initializes the kernels, so the figure is activations and temporaries. CUDA:
  ``torch.cuda.max_memory_allocated`` over the measured steps minus the allocation before them.
* step time: median wall-clock time of ``--steps`` forward + backward passes (synchronized on CUDA),
  and on CPU also the median CPU time the process used per step (all its threads), which other
  processes competing for the cores disturb much less than the wall clock.

The four combinations run in ``--rounds`` interleaved rounds; the table reports the median peak and
the fastest round's step time (on a shared machine the fastest round is the least disturbed one), and
the load average before and after. Path sampling draws different paths every step, so its peak is
the maximum over the measured steps of a round.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rtseg.backends.device import device_kind

COMBINATIONS = [(False, 1), (True, 1), (False, 4), (True, 4)]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One combination, in this (fresh) process."""
    import torch
    import torch.nn.functional as F

    from rtseg.spaces.dcnas import DCNASConfig, DCNASSpace

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    dev = torch.device(spec["device"])
    sn = DCNASSpace(DCNASConfig(width=spec["width"], layers=spec["layers"])).supernet(spec["classes"]).to(dev)
    sn.path_sampling, sn.partial_channel = spec["path_sampling"], spec["partial_channel"]
    sn.train()
    b, (h, w) = spec["batch"], spec["input"]

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        sn.zero_grad(set_to_none=False)
        F.cross_entropy(sn(x), y).backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # warm-up at a tiny input: gradients allocated, kernels initialized
    step(torch.randn(1, 3, 64, 64, device=dev), torch.randint(0, spec["classes"], (1, 64, 64), device=dev))
    x = torch.randn(b, 3, h, w, device=dev)
    y = torch.randint(0, spec["classes"], (b, h, w), device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    times, cpu = [], []
    for _ in range(spec["steps"]):
        t0, c0 = time.perf_counter(), time.process_time()
        step(x, y)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {
        "path_sampling": spec["path_sampling"],
        "partial_channel": spec["partial_channel"],
        "peak_mb": peak / 2**20,
        "step_s": statistics.median(times),
        "step_times_s": times,
        "cpu_s": statistics.median(cpu),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from rich.progress import Progress

    from rtseg.io import parse_hw

    h, w = parse_hw(args.input, 32)
    runs: dict[tuple[bool, int], list[dict[str, Any]]] = {c: [] for c in COMBINATIONS}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    load_before = os.getloadavg()
    with Progress(transient=True, console=_console()) as prog:
        task = prog.add_task("dcnas memory/time", total=len(COMBINATIONS) * args.rounds)
        for _ in range(args.rounds):  # interleaved rounds spread bursts of machine load over all combinations
            for ps, pc in COMBINATIONS:
                spec = {"path_sampling": ps, "partial_channel": pc, "width": args.width, "layers": args.layers, "batch": args.batch,
                        "input": [h, w], "steps": args.steps, "threads": args.threads, "device": args.device, "classes": args.classes}
                proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    raise SystemExit(f"worker failed for path_sampling={ps}, partial_channel={pc}:\n{proc.stderr[-2000:]}")
                runs[(ps, pc)].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                prog.advance(task)
    rows = []
    for (ps, pc), rs in runs.items():
        rows.append({"path_sampling": ps, "partial_channel": pc,
                     "peak_mb": statistics.median(r["peak_mb"] for r in rs),
                     "step_s": min(r["step_s"] for r in rs),  # least disturbed round
                     "cpu_s": min(r["cpu_s"] for r in rs),
                     "peak_mb_rounds": [r["peak_mb"] for r in rs], "step_s_rounds": [r["step_s"] for r in rs],
                     "cpu_s_rounds": [r["cpu_s"] for r in rs]})
    base = rows[0]
    for r in rows:
        r["memory_saved"] = 1.0 - r["peak_mb"] / base["peak_mb"]
        r["speedup"] = base["step_s"] / r["step_s"]
        r["cpu_speedup"] = base["cpu_s"] / r["cpu_s"]
    return {"machine": _machine(args.device), "threads": args.threads, "device": args.device,
            "config": {"width": args.width, "layers": args.layers}, "batch": args.batch, "input": [h, w],
            "steps": args.steps, "rounds": args.rounds, "memory_method": _method(args.device),
            "time_method": "per round the median of the steps (wall clock, and CPU time of the process, all threads); "
                           "reported: the fastest round",
            "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()), "rows": rows}


def _method(device: str) -> str:
    if device_kind(device) == "cuda":
        return "torch.cuda.max_memory_allocated over the measured steps minus the allocation before them"
    return "peak RSS (getrusage) minus RSS before the measured steps, fresh process, MALLOC_MMAP_THRESHOLD_=131072"


def _machine(device: str) -> str:
    if device_kind(device) == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return "unknown CPU"


def _console():
    from rtseg.cli._app import console

    return console


def print_table(result: dict[str, Any]) -> None:
    from rich.table import Table

    c = result["config"]
    t = Table(title=f"DCNAS supernet F={c['width']} L={c['layers']}, batch {result['batch']} x {result['input'][0]}x{result['input'][1]}, "
                    f"{result['machine']}, {result['threads']} threads")
    for col in ("path sampling", "channels", "peak MB", "saved", "step s", "speedup", "CPU s", "CPU speedup"):
        t.add_column(col, justify="right")
    for r in result["rows"]:
        t.add_row("on" if r["path_sampling"] else "off", f"1/{r['partial_channel']}", f"{r['peak_mb']:.1f}",
                  f"{100 * r['memory_saved']:.0f}%", f"{r['step_s']:.3f}", f"{r['speedup']:.2f}x", f"{r['cpu_s']:.3f}",
                  f"{r['cpu_speedup']:.2f}x")
    _console().print(t)
    _console().print(f"memory: {result['memory_method']} (median of {result['rounds']} rounds)")
    _console().print(f"time: {result['time_method']}; load average before/after: "
                     f"{result['loadavg_before'][0]:.1f} / {result['loadavg_after'][0]:.1f} on {os.cpu_count()} cores")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=8, help="F, the width at 1/4 (default 8, the space default)")
    ap.add_argument("--layers", type=int, default=3, help="L, the number of fusion layers (default 3)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--input", default="128x256")
    ap.add_argument("--steps", type=int, default=5, help="measured steps per combination")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the four combinations")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--classes", type=int, default=19)
    ap.add_argument("--out", type=Path, default=None, help="also write the results JSON here")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object on stdout")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    result = run(args)
    print_table(result)
    if args.out:
        from rtseg.io import atomic_write_json

        atomic_write_json(args.out, result)
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
