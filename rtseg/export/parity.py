"""Parity gates: does the exported model compute what the PyTorch model computes?

Every export compares the candidate (ONNX Runtime on the FP32 or FP16 ONNX, or the TensorRT engine)
with its reference on several inputs, random and image-like, and reports the max and mean absolute
difference of the logits, the pixel agreement of the argmax (the mask a user sees) and whether any
output is NaN or Inf. Gates (deploy.md sec. 7 goal 4): FP32 agreement >= 99.99 %; FP16 >= 99.5 %
and all outputs finite. Agreement, not a logit tolerance, is the gate because FP16 logit noise only
matters where it flips a pixel's class; the logit differences are reported beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from rtseg.backends.onnx_fp16 import fp16_tensor_names
from rtseg.backends.ort_session import make_session
from rtseg.errors import RtsegError

GATES = {"fp32": 0.9999, "fp16": 0.995}
FP16_MAX = 65504.0


@dataclass
class ParityReport:
    name: str  # e.g. "onnx fp32"
    reference: str  # e.g. "torch fp32"
    precision: str
    inputs: int
    pixels: int
    max_abs_diff: float
    mean_abs_diff: float
    agreement: float
    finite: bool
    threshold: float
    passed: bool
    #: FP16 only: the largest |value| of any tensor the FP16 graph stores in FP16 (from the FP32
    #: graph); above 65504 the FP16 model overflows there, whatever the backend used for the check.
    max_activation: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ParityGateError(RtsegError):
    """An export failed a parity gate; :attr:`reports` holds every figure measured so far."""

    def __init__(self, message: str, reports: Sequence[ParityReport]) -> None:
        super().__init__(message)
        self.reports = list(reports)


def parity_inputs(batch: int, h: int, w: int, data_info: dict[str, Any] | None = None, n_random: int = 2, n_image: int = 2,
                  seed: int = 0) -> list[np.ndarray]:
    """``n_random`` standard-normal batches and ``n_image`` batches of rendered street scenes,
    normalized with the model's own mean/std, all float32 ``(batch, 3, h, w)``."""
    rng = np.random.default_rng(seed)
    out = [rng.standard_normal((batch, 3, h, w)).astype(np.float32) for _ in range(n_random)]
    if n_image:
        from rtseg.data.base import preprocess
        from rtseg.data.synthetic import render_scene

        info = data_info or {}
        mean = info.get("mean", (0.485, 0.456, 0.406))
        std = info.get("std", (0.229, 0.224, 0.225))
        for i in range(n_image):
            imgs = [preprocess(render_scene(seed * 1000 + i * batch + j, h, w)[0], mean, std) for j in range(batch)]
            out.append(np.stack(imgs).astype(np.float32))
    return out


def compare(
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    precision: str,
    name: str,
    reference_name: str,
    max_activation: float | None = None,
) -> ParityReport:
    """Compare logits ``(N, C, H, W)`` pairwise and apply the gate of ``precision`` (with
    ``max_activation`` > 65504 counting as an overflow, i.e. not finite)."""
    if len(reference) != len(candidate):
        raise ValueError("reference and candidate must have the same number of outputs")
    max_abs, abs_sum, n_el, agree, pixels, finite = 0.0, 0.0, 0, 0, 0, True
    for r, c in zip(reference, candidate):
        r = np.asarray(r, np.float32)
        c = np.asarray(c)
        if r.shape != c.shape:
            raise RtsegError(f"{name} returned shape {tuple(c.shape)}, the reference {tuple(r.shape)}: the exported model is wrong")
        c = c.astype(np.float32)
        ok = bool(np.isfinite(c).all())
        finite = finite and ok
        d = np.abs(np.where(np.isfinite(c), c, np.float32(np.inf)) - r)
        max_abs = max(max_abs, float(d.max()))
        abs_sum += float(np.minimum(d, 1e30).sum())
        n_el += d.size
        agree += int((r.argmax(axis=1) == c.argmax(axis=1)).sum())
        pixels += r.shape[0] * r.shape[2] * r.shape[3]
    threshold = GATES[precision]
    agreement = agree / max(pixels, 1)
    if max_activation is not None and not max_activation <= FP16_MAX:
        finite = False
    passed = agreement >= threshold and finite
    return ParityReport(name, reference_name, precision, len(reference), pixels, max_abs, abs_sum / max(n_el, 1),
                        agreement, finite, threshold, bool(passed), max_activation)


def activation_peak(onnx_fp32: str | Path, inputs: Sequence[np.ndarray], chunk: int = 64) -> float:
    """Largest |value| over every tensor the FP16 variant of ``onnx_fp32`` stores in FP16.

    Why: ONNX Runtime's CPU provider runs FP16 ops it has no kernel for in FP32 behind casts, so an
    FP16 model checked on a CPU never overflows there, while TensorRT or a GPU would. The FP32
    graph's intermediate tensors are exposed as outputs (``chunk`` at a time, to bound memory) and
    their peak compared with FP16's range."""
    import onnx

    model = onnx.load(str(onnx_fp32))
    names = fp16_tensor_names(model)
    existing = {o.name for o in model.graph.output}
    for n in names:
        if n not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    sess = make_session(model.SerializeToString())
    feed = sess.get_inputs()[0].name
    peak = 0.0
    for x in inputs:
        for i in range(0, len(names), chunk):
            for y in sess.run(names[i : i + chunk], {feed: x}):
                if y.size:
                    peak = max(peak, float(np.abs(y).max()))
    return peak


def run_parity(
    reference: Sequence[np.ndarray],
    candidate_fn: Callable[[np.ndarray], np.ndarray],
    inputs: Sequence[np.ndarray],
    precision: str,
    name: str,
    reference_name: str,
) -> ParityReport:
    """Run ``candidate_fn`` on every input and :func:`compare` with the precomputed ``reference``."""
    return compare(reference, [candidate_fn(x) for x in inputs], precision, name, reference_name)


def describe_failure(rep: ParityReport) -> str:
    why = []
    if rep.max_activation is not None and rep.max_activation > FP16_MAX:
        why.append(f"an activation reaches {rep.max_activation:.3g}, beyond FP16's 65504: the FP16 model overflows")
    elif not rep.finite:
        why.append("NaN or Inf in the outputs")
    if rep.agreement < rep.threshold:
        why.append(f"argmax agreement {rep.agreement * 100:.3f} % < {rep.threshold * 100:.2f} %")
    return f"{rep.name} vs {rep.reference} failed the {rep.precision} parity gate ({'; '.join(why)}; max |diff| {rep.max_abs_diff:.3g})"
