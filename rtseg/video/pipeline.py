"""The demo's staged loop: capture | preprocess | inference | postprocess + output, overlapped.

Four threads joined by bounded queues, so decoding, preprocessing and drawing run while the
network runs, and the inference thread does nothing but call the runner::

    capture thread      preprocess thread      inference thread      main thread
    decode / render --> resize to the model, --> runner.infer     --> argmax, colorize, blend,
    (source queue:      BGR->RGB, normalize      (or .predict)        FPS text, write / show
     all frames, or     (queue of 4 for files,   (queue of 4 for
     newest only)        1 for live sources)      files, 2 live)

* The main thread does the output because GUI toolkits must be driven from it (``cv2.imshow``).
* Every library call that does real work here (OpenCV, NumPy, ONNX Runtime, TensorRT, torch) releases
  the GIL, so the stages genuinely overlap; the queues are short so memory stays flat. For files
  and the synthetic video they hold 4 frames each side of the network: on a shared CPU a stage is
  paused by the OS for milliseconds at a time, and with 1 and 2 frames the network then waits on
  its neighbours (measured in ``docs/demo.md``); live sources keep 1 and 2 so a shown frame is
  never old.
* When a backend overrides :meth:`Runner.predict` (e.g. arg-max on the GPU, so only labels cross the
  bus), the inference stage calls ``predict`` and postprocessing skips the arg-max; otherwise it
  calls ``infer`` and the arg-max runs in the postprocess stage, off the inference thread.
* Webcams drop stale frames (counted); files and the synthetic video never drop.
* Every exit path (end of stream, disconnect, ``--frames`` reached, q/Esc, Ctrl-C, an error) stops the
  capture, joins the threads and finalizes the output video before returning or raising.

Thread budget on a small CPU: the inference stage should leave room for the other two. With ONNX
Runtime on a 2-core machine, one intra-op thread for the network plus one core for decode/draw is
the configuration where the pipeline costs nothing; see ``docs/demo.md`` for the measurements.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from rtseg.data import preprocess
from rtseg.errors import RtsegError
from rtseg.backends.device import cpu_model
from rtseg.backends.runner import Runner
from rtseg.backends.timing import TimingStats, time_fn
from rtseg.video.cvutil import Display
from rtseg.video.meta import ModelMeta, run_header
from rtseg.video.overlay import bgr_palette, blend_labels, draw_fps
from rtseg.video.sources import FrameSource
from rtseg.video.stats import STAGE_HELP, PipelineStats
from rtseg.video.writer import VideoWriter, WrittenVideo

RECORD_FORMAT = "rtseg.demo_record"
RECORD_SCHEMA_VERSION = 1

_END = object()


@dataclass
class DemoOptions:
    alpha: float = 0.5  # weight of the color map in the blend
    max_frames: int | None = None  # stop after this many frames have been output
    save: Path | None = None  # write the overlaid video here
    show: bool = False  # open a window (needs an OpenCV build with GUI support)
    fps_text: bool = True  # draw the rolling FPS on the frames
    warmup: int = 5  # untimed runner calls before the clock starts
    baseline_iters: int = 0  # if > 0: time runner.infer alone this many times first (no pipeline)
    window: int = 30  # frames in the rolling FPS on the overlay
    # Queue lengths; None: chosen by the source's policy. Files and the synthetic video (never drop)
    # get 4 and 4, so a stage the OS pauses for a few milliseconds (a shared CPU) does not stall
    # the network; webcams and streams get 1 and 2, so a shown frame is never more than a few old.
    prefetch: int | None = None  # preprocess -> inference queue length
    queue_size: int | None = None  # inference -> output queue length


@dataclass
class DemoResult:
    stats: PipelineStats
    end_reason: str
    captured: int
    dropped: int
    output: WrittenVideo | None
    standalone: TimingStats | None
    record: dict[str, Any] = field(default_factory=dict)
    #: ``{"for_input": s, "handing_on": s}``: the inference thread's time outside the runner call.
    inference_waits_s: dict[str, float] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return self.stats.frames


def _uses_device_argmax(runner: Runner) -> bool:
    return type(runner).predict is not Runner.predict


class _Stage(threading.Thread):
    """One pipeline stage: take an item, process it, hand it on; end markers and errors pass through.

    ``get`` returns the next item, ``None`` at the end of the stream, or raises ``TimeoutError``
    (so the stop flag is checked regularly). An exception inside the stage is handed downstream
    to the main thread, which cleans up and re-raises it.

    With ``latest`` (live sources) a result that finds the queue full replaces the waiting one,
    which is dropped and counted, so the next stage always starts on the freshest frame instead of
    one that aged for a whole inference while queued.
    """

    def __init__(self, name: str, get: Callable[[], Any], fn: Callable[[Any], Any], out: "queue.Queue[Any]", stop: threading.Event, latest: bool = False) -> None:
        super().__init__(name=name, daemon=True)
        self.get, self.fn, self.out, self.stop_event, self.latest = get, fn, out, stop, latest
        self.dropped = 0
        # Seconds spent getting an item and handing the result on (empty or full queues, or the thread
        # paused there by the OS): where a stage's time outside its own work went
        # (the inference stage's tell why end-to-end FPS falls short of inference FPS).
        self.wait_in_s = 0.0
        self.wait_out_s = 0.0

    def _put(self, item: Any, replace: bool = False) -> bool:
        if replace:  # single producer: after taking the stale item out, the put cannot fail
            try:
                self.out.put_nowait(item)
                return True
            except queue.Full:
                try:
                    self.out.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass
                self.out.put_nowait(item)
                return True
        while not self.stop_event.is_set():
            try:
                self.out.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        clock = time.perf_counter
        try:
            while not self.stop_event.is_set():
                t0 = clock()
                try:
                    item = self.get()
                except TimeoutError:
                    continue
                finally:
                    self.wait_in_s += clock() - t0
                if item is None or item is _END or isinstance(item, BaseException):
                    self._put(_END if item is None else item)
                    return
                result = self.fn(item)
                t0 = clock()
                handed_on = self._put(result, replace=self.latest)
                self.wait_out_s += clock() - t0
                if not handed_on:
                    return
        except BaseException as exc:
            self._put(exc)


def _queue_getter(q: "queue.Queue[Any]") -> Callable[[], Any]:
    def get() -> Any:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            raise TimeoutError from None

    return get


def _time_alone(runner: Runner, labels_on_device: bool, iters: int) -> TimingStats:
    """The inference stage's exact call (``predict`` or ``infer``, host copies included), timed alone
    with the shared protocol before any other stage runs: the baseline the pipeline is judged by."""
    rng = np.random.default_rng(0)
    h, w = runner.info.input_hw
    xs = [(rng.standard_normal((1, 3, h, w)).astype(np.float32),) for _ in range(2)]
    call = runner.predict if labels_on_device else runner.infer
    return time_fn(call, xs, warmup=0, repeats=iters, device="cpu")


def run_demo(
    source: FrameSource,
    runner: Runner,
    meta: ModelMeta,
    options: DemoOptions | None = None,
    on_frame: Callable[[PipelineStats], None] | None = None,
    model_name: str = "",
) -> DemoResult:
    """Segment ``source`` with ``runner`` through the pipelined loop and return the measurements.

    ``source`` is opened but not started (see :func:`rtseg.video.sources.open_source`); it is
    started here after the warm-up and always stopped before returning. ``on_frame`` is called on
    the main thread after each output frame (progress display).
    """
    try:
        return _run(source, runner, meta, options or DemoOptions(), on_frame, model_name)
    except BaseException:
        source.stop()  # idempotent: a source must never stay open, whatever failed
        raise


def _run(
    source: FrameSource,
    runner: Runner,
    meta: ModelMeta,
    opt: DemoOptions,
    on_frame: Callable[[PipelineStats], None] | None,
    model_name: str,
) -> DemoResult:
    _check_options(opt, runner, meta)
    palette = bgr_palette(meta.palette)
    writer = VideoWriter(opt.save, fps=source.fps or 30.0) if opt.save else None
    display = Display(f"rtseg demo - {model_name or 'model'}") if opt.show else None

    stats = PipelineStats(window=opt.window)
    standalone: TimingStats | None = None
    end_reason = "end of stream"
    stop = threading.Event()
    labels_on_device = _uses_device_argmax(runner)
    stages, out_q = _make_stages(source, runner, meta, opt, stats, stop, labels_on_device)
    output: WrittenVideo | None = None
    error: BaseException | None = None
    try:
        if opt.warmup > 0:
            runner.warmup(opt.warmup)
        if opt.baseline_iters > 0:
            standalone = _time_alone(runner, labels_on_device, opt.baseline_iters)
        source.start()
        for st in stages:
            st.start()
        end_reason = _output_frames(out_q, stages, source, labels_on_device, palette, opt, stats, writer, display, on_frame)
    except KeyboardInterrupt:
        end_reason = "interrupted (Ctrl-C)"
    except BaseException as exc:
        error = exc
    finally:
        output, error = _shut_down(stop, source, stages, display, writer, error)
    if error is not None:
        raise error
    stats.samples["capture"] = list(source.capture_ms)
    result = DemoResult(stats, end_reason, source.captured, source.dropped + stages[0].dropped, output, standalone,
                        inference_waits_s={"for_input": round(stages[1].wait_in_s, 4), "handing_on": round(stages[1].wait_out_s, 4)})
    result.record = build_record(result, source, runner, meta, opt, model_name)
    return result


def _check_options(opt: DemoOptions, runner: Runner, meta: ModelMeta) -> None:
    """Refuse options and models the loop cannot run, before anything is opened."""
    if not 0.0 <= opt.alpha <= 1.0:
        raise RtsegError(f"--alpha must be between 0 and 1, got {opt.alpha}")
    if opt.max_frames is not None and opt.max_frames < 1:
        raise RtsegError(f"--frames must be at least 1, got {opt.max_frames}")
    if runner.info.batch != 1:
        raise RtsegError(f"the demo runs one frame at a time, but this model was built for batch {runner.info.batch}; export it with --batch 1")
    h, w = meta.input_hw
    if h <= 0 or w <= 0:
        raise RtsegError("the model does not record its input size; pass --input HxW")


def _make_stages(source: FrameSource, runner: Runner, meta: ModelMeta, opt: DemoOptions, stats: PipelineStats,
                 stop: threading.Event, labels_on_device: bool) -> tuple[list[_Stage], "queue.Queue[Any]"]:
    """The preprocess and inference stages (not started) and the queue the main thread reads from."""
    h, w = meta.input_hw
    size_wh = (int(w), int(h))
    mean, std = meta.mean, meta.std

    def prep(frame: Any) -> Any:
        t0 = time.perf_counter()
        img = frame.image
        if (img.shape[1], img.shape[0]) != size_wh:
            img = cv2.resize(img, size_wh, interpolation=cv2.INTER_LINEAR)
        x = preprocess(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), mean, std)[None]
        stats.add("preprocess", (time.perf_counter() - t0) * 1000.0)
        return frame, x

    def infer(item: Any) -> Any:
        frame, x = item
        t0 = time.perf_counter()
        y = runner.predict(x) if labels_on_device else runner.infer(x)
        ms = (time.perf_counter() - t0) * 1000.0
        stats.add("inference", ms)
        return frame, y, ms

    every_frame = source.policy == "all"
    pre_q: queue.Queue[Any] = queue.Queue(maxsize=max(1, opt.prefetch or (4 if every_frame else 1)))
    out_q: queue.Queue[Any] = queue.Queue(maxsize=max(1, opt.queue_size or (4 if every_frame else 2)))
    stages = [
        _Stage("rtseg-preprocess", lambda: source.read(timeout=0.1), prep, pre_q, stop, latest=source.policy == "latest"),
        _Stage("rtseg-inference", _queue_getter(pre_q), infer, out_q, stop),
    ]
    return stages, out_q


def _output_frames(out_q: "queue.Queue[Any]", stages: list[_Stage], source: FrameSource, labels_on_device: bool, palette: Any,
                   opt: DemoOptions, stats: PipelineStats, writer: VideoWriter | None, display: Display | None,
                   on_frame: Callable[[PipelineStats], None] | None) -> str:
    """The main thread's stage: arg-max (unless done on the device), blend, FPS text, write / show,
    until the stream ends, the window closes or ``--frames`` is reached; returns why it ended. An
    error handed down by a stage is raised here."""
    while True:
        try:
            item = out_q.get(timeout=0.1)
        except queue.Empty:
            if not any(st.is_alive() for st in stages) and out_q.empty():
                return "end of stream"
            continue
        if item is _END:
            return source.end_reason or "end of stream"
        if isinstance(item, BaseException):
            raise item
        frame, y, inf_ms = item
        t0 = time.perf_counter()
        labels = y[0] if labels_on_device else y[0].argmax(axis=0).astype(np.uint8)
        img = blend_labels(frame.image, labels, palette, opt.alpha)
        if opt.fps_text:
            draw_fps(img, *stats.rolling())
        t1 = time.perf_counter()
        keep_going = True
        if writer is not None:
            writer.write(img)
        if display is not None:
            keep_going = display.show(img)
        t2 = time.perf_counter()
        stats.add("postprocess", (t1 - t0) * 1000.0)
        stats.add("output", (t2 - t1) * 1000.0)
        stats.frame_done(frame.t_ready, t2, inf_ms)
        if on_frame is not None:
            on_frame(stats)
        if not keep_going:
            return "window closed by the user"
        if opt.max_frames is not None and stats.frames >= opt.max_frames:
            return f"reached --frames {opt.max_frames}"


def _shut_down(stop: threading.Event, source: FrameSource, stages: list[_Stage], display: Display | None, writer: VideoWriter | None,
               error: BaseException | None) -> tuple[WrittenVideo | None, BaseException | None]:
    """Every exit path's clean-up: stop the capture, join the stages, close the window, finalize the
    video. Returns the written video and the error to raise (the first one, if closing failed too)."""
    output: WrittenVideo | None = None
    stop.set()
    source.stop()
    for st in stages:
        if st.is_alive():
            st.join(timeout=10.0)
    if display is not None:
        display.close()
    if writer is not None:
        try:
            output = writer.close()
        except BaseException as exc:  # a failed read-back; keep the first error if there was one
            error = error or exc
    return output, error


def build_record(result: DemoResult, source: FrameSource, runner: Runner, meta: ModelMeta, opt: DemoOptions, model_name: str) -> dict[str, Any]:
    """The measurement record: what ran where, how it was counted, and every figure."""
    s = result.stats
    standalone_fps = 1000.0 / result.standalone.mean_ms if result.standalone and result.standalone.mean_ms > 0 else None
    head = run_header(runner, meta, model_name, RECORD_FORMAT, RECORD_SCHEMA_VERSION)
    load, threads = head.pop("load_avg_1_5_15"), head.pop("threads")
    threads.update({"opencv": cv2.getNumThreads(), "pipeline": ["capture", "preprocess", "inference", "output (main)"]})
    rec: dict[str, Any] = {
        **head,
        "host": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "load_avg_1_5_15": load, "opencv": cv2.__version__},
        "threads": threads,
        "source": source.describe(),
        "alpha": opt.alpha,
        "inference_call": "runner.predict (arg-max inside the runner)" if _uses_device_argmax(runner) else "runner.infer (arg-max in postprocess)",
        "frames": s.frames,
        "frames_captured": result.captured,
        "frames_dropped": result.dropped,
        "end_reason": result.end_reason,
        "wall_s": s.wall_s,
        "inference_fps": s.inference_fps,
        "end_to_end_fps": s.end_to_end_fps,
        "end_to_end_over_inference": (s.end_to_end_fps / s.inference_fps) if s.inference_fps > 0 else None,
        "standalone_inference_fps": standalone_fps,
        "inference_waits_s": dict(result.inference_waits_s),
        "standalone_inference": result.standalone.to_dict() if result.standalone else None,
        "warmup_calls": opt.warmup,
        "stages": {k: v.to_dict() for k, v in s.stage_stats().items()},
        "definitions": {
            "inference_fps": "frames / sum of the inference stage time of those frames (runner call only)",
            "end_to_end_fps": "frames / wall time from the first frame decoded to the last frame written or shown",
            "standalone_inference_fps": "1000 / mean ms of the inference stage's runner call timed alone before the run (no pipeline)",
            "inference_waits_s": "seconds the inference thread spent outside the runner call taking a preprocessed frame "
                                 "(for_input: an empty queue, or the thread paused there) and handing its result to the output "
                                 "stage (handing_on: a full queue, or the thread paused there): end-to-end falls short of "
                                 "inference FPS by these",
            **{f"stage.{k}": v for k, v in STAGE_HELP.items()},
        },
        "output": result.output.to_dict() if result.output else None,
    }
    return rec
