"""INT8 post-training static quantization of an exported FP32 ONNX, calibrated on the user's images,
and the accuracy gate that decides whether the INT8 model may ship.

Method: post-training static quantization in QDQ form (:func:`rtseg.backends.onnx_int8.quantize_onnx`,
ONNX Runtime's quantizer). The activation ranges come from running the FP32 model on calibration
images of the dataset the model was trained on (its training split); the calibration method (min-max, entropy or percentile) and
per-channel or per-tensor weight scales are options whose defaults were chosen by measurement
(``docs/export.md``, "INT8").

QDQ form keeps the float graph and wraps the quantized operators in QuantizeLinear/DequantizeLinear
pairs: ONNX Runtime fuses them into integer kernels on the CPU, and TensorRT reads the same file as
an explicitly quantized network (:func:`rtseg.backends.tensorrt_build.build_engine` with ``int8``).

The gate measures segmentation quality rather than a logit tolerance: on validation images disjoint
from the calibration images (the dataset's validation split), the argmax agreement of INT8 with FP32
and the mIoU of both against the labels. An INT8 mIoU more than ``max_drop`` points below FP32's
refuses the model, naming what to try: more calibration images, or the first and last layers kept
in float (:func:`rtseg.backends.onnx_int8.float_boundary_nodes`, passed back as ``keep_float``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from rtseg.backends.onnx_int8 import CALIBRATION_METHODS, DEFAULT_METHOD, DEFAULT_PER_CHANNEL
from rtseg.errors import RtsegError

#: The file ``rtseg export --int8`` writes beside ``model.onnx``.
INT8_ARTIFACT = "model-int8.onnx"
#: Its TensorRT twin: the same calibration with symmetric int8 activations (zero point 0), the
#: quantization TensorRT's explicit mode builds; the INT8 engine is built from it.
INT8_TRT_ONNX = "model-int8.trt.onnx"
#: The explicitly quantized TensorRT engine ``rtseg export --int8 --trt`` builds from it.
INT8_ENGINE = "model-int8.engine"
DEFAULT_MAX_DROP = 1.0


class Int8GateError(RtsegError):
    """The INT8 model lost more mIoU than allowed; :attr:`report` holds the figures."""

    def __init__(self, message: str, report: "Int8Report") -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Int8Options:
    """How to quantize and gate. ``calib``: a ``--data`` spec (None: the checkpoint's dataset, else
    ``synthetic``); ``calib_images`` images of its training split calibrate, ``val_images`` of its
    validation split gate; ``keep_float``: node names left in float (``nodes_to_exclude``)."""

    calib: str | None = None
    calib_images: int = 32
    val_images: int = 16
    method: str = DEFAULT_METHOD
    per_channel: bool = DEFAULT_PER_CHANNEL
    max_drop: float = DEFAULT_MAX_DROP
    keep_float: tuple[str, ...] = ()

    def check(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise RtsegError(f"unknown calibration method {self.method!r}; choose {', '.join(CALIBRATION_METHODS)}")
        if self.calib_images < 1 or self.val_images < 1:
            raise RtsegError(f"--calib-images and --int8-val-images must be at least 1, got {self.calib_images} and {self.val_images}")
        if self.calib is not None:
            from rtseg.data import parse_data_spec

            parse_data_spec(self.calib)


@dataclass
class Int8Report:
    """The gate's figures: mIoU in points (0..100), agreement a fraction."""

    images: int
    pixels: int
    agreement: float
    miou_fp32: float
    miou_int8: float
    drop: float
    max_drop: float
    passed: bool
    data: str
    split: str = "val"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CalibrationSet:
    """Preprocessed batches of one split, each ``(N, 3, H, W)`` float32, with their label maps."""

    spec: str
    split: str
    inputs: list[np.ndarray]
    labels: list[np.ndarray]
    num_classes: int
    ignore_index: int
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def images(self) -> int:
        return sum(int(x.shape[0]) for x in self.inputs)


def load_split(spec: str, split: str, hw: tuple[int, int], count: int, batch: int = 1, seed: int = 0) -> CalibrationSet:
    """``count`` images of ``split`` of dataset ``spec``, resized to ``hw`` and normalized exactly as
    in training (:func:`rtseg.data.preprocess`), grouped into batches of the exported graph's ``batch``.
    A file dataset with fewer images uses them all (noted); fewer than one batch is refused."""
    from rtseg.data import build_dataset, preprocess
    from rtseg.data.transforms import eval_transform

    ds = build_dataset(spec, split, hw, augment=False, seed=seed, length=count)
    n = min(count, len(ds)) // batch * batch
    if n < 1:
        raise RtsegError(f"the {split} split of {spec} has {len(ds)} images, fewer than the exported batch of {batch}")
    xs, ys = [], []
    for i in range(n):
        rgb, lab = ds.load(i)
        rgb, lab = eval_transform(rgb, lab, hw)
        xs.append(preprocess(rgb, ds.info))
        ys.append(lab)
    inputs = [np.stack(xs[i : i + batch]).astype(np.float32) for i in range(0, n, batch)]
    labels = [np.stack(ys[i : i + batch]) for i in range(0, n, batch)]
    notes = [f"the {split} split of {spec} has {len(ds)} images; {n} used"] if n < count else []
    return CalibrationSet(spec, split, inputs, labels, ds.info.num_classes, ds.info.ignore_index, seed, notes)


def miou_points(confusion: np.ndarray) -> float:
    """Mean IoU in points over classes with a non-empty union (the convention of :mod:`rtseg.evaluate`)."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    valid = union > 0
    return float((tp[valid] / union[valid]).mean() * 100.0) if valid.any() else float("nan")


def _confusion(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    keep = label != ignore_index
    t, p = label[keep].astype(np.int64), pred[keep].astype(np.int64)
    ok = (t >= 0) & (t < num_classes) & (p < num_classes)
    return np.bincount(t[ok] * num_classes + p[ok], minlength=num_classes**2).reshape(num_classes, num_classes)


def int8_gate(fp32_run: Any, int8_run: Any, val: CalibrationSet, num_classes: int, max_drop: float = DEFAULT_MAX_DROP) -> Int8Report:
    """Run both models (``fn(batch) -> logits``) on ``val`` and compare: argmax agreement of INT8 with
    FP32, and each one's mIoU against the labels; passed when the mIoU drops by at most ``max_drop`` points."""
    classes = max(num_classes, val.num_classes)
    conf32 = np.zeros((classes, classes), np.int64)
    conf8 = np.zeros_like(conf32)
    agree = pixels = 0
    for x, lab in zip(val.inputs, val.labels):
        p32 = np.asarray(fp32_run(x)).argmax(axis=1)
        p8 = np.asarray(int8_run(x)).argmax(axis=1)
        if p32.shape != lab.shape:
            raise RtsegError(f"the model predicts {p32.shape[1:]} masks for {lab.shape[1:]} labels; export at the input size of the data")
        agree += int((p32 == p8).sum())
        pixels += int(p32.size)
        conf32 += _confusion(p32, lab, classes, val.ignore_index)
        conf8 += _confusion(p8, lab, classes, val.ignore_index)
    m32, m8 = miou_points(conf32), miou_points(conf8)
    drop = m32 - m8
    return Int8Report(val.images, pixels, agree / max(pixels, 1), m32, m8, drop, float(max_drop), bool(drop <= max_drop),
                      val.spec, val.split)


def gate_failure(rep: Int8Report, boundary: Sequence[str], opts: Int8Options) -> str:
    """The one line that refuses an INT8 model and says how to proceed."""
    more = max(2 * opts.calib_images, 64)
    return (f"INT8 mIoU {rep.miou_int8:.2f} is {rep.drop:.2f} points below FP32's {rep.miou_fp32:.2f} on {rep.images} {rep.data} "
            f"{rep.split} images (allowed: --int8-max-drop {rep.max_drop:g}; argmax agreement {rep.agreement * 100:.2f} %): "
            f"calibrate on more images (--calib-images {more}), or keep the first/last layers in float "
            f"(--int8-keep-float {','.join(boundary)}); --no-check keeps the INT8 file anyway")


__all__ = ["CalibrationSet", "INT8_ARTIFACT", "INT8_ENGINE", "INT8_TRT_ONNX", "Int8GateError", "Int8Options", "Int8Report", "gate_failure", "int8_gate",
           "load_split", "miou_points"]
