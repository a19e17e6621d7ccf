"""``rtseg lut validate``: how well a LUT predicts whole networks, measured end to end.

N random archs of the LUT's space are drawn (seeded), each one's latency is predicted from the LUT
(operators plus the network constant) and measured end to end on the LUT's backend, device,
precision, batch, input size and thread count. Reported: per-arch predicted vs measured, the mean
absolute percentage error, the share within +-10% (nn-Meter's figure of merit) and Kendall's tau
(does the LUT rank archs the way the device does, which is what a search needs).

End-to-end timings are taken in interleaved rounds (:func:`rtseg.backends.measure.measure_networks`):
every arch is timed a few repeats per round, in a shuffled order, and the samples of all rounds are
pooled into one median. A burst of load from another process then spreads over all archs instead of
inflating the one measured during it.

With a LUT profiled beside a speed reference (:mod:`rtseg.latency.speed`), every round of every
arch is bracketed by reference blocks and each sample is brought to the LUT's typical speed by the
reference beside its own round before the median is taken. Prediction and measurement are then
compared, and the archs ranked (tau), at one speed. Scaling each sample by its own round rather
than each arch by one factor follows the machine's drift from round to round: on the shared dev
CPU it cut the spread of three validations of the same 16 archs from 3.7% to 2.2% per arch and
raised the tau between two of them from 0.72 to 0.90.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from rtseg.backends.device import keeps_torch_threads, steady_allocator
from rtseg.backends.measure import LatencyMeasure, NetworkTimings, measure_networks
from rtseg.backends.timing import TimingStats
from rtseg.errors import RtsegError
from rtseg.io import atomic_save, check_not_input
from rtseg.latency.lut import LUT, load_lut
from rtseg.latency.speed import SpeedReference, measure_probe, speed_factor
from rtseg.ops import OpSignature
from rtseg.reporting import Reporter, RichReporter, SilentReporter

DEFAULT_ROUNDS = 10
DEFAULT_REPEATS = 100


@dataclass
class ArchRow:
    index: int
    name: str
    n_ops: int
    predicted_ms: float
    measured_ms: float
    measured_p10_ms: float
    measured_p90_ms: float
    n: int
    error: float  # (predicted - measured) / measured, the same as at the LUT's speed
    speed: float  # measured / measured_at_base: how much slower (> 1) the machine ran beside this arch than in the LUT
    predicted_at_base_ms: float  # the LUT's prediction at the profiling run's typical speed (predicted_ms / speed)
    measured_at_base_ms: float  # the median of this arch's samples, each brought to that speed by the reference beside it
    measured_at_base_p10_ms: float
    measured_at_base_p90_ms: float
    error_uncorrected: float  # (predicted_at_base - measured) / measured

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ValidationResult:
    lut: str
    samples: int
    seed: int
    rows: list[ArchRow]
    mape: float
    within_10pct: float
    within_5pct: float
    kendall_tau: float
    mean_error: float
    speed_corrected: bool = False  # the headline figures are the speed-corrected ones
    uncorrected: dict[str, float] = field(default_factory=dict)  # mape, within_10pct, within_5pct, kendall_tau, mean_error without it
    corrected: dict[str, float] = field(default_factory=dict)  # the same with it (empty without a speed reference)
    headline: str = "raw"  # which of the two the headline figures are: "corrected" or "raw" (see choose_headline)
    round_agreement: dict[str, dict[str, float]] = field(default_factory=dict)  # per variant: tau and spread between halves

    def row_error(self, row: "ArchRow") -> float:
        """A row's error in the headline's terms."""
        return row.error if self.headline == "corrected" else row.error_uncorrected
    settings: dict[str, Any] = field(default_factory=dict)
    archs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"lut": self.lut, "samples": self.samples, "seed": self.seed, "mape": self.mape,
                "within_10pct": self.within_10pct, "within_5pct": self.within_5pct, "kendall_tau": self.kendall_tau,
                "mean_error": self.mean_error, "speed_corrected": self.speed_corrected, "headline": self.headline,
                "uncorrected": self.uncorrected, "corrected": self.corrected, "round_agreement": self.round_agreement,
                "settings": self.settings, "rows": [r.to_dict() for r in self.rows],
                "archs": self.archs}


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either ranking handled); nan for fewer than two points or a constant list."""
    n = len(x)
    if n != len(y):
        raise ValueError("kendall_tau needs two lists of equal length")
    conc = disc = tx = ty = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif (dx > 0) == (dy > 0):
                conc += 1
            else:
                disc += 1
    denom = math.sqrt((conc + disc + tx) * (conc + disc + ty))
    return (conc - disc) / denom if denom else float("nan")


def choose_headline(agreement: dict[str, dict[str, float]]) -> str:
    """Which figures a validation reports first: the speed-corrected ones unless the raw timings'
    rounds agree with each other better than the corrected ones do.

    The rule: split the interleaved rounds into even and odd halves, rank the archs by each half and
    take Kendall's tau between the two rankings (:meth:`ArchTimings.round_agreement`); the variant
    with the higher tau is the better-supported measurement, a tie goes to the smaller gap between
    the halves, and a remaining tie to the correction. The correction exists to divide out the
    machine's drift between rounds; when its reference timings are noisier than the drift they
    remove (a quiet machine, or a burst that hit the reference and not the arch), the corrected halves
    agree less than the raw ones and the raw figures are reported first. Both are always reported.
    """
    c, r = agreement.get("corrected"), agreement.get("raw")
    if not c:
        return "raw"
    if not r:
        return "corrected"
    key = lambda a: (_or(a["tau"], -2.0), -_or(a["spread"], math.inf))  # noqa: E731
    return "corrected" if key(c) >= key(r) else "raw"


def _or(x: float, default: float) -> float:
    return default if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _figures(rows: Sequence[ArchRow], errors: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """MAPE, shares within 10% and 5%, Kendall's tau (predictions at the LUT's speed against
    ``measured``) and the mean signed error of one variant of a validation."""
    errs = [abs(e) for e in errors]
    return {"mape": sum(errs) / len(errs), "within_10pct": sum(e <= 0.10 for e in errs) / len(errs),
            "within_5pct": sum(e <= 0.05 for e in errs) / len(errs),
            "kendall_tau": kendall_tau([r.predicted_at_base_ms for r in rows], list(measured)),
            "mean_error": sum(errors) / len(errors)}


@dataclass
class ArchTimings(NetworkTimings):
    """End-to-end samples (ms) per arch (:func:`rtseg.backends.measure.measure_networks`) and, with a
    speed reference, the reference's time (ms) beside each sample (the median of the blocks
    bracketing the round it was taken in); what a validation reads from them."""

    def round_agreement(self, base_ms: float | None) -> dict[str, float]:
        """How well the rounds agree with each other: every arch's median over the even rounds against
        its median over the odd rounds, at ``base_ms``'s speed (raw samples for None). ``tau`` is
        Kendall's tau between the two halves' rankings, ``spread`` the mean relative gap between an
        arch's two half-medians. A correction that removes the machine's drift raises the agreement;
        one that adds the noise of its own reference timings lowers it."""
        if self.sample_rounds is None:
            return {"tau": float("nan"), "spread": float("nan")}
        halves: tuple[list[float], list[float]] = ([], [])
        for values, rounds in zip(self.at_speed(base_ms), self.sample_rounds):
            even = [v for v, r in zip(values, rounds) if r % 2 == 0]
            odd = [v for v, r in zip(values, rounds) if r % 2 == 1]
            if not even or not odd:
                return {"tau": float("nan"), "spread": float("nan")}
            halves[0].append(statistics.median(even))
            halves[1].append(statistics.median(odd))
        gaps = [abs(a - b) / ((a + b) / 2) for a, b in zip(*halves)]
        return {"tau": kendall_tau(*halves) if len(gaps) > 1 else float("nan"), "spread": sum(gaps) / len(gaps)}

    @property
    def ref_ms(self) -> list[float | None]:
        """The reference's median time beside each arch (None without a reference)."""
        if self.sample_refs is None:
            return [None for _ in self.samples]
        return [statistics.median(r) if r else None for r in self.sample_refs]

    def at_speed(self, base_ms: float | None) -> list[list[float]]:
        """Every sample brought to the speed at which the reference runs in ``base_ms``, each by the
        reference beside its own round: the machine's drift from one round to the next divides out
        sample by sample, which halves the round-to-round noise a per-arch factor leaves (measured:
        2.2% instead of 3.7% between three validations of the same archs on a shared CPU)."""
        if self.sample_refs is None or not base_ms:
            return [list(s) for s in self.samples]
        return [[v * speed_factor(r, base_ms) for v, r in zip(s, refs)] for s, refs in zip(self.samples, self.sample_refs)]

    def medians_at(self, base_ms: float | None) -> list[float]:
        """Each arch's median at the speed of ``base_ms`` (the raw medians without a reference)."""
        return [statistics.median(s) for s in self.at_speed(base_ms)]


def measure_arch_latency(arch: Any, h: int, w: int, backend: str = "torch", device: str = "cpu", precision: str = "fp32",
                         batch: int = 1, warmup: int = 10, repeats: int = 50, threads: int | None = None,
                         clock: str = "wall") -> TimingStats:
    """End-to-end latency of the network of ``arch`` at ``h x w`` on a backend (the LUT protocol:
    warm-up, synchronization, per-call clock, median). ``threads`` sets torch's CPU thread count
    for the measurement (pass the LUT's ``provenance['threads']`` and ``clock`` to compare with its
    prediction); None keeps the current thread count."""
    return LatencyMeasure((h, w), backend, device, threads, precision, warmup, repeats, clock, batch).stats(arch)


def like_lut(table: LUT) -> LatencyMeasure:
    """The LUT's runtime: its backend, device, threads, precision, batch, input size and clock."""
    return LatencyMeasure(table.input_hw, table.backend, table.device_arg, table.threads, table.precision, clock=table.clock,
                          batch=table.batch)


def measure_archs_like_lut(table: LUT, archs: Sequence[Any], warmup: int = 10, repeats: int = DEFAULT_REPEATS,
                           rounds: int = DEFAULT_ROUNDS, seed: int = 0) -> list[float]:
    """Median end-to-end latency (ms) of each arch on the LUT's backend, device, threads and clock,
    measured interleaved as ``lut validate`` does, so archs compared with each other see the same
    machine (timed one after another on a shared CPU, each would see a different one)."""
    return measure_networks(archs, like_lut(table), warmup=warmup, repeats=repeats, rounds=rounds, seed=seed).medians


def measure_archs_interleaved(table: LUT, timer: Any, archs: Sequence[Any], warmup: int, repeats: int, rounds: int, seed: int,
                              advance: Any = None, speed: SpeedReference | None = None) -> ArchTimings:
    """Every arch's samples on the LUT's runtime with ``timer`` (one of :func:`like_lut`'s, shared with
    the speed reference ``speed``), as :class:`ArchTimings`."""
    t = measure_networks(archs, like_lut(table), warmup=warmup, repeats=repeats, rounds=rounds, seed=seed, timer=timer,
                         speed=speed, advance=advance)
    return ArchTimings(t.samples, t.sample_refs, t.sample_rounds)


def lut_speed_reference(table: LUT, timer: Any) -> SpeedReference | None:
    """The LUT's speed reference on ``timer`` (None for a LUT profiled without one)."""
    ref = table.provenance.get("speed_reference")
    if not isinstance(ref, dict) or not ref.get("op") or table.speed_base_ms is None:
        return None
    return SpeedReference(timer, OpSignature.from_key(ref["op"]), int(ref.get("block") or 3))


@keeps_torch_threads
def reference_speed_ratio(table: LUT, timer: Any = None) -> float | None:
    """How much slower (> 1) or faster (< 1) the LUT's reference operator runs now than while the LUT
    was profiled: on a shared machine, the context a latency measured now needs (None when the LUT
    has no probes). ``timer`` defaults to one with the LUT's backend, device, threads and clock."""
    probe = table.probe_summary()
    base = table.speed_base_ms or (probe["median_ms"] if probe else None)  # the speed the entries are charged at
    if not probe or not base or base <= 0:
        return None
    if timer is None:
        timer = like_lut(table).timer()
    return measure_probe(timer, OpSignature.from_key(probe["key"])) / base


@keeps_torch_threads
def _sample_archs(table: LUT, space: Any, samples: int, seed: int, head: str) -> list[Any]:
    """``samples`` archs drawn uniformly from the LUT's space, named by seed and index."""
    rng = random.Random(seed)
    archs = []
    for i in range(samples):
        a = space.sample(rng, num_classes=table.num_classes, head=head)
        a.name = f"{table.space}-validate-{seed}-{i}"
        archs.append(a)
    return archs


def _rows(archs: Sequence[Any], preds: Sequence[Any], timings: Any, speed_base_ms: float | None) -> list[ArchRow]:
    """One row per arch: its prediction against its timings, raw and at the LUT's reference speed."""
    rows = []
    for i, (a, pred, s, s_base) in enumerate(zip(archs, preds, timings.samples, timings.at_speed(speed_base_ms))):
        st, sb = TimingStats.from_samples(s), TimingStats.from_samples(s_base)
        sp = st.median_ms / sb.median_ms
        rows.append(ArchRow(i, a.name or str(i), len(pred.per_op), pred.total_ms * sp, st.median_ms, st.p10_ms, st.p90_ms, st.n,
                            (pred.total_ms - sb.median_ms) / sb.median_ms, sp, pred.total_ms, sb.median_ms, sb.p10_ms, sb.p90_ms,
                            (pred.total_ms - st.median_ms) / st.median_ms))
    return rows


def validate_lut(lut: LUT | str | Path, samples: int = 16, seed: int = 0, warmup: int = 10, repeats: int = DEFAULT_REPEATS,
                 rounds: int = DEFAULT_ROUNDS, force: bool = False, progress: bool = True, plot: str | Path | None = None,
                 head: str | None = None, console: Any = None, archs: Sequence[Any] | None = None,
                 speed_correction: bool = True, reporter: Reporter | None = None) -> ValidationResult:
    """Predict and measure ``samples`` random archs of the LUT's space; see the module docstring.

    ``repeats`` is the total number of timed runs per arch, split over ``rounds`` interleaved rounds.
    ``archs`` replaces the random sample with given archs (a LUT restricted to their operators).
    With ``speed_correction`` (and a LUT profiled with a speed reference) the reference operator is
    timed beside every arch and the arch's prediction is scaled by the speed it shows, so the
    figures judge the cost model, not the machine's drift since profiling (:mod:`rtseg.latency.speed`);
    the uncorrected figures are reported beside them. ``reporter`` shows the progress; without one,
    ``progress`` (with an optional rich ``console``) means ``RichReporter(console)``.
    """
    reporter = reporter or (RichReporter(console) if progress else SilentReporter())
    if not isinstance(lut, LUT):
        check_not_input(plot, [lut], "--plot")  # the scatter written over the LUT it plots
    table = lut if isinstance(lut, LUT) else load_lut(lut)
    if rounds < 1 or repeats < rounds:
        raise RtsegError("--repeats must be at least --rounds (each round times every arch at least once)")
    notes = table.check_device(force=force)
    if not table.has_skeleton and not force:
        raise RtsegError(f"LUT {table.name} has no measured skeleton (its profiling did not finish); re-run rtseg profile-ops with the same settings to complete it")
    space = table.search_space()
    h, w = table.input_hw
    head = head or table.heads[0]
    archs = _sample_archs(table, space, samples, seed, head) if archs is None else list(archs)
    samples = len(archs)
    if samples < 2:
        raise RtsegError("--samples must be at least 2 (Kendall's tau needs pairs)")
    preds = [table.predict(a, h, w, force=force) for a in archs]  # any uncovered operator fails here, before timing

    allocator = steady_allocator()
    timer = like_lut(table).timer()
    info = timer.device
    speed = lut_speed_reference(table, timer) if speed_correction else None
    probe_ratio = reference_speed_ratio(table, timer)
    if probe_ratio is not None:
        probe = table.probe_summary()
        if abs(probe_ratio - 1.0) > 0.05:
            notes.append(f"the reference operator {probe['op']} runs {abs(probe_ratio - 1):.0%} {'slower' if probe_ratio > 1 else 'faster'} "
                         "now than while the LUT was profiled (other load, clock changes): expect predictions to be off by about that much")
    started = time.perf_counter()
    try:
        with reporter.task(f"measuring {samples} archs end to end ({table.backend}, {info.name})", total=samples + samples * rounds) as bar:
            timings = measure_archs_interleaved(table, timer, archs, warmup, repeats, rounds, seed, bar.advance, speed)
    finally:
        if speed is not None:
            speed.close()

    rows = _rows(archs, preds, timings, table.speed_base_ms if speed is not None else None)
    figures = {"corrected": _figures(rows, [r.error for r in rows], [r.measured_at_base_ms for r in rows]),
               "raw": _figures(rows, [r.error_uncorrected for r in rows], [r.measured_ms for r in rows])}
    agreement = {"raw": timings.round_agreement(None)}
    if speed is not None:
        agreement["corrected"] = timings.round_agreement(table.speed_base_ms)
    headline = choose_headline(agreement) if speed is not None else "raw"
    top = figures[headline]
    result = ValidationResult(
        lut=table.name, samples=samples, seed=seed, rows=rows,
        mape=top["mape"], within_10pct=top["within_10pct"], within_5pct=top["within_5pct"],
        kendall_tau=top["kendall_tau"], mean_error=top["mean_error"],
        speed_corrected=headline == "corrected",
        uncorrected=figures["raw"], corrected=figures["corrected"] if speed is not None else {},
        headline=headline, round_agreement=agreement,
        settings={"backend": table.backend, "device": info.name, "device_arg": info.arg, "precision": table.precision,
                  "batch": table.batch, "input": [h, w], "threads": torch.get_num_threads() if info.kind == "cpu" else None,
                  "method": table.method, "clock": table.clock, "head": head, "warmup": warmup, "repeats": repeats, "rounds": rounds,
                  "constant_ms": table.constant_ms, "calibration_scale": table.calibration_scale, "probe_ratio": probe_ratio,
                  "speed_base_ms": table.speed_base_ms, "allocator": allocator, "measure_s": round(time.perf_counter() - started, 2), "notes": notes},
        archs=[a.to_dict() for a in archs],
    )
    if plot is not None:
        plot_validation(result, plot)
    return result


def plot_validation(result: ValidationResult, path: str | Path) -> Path:
    """Predicted-vs-measured scatter with the y = x line and a +-10% band (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Corrected, both axes are at the LUT's typical speed: the ranking tau is taken on (a machine
    # whose speed moved between two archs' timings would otherwise scatter them along the diagonal).
    at_base = result.speed_corrected
    meas = [r.measured_at_base_ms if at_base else r.measured_ms for r in result.rows]
    pred = [r.predicted_at_base_ms if at_base else r.predicted_ms for r in result.rows]
    p10 = [r.measured_at_base_p10_ms if at_base else r.measured_p10_ms for r in result.rows]
    p90 = [r.measured_at_base_p90_ms if at_base else r.measured_p90_ms for r in result.rows]
    lo, hi = min(meas + pred) * 0.9, max(meas + pred) * 1.1
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="tab:green", alpha=0.15, label="±10%")
    ax.plot([lo, hi], [lo, hi], color="k", lw=1, label="predicted = measured")
    ax.errorbar(meas, pred, xerr=[[max(0.0, m - a) for m, a in zip(meas, p10)], [max(0.0, b - m) for m, b in zip(meas, p90)]],
                fmt="o", ms=4, color="tab:blue", ecolor="tab:blue", alpha=0.8, elinewidth=0.8, label="archs (p10-p90)")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms)" + (", at the LUT's typical speed" if at_base else ""))
    ax.set_ylabel("predicted latency from LUT (ms)")
    s = result.settings
    ax.set_title(f"{s.get('backend')} {s.get('precision')} {s['input'][0]}x{s['input'][1]} on {s.get('device')}\n"
                 f"MAPE {result.mape:.1%}, within ±10% {result.within_10pct:.0%}, τ {result.kendall_tau:.2f}"
                 + (f"\nspeed-corrected (its rounds agree best)\nuncorrected MAPE {result.uncorrected['mape']:.1%}, τ {result.uncorrected['kendall_tau']:.2f}"
                    if result.speed_corrected else
                    f"\nuncorrected (its rounds agree best)\nspeed-corrected MAPE {result.corrected['mape']:.1%}, τ {result.corrected['kendall_tau']:.2f}"
                    if result.corrected else ""), fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out = atomic_save(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return out
