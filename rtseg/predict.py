"""Segment image files with any model rtseg loads: what ``rtseg predict`` runs.

A user's first question of a segmentation model is "what does it make of my pictures?". This
module answers it with the same pieces the live demo and ``rtseg bench`` use, so a picture is
segmented exactly as a video frame would be:

* the model goes through :func:`rtseg.runtime.load_runner` (built-in name, arch JSON, checkpoint,
  ONNX with its sidecar, TensorRT engine); its normalization, palette and input size come from the
  model itself (:func:`rtseg.video.meta.model_meta`), never from constants here;
* each image is read as OpenCV reads it (PNG, JPEG, BMP, TIFF, WebP, PNM...; grey and 16-bit images
  become 8-bit BGR), resized to the model's input, normalized with
  :func:`rtseg.data.preprocess`, run through the runner, and the labels are brought back to the
  image's own resolution with nearest-neighbour resizing (class ids must never be interpolated);
* the overlay is drawn by :func:`rtseg.video.overlay.blend_labels`, the demo's own blend.

Outputs, in ``out`` (an input never gets overwritten: that is refused before any work)::

    <name><ext>              the image blended with its class colours, in the input's format
    masks/<name>.png         with save_mask: single-channel uint8 PNG of the model's class ids
    masks_color/<name>.png   with save_mask: the same labels coloured with the model's palette
    predict.json             the record: model, backend, device, per-image files and timings

``<name>`` is the input's file name without its extension (``_1``, ``_2``... appended when two
inputs share one). A file that is not an image OpenCV can read is skipped with its reason and the
run goes on; the caller decides what to make of the count (``rtseg predict`` exits 2).

Nothing here imports PyTorch: on an ONNX file or a TensorRT engine, only the runner's own runtime,
OpenCV and NumPy run.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from rtseg.data import colorize, preprocess
from rtseg.errors import RtsegError
from rtseg.io import atomic_save, atomic_write_json, check_not_input, read_regular_bytes
from rtseg.backends.device import cpu_model
from rtseg.backends.runner import Runner
from rtseg.backends.timing import TimingStats
from rtseg.runtime import load_runner
from rtseg.video.cvutil import quiet_native_stderr
from rtseg.video.meta import ModelMeta, model_meta, run_header
from rtseg.video.overlay import bgr_palette, blend_labels

RECORD_FORMAT = "rtseg.predict_record"
RECORD_SCHEMA_VERSION = 1
DEFAULT_OUT = Path("rtseg-out/predict")

#: Suffixes taken from a folder (case-insensitive): what OpenCV's image codecs read. Files named
#: explicitly, or matched by a glob, are tried whatever their suffix.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".jp2",
                  ".pbm", ".pgm", ".ppm", ".pnm", ".pxm", ".sr", ".ras", ".exr", ".hdr", ".pic")
#: Overlays keep the input's format when OpenCV writes it everywhere; other inputs get a PNG overlay.
_OVERLAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".gif")
_GLOB_CHARS = set("*?[")

#: Per-image stages, in order, and what each one times.
STAGE_HELP: dict[str, str] = {
    "read": "read and decode the file",
    "preprocess": "resize to the model input, BGR->RGB, normalize",
    "inference": "the runner call (network, host copies included)",
    "postprocess": "arg-max if needed, labels back to the image size, blend",
    "write": "encode and write the outputs",
    "total": "one image, read to written",
}


@dataclass
class ImageResult:
    """One input: what was written for it, how long each stage took, or why it was skipped."""

    source: str
    name: str = ""
    size_hw: tuple[int, int] | None = None
    overlay: str | None = None
    mask: str | None = None
    mask_color: str | None = None
    times_ms: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None  # the reason, when the file could not be segmented

    @property
    def ok(self) -> bool:
        return self.skipped is None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size_hw"] = list(self.size_hw) if self.size_hw else None
        return d


@dataclass
class PredictResult:
    images: list[ImageResult]
    out: Path
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> list[ImageResult]:
        return [r for r in self.images if r.ok]

    @property
    def skipped(self) -> list[ImageResult]:
        return [r for r in self.images if not r.ok]

    def stage_stats(self) -> dict[str, TimingStats]:
        """Mean/p90... per stage over the segmented images (empty when none was)."""
        done = self.done
        return {s: TimingStats.from_samples([r.times_ms[s] for r in done]) for s in STAGE_HELP if done}


# -- which files ----------------------------------------------------------------------------------
def _is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def collect_images(sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand SOURCE arguments into the files to segment, in the order given, each once.

    A file is taken as it is (whatever its suffix: a non-image is reported when it is read); a
    folder gives its images (by suffix, sorted, not recursive); a pattern with ``*``, ``?`` or
    ``[`` is expanded (``**`` recurses) to the files it matches, sorted. A path that does not exist,
    a pattern that matches nothing and a folder without images are user errors, raised before
    any work.
    """
    if not sources:
        raise RtsegError("no images given; pass image files, folders or glob patterns such as 'photos/*.jpg'")
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)

    for src in sources:
        text = os.fspath(src)
        p = Path(text)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise RtsegError(f"the folder {p} holds no image files ({', '.join(s[1:] for s in IMAGE_SUFFIXES[:9])}...)")
            for f in files:
                add(f)
        elif p.exists():
            add(p)
        elif _is_glob(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                raise RtsegError(f"the pattern {text!r} matches no files; check it (quote it so the shell does not expand it)")
            for f in files:
                add(f)
        else:
            raise RtsegError(f"image or folder not found: {p} (check the path)")
    return out


def output_names(paths: Sequence[Path]) -> list[str]:
    """One output name per input: its stem, made unique with ``_1``, ``_2``... in input order."""
    used: set[str] = set()
    names = []
    for p in paths:
        base = p.stem or "image"
        name, i = base, 0
        while name.lower() in used:
            i += 1
            name = f"{base}_{i}"
        used.add(name.lower())
        names.append(name)
    return names


def _overlay_suffix(p: Path) -> str:
    s = p.suffix.lower()
    return s if s in _OVERLAY_SUFFIXES else ".png"


def planned_outputs(path: Path, name: str, out: Path, save_mask: bool) -> dict[str, Path]:
    files = {"overlay": out / f"{name}{_overlay_suffix(path)}"}
    if save_mask:
        files["mask"] = out / "masks" / f"{name}.png"
        files["mask_color"] = out / "masks_color" / f"{name}.png"
    return files


def check_outputs(paths: Sequence[Path], out: Path, save_mask: bool) -> list[str]:
    """The output names of ``paths``, after refusing an ``out`` that is a file or whose outputs
    would overwrite one of the inputs (e.g. ``--out`` the input folder itself)."""
    if out.exists() and not out.is_dir():
        raise RtsegError(f"--out must be a folder, but {out} is a file")
    names = output_names(paths)
    inputs = {p.resolve() for p in paths}
    for p, name in zip(paths, names):
        for f in planned_outputs(p, name, out, save_mask).values():
            if f.resolve() in inputs:
                raise RtsegError(f"writing the results to {out} would overwrite the input {f}; choose another --out folder")
    return names


# -- reading and writing images -------------------------------------------------------------------
#: Largest image file read (a 16-bit 16K x 16K TIFF is 1.5 GiB); beyond it the path is a mistake.
MAX_IMAGE_BYTES = 2 * 2**30


def read_image(path: Path) -> tuple[np.ndarray | None, str | None]:
    """``(BGR uint8 image, None)``, or ``(None, why it is not one)``; never raises for a bad file.

    Decoded from the bytes (``cv2.imdecode``) so that any file name works, with OpenCV's and the
    codecs' own warnings kept off the console (the reason is returned instead).
    """
    try:  # a FIFO or a device (/dev/zero) is refused, never read: it would block or never end
        data = np.frombuffer(read_regular_bytes(path, "image", MAX_IMAGE_BYTES), dtype=np.uint8)
    except RtsegError as exc:
        return None, str(exc).replace(f"image {path} ", "").replace(f": {path}", "")
    if data.size == 0:
        return None, "an empty file"
    with quiet_native_stderr():
        try:
            img = cv2.imdecode(data, cv2.IMREAD_COLOR)
        except cv2.error:
            img = None
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        if path.suffix.lower() in _VIDEO_SUFFIXES:
            return None, f"a video, not an image; segment it with rtseg demo --source {path}"
        return None, "not an image OpenCV can read"
    return img, None


def write_image(path: Path, img: np.ndarray) -> None:
    """Encode by the file's suffix and write atomically: a temporary file renamed into place, so an
    interruption never leaves half a PNG (not fsynced one by one: an fsync per file costs more than
    encoding a small mask; see docs/predict.md)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, img, params)
    if not ok:  # pragma: no cover - every suffix used here is one OpenCV encodes
        raise RtsegError(f"OpenCV could not encode {path.name}; use another output format")
    atomic_save(path, lambda tmp: tmp.write_bytes(buf.tobytes()))


# -- segmenting -----------------------------------------------------------------------------------
def predict_images(
    runner: Runner,
    meta: ModelMeta,
    paths: Sequence[Path],
    out: str | os.PathLike[str] = DEFAULT_OUT,
    *,
    save_mask: bool = False,
    alpha: float = 0.5,
    warmup: int = 3,
    model_name: str = "",
    on_image: Callable[[int, int, ImageResult], None] | None = None,
) -> PredictResult:
    """Segment ``paths`` with a loaded ``runner`` (``meta`` from :func:`rtseg.video.meta.model_meta`).

    ``on_image(i, n, result)`` is called after each input (progress display; skipped inputs too).
    The record is also written to ``out/predict.json``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise RtsegError(f"--alpha must be between 0 and 1, got {alpha}")
    if warmup < 0:
        raise RtsegError(f"--warmup must be 0 or more, got {warmup}")
    if runner.info.batch != 1:
        raise RtsegError(f"predict runs one image at a time, but this model was built for batch {runner.info.batch}; export it with --batch 1")
    h, w = meta.input_hw
    if h <= 0 or w <= 0:
        raise RtsegError("the model does not record its input size; pass --input HxW")
    out = Path(out)
    names = check_outputs(paths, out, save_mask)
    out.mkdir(parents=True, exist_ok=True)

    palette = bgr_palette(meta.palette)
    labels_from_predict = type(runner).predict is not Runner.predict  # arg-max inside the runner (e.g. on the GPU)
    if warmup:
        runner.warmup(warmup)

    results: list[ImageResult] = []
    n = len(paths)
    for i, (path, name) in enumerate(zip(paths, names)):
        res = ImageResult(source=str(path), name=name)
        t0 = time.perf_counter()
        img, why = read_image(path)
        if img is None:
            res.skipped = why
        else:
            _segment(res, img, path, t0, out, runner, meta, palette, labels_from_predict, alpha, save_mask)
        results.append(res)
        if on_image is not None:
            on_image(i, n, res)

    result = PredictResult(results, out)
    result.record = build_record(result, runner, meta, model_name=model_name, alpha=alpha, save_mask=save_mask, warmup=warmup)
    atomic_write_json(out / "predict.json", result.record)
    return result


def _segment(res: ImageResult, img: np.ndarray, path: Path, t0: float, out: Path, runner: Runner, meta: ModelMeta, palette: Any,
             labels_from_predict: bool, alpha: float, save_mask: bool) -> None:
    """Segment one image read at ``t0`` and write its overlay (and masks); ``res`` gets the files
    and the time each step took."""
    t1 = time.perf_counter()
    h, w = meta.input_hw
    ih, iw = img.shape[:2]
    res.size_hw = (ih, iw)
    small = img if (ih, iw) == (h, w) else cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    x = preprocess(cv2.cvtColor(small, cv2.COLOR_BGR2RGB), meta.mean, meta.std)[None]
    t2 = time.perf_counter()
    if labels_from_predict:
        labels = np.asarray(runner.predict(x))[0]
    else:
        y = runner.infer(x)
    t3 = time.perf_counter()
    if not labels_from_predict:
        labels = y[0].argmax(axis=0)
    labels = labels.astype(np.uint8, copy=False)
    if labels.shape != (ih, iw):
        labels = cv2.resize(labels, (iw, ih), interpolation=cv2.INTER_NEAREST)
    overlay = blend_labels(img, labels, palette, alpha)
    t4 = time.perf_counter()
    files = planned_outputs(path, res.name, out, save_mask)
    write_image(files["overlay"], overlay)
    if save_mask:
        write_image(files["mask"], labels)
        write_image(files["mask_color"], colorize(labels, palette))
    t5 = time.perf_counter()
    for key, f in files.items():
        setattr(res, key, str(f))
    res.times_ms = {k: round(1000.0 * v, 4) for k, v in (
        ("read", t1 - t0), ("preprocess", t2 - t1), ("inference", t3 - t2), ("postprocess", t4 - t3),
        ("write", t5 - t4), ("total", t5 - t0))}


def predict(
    model: str | os.PathLike[str],
    sources: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] = DEFAULT_OUT,
    *,
    backend: str | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    input_hw: tuple[int, int] | None = None,
    threads: int | None = None,
    save_mask: bool = False,
    alpha: float = 0.5,
    warmup: int = 3,
    on_image: Callable[[int, int, ImageResult], None] | None = None,
) -> PredictResult:
    """Load ``model`` with :func:`rtseg.runtime.load_runner` and segment ``sources`` into ``out``.

    The sources are expanded and the outputs checked first (:func:`collect_images`,
    :func:`check_outputs`), so a wrong path fails before the model loads; the runner is always closed.
    """
    paths = collect_images(sources)
    check_outputs(paths, Path(out), save_mask)
    check_not_input(Path(out) / "predict.json", [model], "the record")
    runner = load_runner(model, backend=backend, device=device, precision=precision, input_hw=input_hw, batch=1, threads=threads)
    try:
        meta = model_meta(runner, name=f"model {model}")
        return predict_images(runner, meta, paths, out, save_mask=save_mask, alpha=alpha, warmup=warmup,
                              model_name=str(model), on_image=on_image)
    finally:
        runner.close()


def build_record(result: PredictResult, runner: Runner, meta: ModelMeta, *, model_name: str, alpha: float, save_mask: bool,
                 warmup: int) -> dict[str, Any]:
    """What ran where, every file written, and the per-stage timings (mean, p90...)."""
    head = run_header(runner, meta, model_name, RECORD_FORMAT, RECORD_SCHEMA_VERSION)
    load, threads = head.pop("load_avg_1_5_15"), head.pop("threads")
    done, skipped = result.done, result.skipped
    return {
        **head,
        "class_names": list(meta.class_names),
        "palette": [list(c) for c in meta.palette],
        "out": str(result.out),
        "alpha": alpha,
        "save_mask": save_mask,
        "warmup_calls": warmup,
        "inference_call": "runner.predict (arg-max inside the runner)" if type(runner).predict is not Runner.predict
        else "runner.infer (arg-max in postprocess)",
        "images_total": len(result.images),
        "images_done": len(done),
        "images_skipped": len(skipped),
        "stages": {k: v.to_dict() for k, v in result.stage_stats().items()},
        "definitions": {f"stage.{k}": v for k, v in STAGE_HELP.items()},
        "images": [r.to_dict() for r in done],
        "skipped": [{"source": r.source, "reason": r.skipped} for r in skipped],
        "host": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "load_avg_1_5_15": load, "opencv": cv2.__version__},
        "threads": threads,
    }


__all__ = [
    "DEFAULT_OUT", "IMAGE_SUFFIXES", "ImageResult", "PredictResult", "STAGE_HELP", "check_outputs", "collect_images", "output_names",
    "predict", "predict_images", "read_image",
]
