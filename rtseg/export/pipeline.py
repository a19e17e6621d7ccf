"""``rtseg export``: checkpoint or arch -> ONNX (FP32, FP16) -> TensorRT engine, gated by parity.

Stages, each recorded in the sidecar as it completes, all written into a staging folder inside the
output folder: the previous export there stays whole until the new one is complete (its files are
then moved in, the sidecar last), and an export that fails or is killed leaves it untouched. The
output folder is locked while the export writes (a second ``rtseg export`` into it is refused), and
files there that no rtseg export wrote (a ``model.json`` that is not a sidecar, a model without one)
are refused unless ``overwrite``.

1. build the PyTorch model (checkpoint weights, or seeded random weights for an untrained arch);
2. export the FP32 ONNX (:func:`rtseg.backends.onnx_export.export_onnx_info`: TorchScript, dynamo fallback),
   simplify it with onnxslim where that keeps it valid and equal;
3. parity: ONNX Runtime vs PyTorch on random and image-like inputs (FP32 gate 99.99 %), plus, with
   ``dynamic``, a second input size to prove the dynamic axes work;
4. the FP16 variant (FP32 I/O) and its parity vs PyTorch (FP16 gate 99.5 %, no NaN/Inf);
4b. with ``int8``: the INT8 QDQ model calibrated on the user's images and its mIoU gate on
   validation images (:mod:`rtseg.export.int8`), and with ``trt`` its twin with symmetric int8
   activations, the form TensorRT builds;
5. with ``trt``: the engine (:func:`rtseg.backends.tensorrt_build.build_engine`), checked against ONNX
   Runtime FP32 with the FP16 gate.

A failed gate raises :class:`rtseg.export.parity.ParityGateError` carrying every figure, after the
figures were written to the sidecar (``"passed": false``); ``check=False`` skips the gates' verdict
but still measures and records the figures.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import onnx
import torch

from rtseg.arch import deploy_note
from rtseg.backends import TABLE, get_backend
from rtseg.backends.cuda_memory import open_cuda_memory
from rtseg.backends.device import cuda_index, device_slug
from rtseg.backends.onnx_export import export_onnx_info, fp32_op_block_list, simplify_onnx
from rtseg.backends.onnx_fp16 import convert_fp16
from rtseg.backends.onnx_int8 import quantize_onnx
from rtseg.backends.ort import OrtRunner
from rtseg.errors import RtsegError
from rtseg.backends.metadata import check_metadata, new_metadata, write_metadata
from rtseg.export.int8 import INT8_ARTIFACT, INT8_ENGINE, INT8_TRT_ONNX, Int8GateError, Int8Report, gate_failure, int8_gate, load_split
from rtseg.export.parity import GATES, ParityGateError, ParityReport, activation_peak, compare, describe_failure, parity_inputs
from rtseg.export.profiles import ExportOptions
from rtseg.io import check_batch_memory, check_not_input, check_output_dir, file_sha256, parse_hw, read_json, slugify
from rtseg.rundir import LOCK, FileLock, acquire_lock, check_folder_path
from rtseg.reporting import Reporter, SilentReporter
from rtseg.runtime.source import ModelSource, build_module, resolve_model, size_divisor

Stage = Callable[[str], None]


@dataclass
class ExportResult:
    out_dir: Path
    name: str
    onnx: Path | None = None
    onnx_fp16: Path | None = None
    onnx_int8: Path | None = None
    onnx_int8_trt: Path | None = None
    engine: Path | None = None
    engine_int8: Path | None = None
    metadata_path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    parity: list[ParityReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    int8: Int8Report | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "out_dir": str(self.out_dir),
            "onnx": str(self.onnx) if self.onnx else None,
            "onnx_fp16": str(self.onnx_fp16) if self.onnx_fp16 else None,
            "onnx_int8": str(self.onnx_int8) if self.onnx_int8 else None,
            "onnx_int8_trt": str(self.onnx_int8_trt) if self.onnx_int8_trt else None,
            "engine": str(self.engine) if self.engine else None,
            "engine_int8": str(self.engine_int8) if self.engine_int8 else None,
            "metadata": str(self.metadata_path) if self.metadata_path else None,
            "exporter": self.metadata.get("export", {}).get("exporter"),
            "opset": self.metadata.get("export", {}).get("opset"),
            "parity": [p.to_dict() for p in self.parity],
            "int8_gate": self.int8.to_dict() if self.int8 else None,
            "passed": all(p.passed for p in self.parity) and (self.int8 is None or self.int8.passed),
            "notes": self.notes,
            "stage_seconds": self.stage_seconds,
        }


def default_out_dir(name: str, device: str) -> Path:
    """``engines/<device-slug>/<model>/``: the device's one folder (:func:`rtseg.backends.device.device_slug`)."""
    return Path("engines") / device_slug(device) / slugify(name)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    out = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    for mod in ("onnxslim", "onnxscript"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # optional
            pass
    return out


def _device_index(device: str) -> int:
    try:
        index = cuda_index(device)
    except RtsegError:
        index = None
    if index is None:
        raise RtsegError(f"TensorRT builds for a GPU: --device must be cuda or cuda:N, got {device!r}")
    return index


def _open_gpu(device: str) -> tuple[Any, dict[str, Any]]:  # pragma: no cover - GPU only
    """Make ``device`` the current CUDA device for the builder (via the memory adapter, which sets
    it) and return (adapter, its properties); falls back to torch for the properties only."""
    idx = _device_index(device)
    try:
        mem = open_cuda_memory(device_index=idx)
        return mem, mem.device_properties()
    except RtsegError:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(idx)
            p = torch.cuda.get_device_properties(idx)
            return None, {"name": p.name, "compute_capability": f"{p.major}.{p.minor}"}
        raise


@dataclass
class _Export:
    """One export as its steps share it: the options, the model, the sizes, the sidecar being written."""

    opts: ExportOptions
    src: ModelSource
    module: Any
    h: int
    w: int
    div: int
    res: ExportResult
    reporter: Reporter
    say: Stage
    timings: dict[str, float] = field(default_factory=dict)
    inputs: list[Any] = field(default_factory=list)
    reference: list[Any] = field(default_factory=list)
    ort32: Any = None
    int8_val: Any = None  # the INT8 gate's validation images (CalibrationSet), kept for the INT8 engine's gate
    t0: float = field(default_factory=time.perf_counter)
    final_dir: Path = Path(".")  # where the export goes once complete
    staging: Path = Path(".")  # where it is written until then (res.out_dir, until published)
    lock: FileLock | None = None

    @property
    def meta(self) -> dict[str, Any]:
        return self.res.metadata

    def step(self, text: str) -> None:
        """Announce the next stage (one line per stage: the TensorRT build draws its own bars)."""
        self.say(text)
        self.reporter.message(f"[cyan]>[/] {text}")

    def lap(self, name: str) -> None:
        """Record the seconds since the previous lap under ``name`` (the sidecar's ``stage_seconds``)."""
        now = time.perf_counter()
        self.timings[name] = round(now - self.t0, 3)
        self.t0 = now

    def record(self, rep: ParityReport, key: str) -> None:
        """Keep a parity figure, write it to the sidecar at once, and stop on a failed gate."""
        self.res.parity.append(rep)
        self.meta["parity"][key] = rep.to_dict()
        write_metadata(self.res.metadata_path, self.meta)  # type: ignore[arg-type]
        if self.opts.check and not rep.passed:
            raise ParityGateError(describe_failure(rep), self.res.parity)


def export_model(model: str | Path, opts: ExportOptions | None = None, stage: Stage | None = None,
                 reporter: Reporter | None = None) -> ExportResult:
    """Run the export pipeline on ``model`` (checkpoint, arch JSON or built-in name).

    The stages are functions of their own, in order: :func:`_check_flags` (before any work),
    :func:`_load`, :func:`_export_fp32`, :func:`_parity_fp32`, :func:`_export_fp16`,
    :func:`_export_int8`, :func:`_build_engine`, :func:`_finish`. ``reporter`` gets one message per
    stage (and the TensorRT builder's progress bars); ``stage(text)`` is called with the same texts."""
    opts = opts or ExportOptions()
    _check_flags(opts)
    ex = _load(model, opts, reporter or SilentReporter(), stage or (lambda s: None))
    try:
        _export_fp32(ex)
        _parity_fp32(ex)
        if opts.fp16:
            _export_fp16(ex)
        if opts.int8:
            _export_int8(ex)
        if opts.trt:  # pragma: no cover - needs TensorRT and a GPU
            _build_engine(ex)
        return _finish(ex)
    except ParityGateError as exc:
        where = _keep_failed(ex)
        raise ParityGateError(f"{exc}; files kept in {where} for inspection", exc.reports) from None
    except Int8GateError as exc:
        where = _keep_failed(ex)
        raise Int8GateError(f"{exc}; the other files are kept in {where}", exc.report) from None
    finally:
        shutil.rmtree(ex.staging, ignore_errors=True)  # empty once published; a failed or killed export's files
        if ex.lock is not None:
            ex.lock.release()


def _check_flags(opts: ExportOptions) -> None:
    """Refuse what cannot be exported before any work: the tensorrt backend's row of
    :data:`rtseg.backends.TABLE` when an engine is asked for (TensorRT installed, a GPU device),
    and the batch."""
    if opts.trt:
        get_backend("tensorrt").check(device=opts.device, precision="fp16" if opts.fp16 else "fp32")
        _device_index(opts.device)
    if opts.batch < 1:
        raise RtsegError(f"batch must be a positive integer, got {opts.batch}")
    if opts.int8:
        opts.int8_options.check()


def _load(model: str | Path, opts: ExportOptions, reporter: Reporter, say: Stage) -> _Export:
    """Build the PyTorch model, settle the input size and clear the output folder of older files."""
    say("loading the model")
    reporter.message("[cyan]>[/] loading the model")
    src = resolve_model(model)
    if src.kind in ("onnx", "engine"):
        raise RtsegError(f"{src.ref} is already an exported {src.kind} file; export takes a checkpoint (.pt), an arch JSON or a built-in arch name")
    div = size_divisor(src)
    h, w = parse_hw(opts.input_hw or src.input_hw or (512, 1024), div)
    check_batch_memory(opts.batch, h, w, src.num_classes)
    module = build_module(src)
    out_dir = check_output_dir(check_folder_path(Path(opts.out_dir) if opts.out_dir else default_out_dir(src.name, opts.device if opts.trt else "cpu"),
                                                 "export folder"), "export folder")
    for name in EXPORT_FILES:
        check_not_input(out_dir / name, [src.path], "export file")
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(out_dir / LOCK, f"export folder {out_dir}")
    try:
        _check_replaceable(out_dir, opts.overwrite)
        staging = Path(tempfile.mkdtemp(prefix=".export-partial-", dir=out_dir))
    except BaseException:
        lock.release()
        raise
    res = ExportResult(out_dir=staging, name=src.name)
    if opts.trt:
        note = deploy_note(src.arch, "tensorrt", opts.device)
        if note:
            res.notes.append(note)
    ex = _Export(opts, src, module, h, w, div, res, reporter, say, final_dir=out_dir, staging=staging, lock=lock)
    ex.lap("load")
    return ex


#: Every file an export writes into its folder, the sidecar first.
EXPORT_FILES = tuple(dict.fromkeys(("model.json", "model.onnx", "model.fp16.onnx", INT8_ARTIFACT, INT8_TRT_ONNX,
                                    *[str(b.artifact) for b in TABLE.values() if b.artifact], INT8_ENGINE)))


def _check_replaceable(out_dir: Path, overwrite: bool) -> None:
    """Refuse (unless ``overwrite``) an export folder whose files of an export's names were not
    written by an rtseg export: a ``model.json`` that is no sidecar, or a model without its sidecar."""
    if overwrite:
        return
    side = out_dir / "model.json"
    present = [n for n in EXPORT_FILES[1:] if (out_dir / n).exists()]
    why = None
    if side.exists():
        try:
            check_metadata(read_json(side, "export sidecar"), str(side))
        except RtsegError as exc:
            why = f"its model.json is not an export sidecar ({exc})"
    elif present:
        why = f"{', '.join(present)} there has no sidecar (model.json), so no rtseg export wrote it"
    if why:
        raise RtsegError(f"export folder {out_dir} holds files of an export's names that rtseg did not write: {why}; "
                         "choose another --out, or pass --overwrite to replace them")


def _publish(ex: _Export, into: Path) -> None:
    """Move the staged files into ``into``: the old sidecar first goes (so no sidecar ever describes
    files it does not describe), then the models replace theirs (each rename atomic), files of the
    old export this one did not write go, and the new sidecar comes last."""
    staging, res = ex.staging, ex.res
    into.mkdir(parents=True, exist_ok=True)
    (into / "model.json").unlink(missing_ok=True)
    written = {p.name for p in staging.iterdir()}
    for name in EXPORT_FILES[1:]:
        if name in written:
            os.replace(staging / name, into / name)
        else:
            (into / name).unlink(missing_ok=True)
    if "model.json" in written:
        os.replace(staging / "model.json", into / "model.json")
    for attr in ("onnx", "onnx_fp16", "onnx_int8", "onnx_int8_trt", "engine", "engine_int8", "metadata_path"):
        path = getattr(res, attr)
        if path is not None:
            setattr(res, attr, into / Path(path).name)
    res.out_dir = into


def _keep_failed(ex: _Export) -> Path:
    """Where the files of an export that failed a gate are kept for inspection: the export folder
    when it held no export, else ``failed/`` inside it (the previous export stays whole)."""
    had_export = (ex.final_dir / "model.json").exists()
    _publish(ex, ex.final_dir / "failed" if had_export else ex.final_dir)
    return ex.res.out_dir


def _export_fp32(ex: _Export) -> None:
    """The FP32 ONNX (TorchScript exporter, dynamo fallback), simplified with onnxslim where that
    keeps it valid and equal, and the sidecar that describes it."""
    opts, src, h, w, res = ex.opts, ex.src, ex.h, ex.w, ex.res
    ex.step(f"exporting ONNX ({opts.exporter}, opset {opts.opset})")
    dyn_axes = None
    if opts.dynamic:
        dyn_axes = {"input": {0: "N", 2: "H", 3: "W"}, "logits": {0: "N", 2: "H", 3: "W"}}
    example = torch.zeros(opts.batch, 3, h, w)
    onnx_path = res.out_dir / "model.onnx"
    exp = export_onnx_info(ex.module, (example,), onnx_path, opset=opts.opset, dynamic_axes=dyn_axes, exporter=opts.exporter)
    if exp.fallback_reason:
        res.notes.append(f"the {opts.exporter} exporter failed ({exp.fallback_reason}); the {exp.exporter} exporter wrote the file")
    ex.lap("onnx")
    ex.inputs = parity_inputs(opts.batch, h, w, src.data_info)
    simplified = False
    if opts.simplify:
        ex.step("simplifying with onnxslim")
        simplified, note = simplify_onnx(onnx_path, check_input=ex.inputs[0])
        res.notes.append(note)
        ex.lap("simplify")

    out_shape: list[int | str] = [opts.batch, src.num_classes, h, w]
    in_shape: list[int | str] = [opts.batch, 3, h, w]
    if opts.dynamic:
        in_shape, out_shape = ["N", 3, "H", "W"], ["N", src.num_classes, "H", "W"]
    meta = new_metadata(
        name=src.name, source_ref=src.ref, source_kind=src.kind, source_sha256=src.sha256, trained=src.trained,
        arch=src.arch.to_dict() if src.arch else None, data_info=src.data_info, input_shape=in_shape,
        output_shape=out_shape, dynamic_axes=dyn_axes,
        export={"exporter": exp.exporter, "opset": exp.opset, "exporter_fallback": exp.fallback_reason,
                "simplified": simplified, "batch": opts.batch, "input_hw": [h, w], "profile": opts.profile,
                "versions": _versions()},
    )
    if opts.dynamic:
        meta["input"]["export_hw"] = [h, w]
    meta["artifacts"]["onnx"] = {"file": onnx_path.name, "precision": "fp32", "sha256": file_sha256(onnx_path)}
    res.onnx, res.metadata, res.metadata_path = onnx_path, meta, res.out_dir / "model.json"


def _parity_fp32(ex: _Export) -> None:
    """ONNX Runtime against PyTorch on random and image-like inputs (the FP32 gate), plus a second
    input size when the axes are dynamic."""
    opts, h, w, div = ex.opts, ex.h, ex.w, ex.div
    onnx_path = ex.res.onnx
    ex.step("checking ONNX Runtime against PyTorch (fp32)")
    with torch.no_grad():
        ex.reference = [ex.module(torch.from_numpy(x)).numpy() for x in ex.inputs]
    ex.ort32 = OrtRunner(onnx_path, input_hw=(h, w), batch=opts.batch)  # type: ignore[arg-type]
    ex.record(compare(ex.reference, [ex.ort32.infer(x) for x in ex.inputs], "fp32", "onnx fp32", "torch fp32"), "onnx_fp32")
    if opts.dynamic:
        h2, w2 = parse_hw((max(div, (h // 2) // div * div), max(div, (w // 2) // div * div)), div)
        xs2 = parity_inputs(1, h2, w2, ex.src.data_info, n_random=1, n_image=1, seed=1)
        ort_dyn = OrtRunner(onnx_path, input_hw=(h2, w2), batch=1)  # type: ignore[arg-type]
        with torch.no_grad():
            ref2 = [ex.module(torch.from_numpy(x)).numpy() for x in xs2]
        ex.record(compare(ref2, [ort_dyn.infer(x) for x in xs2], "fp32", f"onnx fp32 @{h2}x{w2}", "torch fp32"), "onnx_fp32_dynamic")
    ex.lap("parity_fp32")


def _export_fp16(ex: _Export) -> None:
    """The FP16 variant (FP32 I/O) and its parity against PyTorch FP32 (the FP16 gate)."""
    opts, res, meta = ex.opts, ex.res, ex.meta
    onnx_path = res.onnx
    ex.step("writing the FP16 ONNX and checking it")
    fp16_path = convert_fp16(onnx_path, res.out_dir / "model.fp16.onnx")  # type: ignore[arg-type]
    res.onnx_fp16 = fp16_path
    present = {n.op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node}
    meta["artifacts"]["onnx_fp16"] = {"file": fp16_path.name, "precision": "fp16", "io": "float32 (keep_io_types)",
                                      "sha256": file_sha256(fp16_path),
                                      "fp32_ops": sorted(present & set(fp32_op_block_list()))}
    ort16 = OrtRunner(fp16_path, input_hw=(ex.h, ex.w), batch=opts.batch)
    cand = [ort16.infer(x) for x in ex.inputs]
    peak = activation_peak(onnx_path, [ex.inputs[0], ex.inputs[-1]])  # type: ignore[arg-type]  # one random, one image-like
    rep = compare(ex.reference, cand, "fp16", "onnx fp16", "torch fp32", max_activation=peak)
    meta["artifacts"]["onnx_fp16"]["checked_on"] = "onnxruntime CPU (it computes FP16 ops it lacks kernels for in FP32 behind casts)"
    ex.record(rep, "onnx_fp16")
    ex.lap("fp16")


def calibration_data(src: ModelSource, calib: str | None) -> tuple[str, int, str]:
    """``(data spec, synthetic seed, why)``: ``--calib`` when given, else the dataset the checkpoint
    was trained on, else ``synthetic``."""
    if calib:
        return calib, 0, "--calib"
    if src.data_spec:
        return src.data_spec, src.data_seed, "the checkpoint's training data"
    return "synthetic", 0, "default (no training data recorded)"


def _export_int8(ex: _Export) -> None:
    """The INT8 QDQ model, calibrated on the training split of the calibration data, then gated on
    its validation split: the mIoU drop against FP32 (ONNX Runtime on both) must stay within
    ``max_drop`` points. A refused model's file is removed (kept with ``check=False``); the figures
    stay in the sidecar either way."""
    opts, res, meta, src, i8 = ex.opts, ex.res, ex.meta, ex.src, ex.opts.int8_options
    spec, seed, why = calibration_data(src, i8.calib)
    weights = "per-channel" if i8.per_channel else "per-tensor"
    ex.step(f"calibrating INT8 on {i8.calib_images} {spec} training images ({i8.method}, {weights} weights)")
    calib = load_split(spec, "train", (ex.h, ex.w), i8.calib_images, opts.batch, seed)
    path, boundary = quantize_onnx(res.onnx, res.out_dir / INT8_ARTIFACT, calib.inputs, i8.method, i8.per_channel,  # type: ignore[arg-type]
                                   i8.keep_float)
    ex.lap("int8_calibrate")
    ex.step(f"gating INT8 against FP32 on {i8.val_images} {spec} validation images (mIoU drop <= {i8.max_drop:g} points)")
    val = ex.int8_val = load_split(spec, "val", (ex.h, ex.w), i8.val_images, opts.batch, seed)
    ort8 = OrtRunner(path, input_hw=(ex.h, ex.w), batch=opts.batch)
    rep = int8_gate(ex.ort32.infer, ort8.infer, val, src.num_classes, i8.max_drop)
    import onnxruntime

    res.notes.extend(calib.notes + val.notes)
    if val.num_classes != src.num_classes:
        res.notes.append(f"the INT8 gate scores a {src.num_classes}-class model on {spec}'s {val.num_classes} classes: "
                         "give --calib the model's own dataset for a meaningful mIoU")
    if not src.trained:
        res.notes.append("untrained weights: the INT8 gate's mIoU figures say little until the model is trained")
    meta["artifacts"]["onnx_int8"] = {
        "file": path.name, "precision": "int8", "format": "QDQ (QuantizeLinear/DequantizeLinear)",
        "quantizer": f"onnxruntime {onnxruntime.__version__} quantize_static", "sha256": file_sha256(path),
        "activations": "uint8, per-tensor, asymmetric", "weights": f"int8, {weights}, symmetric", "per_channel": i8.per_channel,
        "calibration": {"data": spec, "chosen_by": why, "split": calib.split, "images": calib.images, "seed": seed,
                        "method": i8.method},
        "keep_float": list(i8.keep_float), "float_boundary_nodes": boundary, "gate": rep.to_dict(),
    }
    res.onnx_int8, res.int8 = path, rep
    ex.lap("int8_gate")
    if opts.check and not rep.passed:
        path.unlink(missing_ok=True)
        res.onnx_int8 = None
        meta["artifacts"]["onnx_int8"].update(file=None, removed="refused by the INT8 gate")
        write_metadata(res.metadata_path, meta)  # type: ignore[arg-type]
        raise Int8GateError(gate_failure(rep, boundary, i8), rep)
    write_metadata(res.metadata_path, meta)  # type: ignore[arg-type]
    if opts.trt:  # pragma: no cover - needs TensorRT
        ex.step("writing the TensorRT flavour of the INT8 model (symmetric int8 activations)")
        trt_path, _ = quantize_onnx(res.onnx, res.out_dir / INT8_TRT_ONNX, calib.inputs, i8.method, i8.per_channel,  # type: ignore[arg-type]
                                    i8.keep_float, symmetric_activations=True)
        meta["artifacts"]["onnx_int8_trt"] = {
            **meta["artifacts"]["onnx_int8"], "file": trt_path.name, "sha256": file_sha256(trt_path),
            "activations": "int8, per-tensor, symmetric (zero point 0, as TensorRT builds)", "gate": None,
            "gated_as": "the INT8 engine built from it (artifacts.engine_int8.gate)"}
        write_metadata(res.metadata_path, meta)  # type: ignore[arg-type]
        res.onnx_int8_trt = trt_path
        ex.lap("int8_trt_onnx")


def _build_engine(ex: _Export) -> None:  # pragma: no cover - needs TensorRT and a GPU
    """The TensorRT engine (the tensorrt backend's converter), recorded in the sidecar, then checked
    against ONNX Runtime FP32 with the FP16 gate; with ``int8`` also the explicitly quantized engine
    of the QDQ model's TensorRT twin (symmetric activations), held to the INT8 gate (its mIoU against
    FP32's on the validation images)."""
    opts, res, h, w = ex.opts, ex.res, ex.h, ex.w
    spec = get_backend("tensorrt")
    ex.step("building the TensorRT engine")
    engine_path = res.out_dir / str(spec.artifact)
    _trt_build(ex, res.onnx_fp16 if opts.fp16 and res.onnx_fp16 else res.onnx, engine_path, "engine", fp16=opts.fp16)  # type: ignore[arg-type]
    res.engine = engine_path
    ex.lap("trt_build")
    ex.step("checking the engine against ONNX Runtime (fp32)")
    ref_ort = [ex.ort32.infer(x) for x in ex.inputs]
    runner = spec.load("runner")(engine_path, input_hw=(h, w), batch=opts.batch, device=opts.device)
    try:
        rep = compare(ref_ort, [runner.infer(x) for x in ex.inputs], "fp16" if opts.fp16 else "fp32", "tensorrt engine", "onnxruntime fp32")
    finally:
        runner.close()
    ex.record(rep, "engine")
    ex.lap("trt_parity")
    if res.onnx_int8_trt is None or ex.int8_val is None:
        return
    ex.step("building the INT8 TensorRT engine from the QDQ model")
    int8_engine = res.out_dir / INT8_ENGINE
    _trt_build(ex, res.onnx_int8_trt, int8_engine, "engine_int8", fp16=True, int8=True)
    res.engine_int8 = int8_engine
    ex.lap("trt_int8_build")
    ex.step("gating the INT8 engine against ONNX Runtime FP32 on the validation images")
    runner = spec.load("runner")(int8_engine, input_hw=(h, w), batch=opts.batch, device=opts.device)
    try:
        i8 = opts.int8_options
        gate = int8_gate(ex.ort32.infer, runner.infer, ex.int8_val, ex.src.num_classes, i8.max_drop)
    finally:
        runner.close()
    ex.meta["artifacts"]["engine_int8"]["gate"] = gate.to_dict()
    write_metadata(res.metadata_path, ex.meta)  # type: ignore[arg-type]
    ex.lap("trt_int8_gate")
    if opts.check and not gate.passed:
        raise Int8GateError("the TensorRT INT8 engine: " + gate_failure(gate, ex.meta["artifacts"]["onnx_int8"]["float_boundary_nodes"], i8), gate)


def _trt_build(ex: _Export, src_onnx: Path, engine_path: Path, key: str, fp16: bool, int8: bool = False) -> None:  # pragma: no cover - GPU
    """Build one engine with the export's shapes, workspace and timing cache, and record it in the sidecar under ``key``."""
    opts, res, meta, h, w, div = ex.opts, ex.res, ex.meta, ex.h, ex.w, ex.div
    cache = (ex.final_dir.parent if opts.out_dir is None else ex.final_dir) / "timing.cache"
    dynamic = None
    if opts.dynamic:
        mn = opts.dynamic_min_hw or (max(div, h // 2 // div * div), max(div, w // 2 // div * div))
        mx = opts.dynamic_max_hw or (2 * h, 2 * w)
        dynamic = {"input": ((1, 3, *mn), (opts.batch, 3, h, w), (opts.batch, 3, *mx))}
    info: dict[str, Any] = {}
    mem, gpu = _open_gpu(opts.device)
    try:
        get_backend("tensorrt").load("converter")(src_onnx, engine_path, fp16=fp16, workspace_gb=opts.workspace_gb, timing_cache=cache,
                                                  dynamic=dynamic, progress=True, info=info, reporter=ex.reporter, int8=int8)
    finally:
        if mem is not None:
            mem.close()
    if info.get("warning"):
        res.notes.append(info["warning"])
    meta["artifacts"][key] = {"file": engine_path.name, "precision": "int8" if int8 else "fp16" if fp16 else "fp32",
                              "sha256": file_sha256(engine_path),
                              "gpu": gpu.get("name"), "compute_capability": gpu.get("compute_capability"), **info}
    write_metadata(res.metadata_path, meta)  # type: ignore[arg-type]


def _finish(ex: _Export) -> ExportResult:
    """Stage times and notes into the sidecar, ordinary permissions on every file written."""
    res, meta = ex.res, ex.meta
    res.stage_seconds = ex.timings
    meta["export"]["stage_seconds"] = ex.timings
    meta["export"]["notes"] = res.notes
    write_metadata(res.metadata_path, meta)  # type: ignore[arg-type]
    _share(res.onnx, res.onnx_fp16, res.onnx_int8, res.onnx_int8_trt, res.engine, res.engine_int8, res.metadata_path)
    _publish(ex, ex.final_dir)
    return res


def _share(*paths: Path | None) -> None:
    """Atomic writes go through mkstemp (mode 0600); exported files are meant to be deployed and
    shared, so give them ordinary permissions (0644 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        if p is not None and p.exists():
            os.chmod(p, 0o644 & ~umask)


__all__ = ["ExportOptions", "ExportResult", "GATES", "ParityGateError", "default_out_dir", "export_model"]
