"""``rtseg bench``: the same latency protocol for every model and backend, side by side.

Protocol (one place, :func:`rtseg.backends.measure.measure_networks`, one model at a time): load the
runner, ``warmup`` untimed calls, then ``iters`` calls timed one by one over 4 rotating random inputs
(:meth:`rtseg.backends.runner.Runner.samples`); report mean, median, p90, p99 (ms) and FPS = batch x
1000 / median. What a number covers depends on the backend and is
written beside it (``timed``): on CPU, torch and ONNX Runtime are timed numpy-in/numpy-out (host
copies are free there); on a GPU, torch and TensorRT time the network with the input already on the
device, ONNX Runtime's CUDA provider includes its host copies. The measurement record names the
device, versions, threads, load average and protocol, so a figure can be reproduced or discounted.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rtseg.backends import backends_for, default_backend, get_backend, normalize_backend
from rtseg.backends.device import cpu_model, device_name, device_kind
from rtseg.backends.measure import measure_networks
from rtseg.backends.timing import TimingStats
from rtseg.errors import RtsegError
from rtseg.io import check_batch_memory
from rtseg.runtime import load_runner
from rtseg.runtime.source import model_kind, resolve_model


@dataclass
class BenchRow:
    model: str
    backend: str
    backend_version: str
    precision: str
    device: str
    batch: int
    input_hw: tuple[int, int]
    stats: TimingStats
    timed: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.batch * 1000.0 / self.stats.median_ms if self.stats.median_ms > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        s = self.stats
        return {
            "model": self.model, "backend": self.backend, "backend_version": self.backend_version,
            "precision": self.precision, "device": self.device, "batch": self.batch,
            "input": f"{self.input_hw[0]}x{self.input_hw[1]}",
            "mean_ms": s.mean_ms, "median_ms": s.median_ms, "p90_ms": s.p90_ms, "p99_ms": s.p99_ms,
            "min_ms": s.min_ms, "n": s.n, "fps": self.fps, "timed": self.timed, **self.extra,
        }


@dataclass
class BenchReport:
    rows: list[BenchRow]
    record: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"results": [r.to_dict() for r in self.rows], "record": self.record, "skipped": self.skipped}


def _installed_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def plan(models: Sequence[str], backends: Sequence[str] | None) -> tuple[list[tuple[str, str, str]], list[dict[str, str]]]:
    """(model, kind, backend) pairs to run, and the pairs skipped as impossible (engine on torch...)."""
    if not models:
        raise RtsegError("give at least one MODEL (a checkpoint, arch JSON, built-in name, ONNX or engine)")
    todo, skipped = [], []
    wanted = [normalize_backend(b) for b in backends] if backends else None
    for m in models:
        kind = model_kind(m)
        if kind in ("checkpoint", "arch", "onnx", "engine") and not Path(m).exists():
            raise RtsegError(f"model file not found: {m} (check the path)")
        for b in wanted or ([default_backend(kind)] if kind in ("onnx", "engine") else ["torch", "onnxruntime"]):
            if b in backends_for(kind):
                todo.append((m, kind, b))
            else:
                skipped.append({"model": m, "backend": b, "reason": f"a {kind} file cannot run on {b}"})
    if not todo:
        raise RtsegError("no model can run on the chosen backends: " + "; ".join(f"{s['model']} on {s['backend']}: {s['reason']}" for s in skipped))
    return todo, skipped


def run_bench(
    models: Sequence[str],
    backends: Sequence[str] | None = None,
    input_hw: tuple[int, int] = (512, 1024),
    batch: int = 1,
    warmup: int = 10,
    iters: int = 50,
    device: str = "cpu",
    precision: str = "fp32",
    cuda_graphs: bool = False,
    threads: int | None = None,
    on_start: Callable[[str, str], None] | None = None,
    on_row: Callable[[BenchRow], None] | None = None,
    lut: str | Path | None = None,
    rounds: int = 1,
    clock: str | None = None,
) -> BenchReport:
    """Measure every (model, backend) pair under the same protocol; see the module docstring. With
    ``lut``, each row whose net the LUT can price also gets the LUT's prediction (``lut_predicted_ms``),
    and the threads default to the LUT's: the figure a search aimed at, beside the one measured.
    ``rounds`` > 1 times every pair in that many interleaved rounds (the ``iters`` calls split over
    them), as a search compares archs, instead of one pair after another. ``clock`` is ``wall`` (what a
    caller waits) or ``thread`` (the calling thread's CPU time: one-thread CPU runs on a shared machine,
    as a LUT timed that way); default: the LUT's clock with ``lut``, else ``wall``."""
    if warmup < 0 or iters < 1 or rounds < 1 or iters < rounds:
        raise RtsegError(f"warmup must be >= 0, iters >= 1, rounds >= 1 and iters >= rounds, got {warmup}, {iters} and {rounds}")
    check_batch_memory(batch, *input_hw)
    todo, skipped = plan(models, backends)
    predicted: dict[str, float] = {}
    if lut is not None:
        from rtseg.latency.lut import load_lut

        table = load_lut(lut)
        predicted = _lut_predictions(table, [m for m, _, _ in todo], input_hw)
        threads = table.threads if threads is None else threads
        clock = clock or table.clock
    clock = clock or "wall"
    if clock not in ("wall", "thread"):
        raise RtsegError(f"unknown clock {clock!r}; choose wall or thread")
    if clock == "thread":  # the calling thread's CPU time covers a run only when the run stays on that thread
        if device_kind(device) == "cuda" or threads not in (None, 1) or any(b == "tensorrt" for _, _, b in todo):
            raise RtsegError("the thread clock times one-thread CPU runs only: pass --threads 1 on a CPU, or --clock wall")
        threads = 1
    for b in sorted({b for _, _, b in todo}):  # a missing package is one error before any model is loaded
        get_backend(b).require()
    cuda = device_kind(device) == "cuda"
    if threads is None and not cuda:
        threads = os.cpu_count() or 1
    opened: dict[int, Any] = {}

    def opener(i: int, model: str, kind: str, backend: str) -> Callable[[], Any]:
        def open_runner() -> Any:
            if on_start:
                on_start(model, backend)
            opened[i] = load_runner(model, backend=backend, device=device if backend != "tensorrt" else (device if cuda else "cuda"),
                                    precision=precision, input_hw=input_hw if kind not in ("engine",) else None, batch=batch,
                                    cuda_graphs=cuda_graphs and backend == "torch", threads=threads)
            opened[i].clock = clock
            return opened[i]
        return open_runner

    openers = [opener(i, *pair) for i, pair in enumerate(todo)]
    if rounds > 1:  # every pair open at once, timed in shuffled interleaved rounds: a burst of load falls on all alike
        timings = measure_networks(openers, warmup=warmup, repeats=iters, rounds=rounds)
        stats = [timings.stats(i) for i in range(len(todo))]
    else:  # one pair at a time, each open only while it is timed
        stats = [measure_networks([op], warmup=warmup, repeats=iters, rounds=1).stats() for op in openers]
    rows: list[BenchRow] = []
    for i, ((model, _, backend), st) in enumerate(zip(todo, stats)):
        info = opened[i].info
        extra = {k: info.extra[k] for k in ("threads", "cuda_graphs", "providers", "memory", "deploy_note") if info.extra.get(k) is not None}
        extra["load_1m"] = (_loadavg() or [None])[0]
        if model in predicted:
            extra["lut_predicted_ms"] = predicted[model]
        rows.append(BenchRow(info.extra.get("model", model), backend, info.backend_version, info.precision, info.device,
                             info.batch, info.input_hw, st,
                             str(info.extra.get("timed", "")) + (", read on the thread's CPU-time clock" if clock == "thread" else ""), extra))
        if on_row:
            on_row(rows[-1])
    _name_files(rows, [m for m, _, _ in todo])
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        ort_version = None
    from rtseg.version import __version__

    record = {
        # the runners name the device they ran on (TensorRT asks CUDA itself; device_name would ask torch)
        "device": rows[0].device if len({r.device for r in rows}) == 1 else device_name(device),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": _installed_version("torch"),  # read without importing torch (a deploy machine has none)
        "onnxruntime": ort_version,
        "rtseg": __version__,
        "precision": precision,
        "batch": batch,
        "input": f"{input_hw[0]}x{input_hw[1]}",
        "warmup": warmup,
        "iters": iters,
        "load_average": _loadavg(),
        "rounds": rounds,
        "clock": clock,
        "protocol": ("per backend: warm-up calls, then calls timed one by one (rtseg.backends.measure.measure_networks) over 4 "
                     "rotating random inputs; median/p90/p99 of the per-call times; FPS = batch x 1000 / median"
                     + (f"; every pair in {rounds} shuffled interleaved rounds" if rounds > 1 else "; one pair after another")),
        "weights": "as given (untrained archs use seeded random weights; latency does not depend on weight values)",
    }
    peers = _peer_sources(sorted({m for m, _, _ in todo}))
    if peers:
        record["peers"] = peers  # hand-designed nets in the comparison, with their source
    return BenchReport(rows, record, skipped)


def _lut_predictions(table: Any, models: Sequence[str], input_hw: tuple[int, int]) -> dict[str, float]:
    """The prediction of LUT ``table`` for each model it can price: nets of its space
    (archs, built-in names, checkpoints) at its input size, with its class count. Pricing needs the
    spaces (and torch)."""
    if tuple(table.input_hw) != tuple(input_hw):
        raise RtsegError(f"the LUT {table.name} was measured at {table.input_hw[0]}x{table.input_hw[1]}, the bench runs at "
                         f"{input_hw[0]}x{input_hw[1]}: pass --input {table.input_hw[0]}x{table.input_hw[1]}")
    out = {}
    for m in dict.fromkeys(models):
        arch = resolve_model(m).arch
        if arch is not None and arch.space == table.space:
            try:
                out[m] = table.predict(arch.with_(num_classes=table.num_classes), *input_hw).total_ms
            except RtsegError:  # an operator the LUT never measured: no prediction for this row
                continue
    return out


def _name_files(rows: list[BenchRow], models: Sequence[str]) -> None:
    """Files of one model side by side (``model.onnx``, ``model.fp16.onnx``, ``model-int8.onnx``) share
    its name: add the file name to tell the rows apart."""
    names = [r.model for r in rows]
    for r, m in zip(rows, models):
        if names.count(r.model) > 1 and model_kind(m) in ("onnx", "engine"):
            r.model = f"{r.model} ({Path(m).name})"


def _peer_sources(models: Sequence[str]) -> dict[str, str]:
    out = {}
    for m in models:
        try:
            src = resolve_model(m)
        except RtsegError:  # pragma: no cover - already resolved once by the runner
            continue
        if src.arch is not None and src.arch.space == "peer":
            from rtseg.spaces.peers import PEER_SOURCES

            out[src.name] = str(src.arch.meta.get("source") or PEER_SOURCES.get(src.arch.genotype["model"], ""))
    return out
