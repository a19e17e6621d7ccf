"""Fit a LUT's layer-cost factor on whole networks measured end to end (see :mod:`rtseg.latency.lut`).

The prediction of an arch splits into a fixed part (the network constant plus the entries of the
stem, downsamplers and head) and a layer part (the "slot" entries of its searchable layers). Only
the layer part is measured out of context (in a stack of copies of one layer), so only it is
scaled: ``measured - fixed = scale * layers``, one factor, least squares through the origin over a
few random archs. The archs come from a seed of their own, so ``rtseg lut validate`` (seed 0 by
default) still judges the LUT on archs the fit never saw.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from rtseg.errors import RtsegError
from rtseg.latency.lut import LUT, is_slot_entry
from rtseg.latency.speed import SpeedReference
from rtseg.latency.validate import measure_archs_interleaved

#: Seed of the calibration archs (any value other than the seeds ``lut validate`` uses by default).
CALIBRATION_SEED = 104729
DEFAULT_CALIBRATION_ARCHS = 4
#: A factor outside this range means the LUT or the machine is off, not a cache effect: refuse it.
SANE_SCALE = (0.5, 2.0)


def split_prediction(lut: LUT, arch: Any) -> tuple[float, float]:
    """(fixed part incl. the constant, unscaled layer part) of ``arch``'s prediction, in ms."""
    h, w = lut.input_hw
    fixed, layers = lut.constant_ms, 0.0
    for sig in lut.search_space().signatures(arch, h, w):
        entry = lut.entries.get(sig.key)
        if entry is None:
            lut.cost(sig)  # raises the LUT's "does not cover" error
        if is_slot_entry(entry):
            layers += lut.raw_cost(sig)
        else:
            fixed += lut.cost(sig)
    return fixed, layers


def is_sane(record: dict[str, Any]) -> bool:
    """A factor far from 1 is not a cache effect: the entries or the end-to-end timings were disturbed
    (a busy machine, one timed run per entry). Such a record is kept for inspection, never applied."""
    return SANE_SCALE[0] <= float(record["scale"]) <= SANE_SCALE[1]


def fit_scale(parts: list[tuple[float, float]], measured: list[float]) -> float:
    """Least-squares factor on the layer part: minimises sum((fixed + s * layers - measured)^2)."""
    num = sum(layers * (m - fixed) for (fixed, layers), m in zip(parts, measured))
    den = sum(layers * layers for _, layers in parts)
    return num / den if den > 0 else 1.0


def calibrate(lut: LUT, timer: Any, n_archs: int = DEFAULT_CALIBRATION_ARCHS, warmup: int = 5, repeats: int = 40,
              rounds: int = 5, advance: Callable[[], None] | None = None,
              speed: SpeedReference | None = None) -> dict[str, Any]:
    """Measure ``n_archs`` random archs end to end with ``timer`` and return the calibration record
    (the caller stores it with :meth:`LUT.set_calibration`, accepted when :func:`is_sane`).
    With a ``speed`` reference each arch's timing is brought to the speed the LUT's entries are
    charged at first, so the factor fits the cost model rather than the machine's drift."""
    if not lut.has_skeleton:
        raise RtsegError(f"LUT {lut.name} has no measured skeleton yet; calibration needs the network constant")
    space = lut.search_space()
    head = lut.heads[0]
    rng = random.Random(CALIBRATION_SEED)
    archs = [space.sample(rng, num_classes=lut.num_classes, head=head) for _ in range(max(2, n_archs))]
    with lut.uncalibrated():  # fit against the unscaled model
        parts = [split_prediction(lut, a) for a in archs]
    timings = measure_archs_interleaved(lut, timer, archs, warmup, repeats, rounds, CALIBRATION_SEED, advance, speed)
    measured = timings.medians_at(lut.speed_base_ms if speed is not None else None)
    scale = fit_scale(parts, measured)

    def mape(s: float) -> float:
        return sum(abs(f + s * l - m) / m for (f, l), m in zip(parts, measured)) / len(measured)

    return {
        "scale": scale,
        "archs": len(archs),
        "seed": CALIBRATION_SEED,
        "head": head,
        "mape_before": mape(1.0),
        "mape_after": mape(scale),
        "rows": [{"fixed_ms": f, "layers_ms": l, "measured_ms": m, "ref_ms": r} for (f, l), m, r in zip(parts, measured, timings.ref_ms)],
    }
