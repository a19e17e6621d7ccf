"""Frame sources for the demo: webcam, video file, network stream and the synthetic street scene.

Each source decodes in its **own capture thread**, so decoding overlaps inference, and hands frames
to the pipeline through one of two policies:

* ``latest`` (webcams and network streams): a one-frame slot that the capture thread keeps
  overwriting. The consumer always gets the newest frame, stale frames are dropped and counted, and
  the camera's driver buffer never fills up (the latency problem of opencv #13145).
* ``all`` (files and the synthetic video): a bounded queue; the capture thread blocks when it is
  full, so every frame is processed in order and none is ever dropped.

Opening happens synchronously in :func:`open_source` and reads the first frame, so a camera that
does not open, a missing file or a file that is not a video fails there with one clear
:class:`RtsegError`, before any thread starts. A stream that ends or disconnects later ends the run
cleanly, with :attr:`FrameSource.end_reason` saying why.

Frames are BGR uint8 (OpenCV's convention) for every source.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from rtseg.data.synthetic import video_frames
from rtseg.errors import RtsegError
from rtseg.io import check_regular_file, parse_hw
from rtseg.video.cvutil import quiet_native_stderr
from rtseg.video.writer import VideoWriter, WrittenVideo


@dataclass
class Frame:
    index: int  # position in the source's stream (gaps show dropped frames)
    image: np.ndarray  # BGR uint8 H x W x 3
    t_ready: float  # time.perf_counter() when decoding finished


class FrameSource:
    """Base of all sources: subclasses implement :meth:`_next_image` (and :meth:`_release`).

    Use as a context manager, or call :meth:`start` / :meth:`read` / :meth:`stop`. :meth:`read`
    returns ``None`` once the source has ended; :attr:`end_reason` then says why.
    """

    kind: str = "source"
    policy: str = "all"  # "all" (never drop) or "latest" (keep only the newest frame)

    def __init__(self, name: str, first: np.ndarray, fps: float | None, frame_count: int | None, queue_size: int = 4) -> None:
        self.name = name
        self.fps = fps if fps and math.isfinite(fps) and fps > 0 else None
        self.frame_count = frame_count if frame_count and frame_count > 0 else None
        self.size = (int(first.shape[0]), int(first.shape[1]))  # (H, W)
        self.captured = 0
        self.dropped = 0
        self.end_reason: str | None = None
        self.capture_ms: list[float] = []
        self._first: np.ndarray | None = first
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._queue: queue.Queue[Frame | None] = queue.Queue(maxsize=max(1, queue_size))
        self._slot: Frame | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # --- subclass interface -------------------------------------------------------------------
    def _next_image(self) -> np.ndarray | None:
        """Decode the next frame (BGR uint8), or None when the stream is over (set end_reason)."""
        raise NotImplementedError

    def _release(self) -> None:
        pass

    # --- public API -----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "policy": self.policy,
            "size_hw": list(self.size),
            "fps": self.fps,
            "frame_count": self.frame_count,
        }

    def start(self) -> "FrameSource":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"rtseg-capture-{self.kind}", daemon=True)
            self._thread.start()
        return self

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame (``all``) or the newest one (``latest``); None when the source has ended.

        Raises ``TimeoutError`` if no frame arrives within ``timeout`` seconds.
        """
        if self.policy == "latest":
            with self._cond:
                if not self._cond.wait_for(lambda: self._slot is not None or self._ended.is_set(), timeout=timeout):
                    raise TimeoutError(f"no frame from {self.name} within {timeout} s")
                frame, self._slot = self._slot, None
                return frame
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no frame from {self.name} within {timeout} s") from None

    def stop(self) -> None:
        """Stop capturing and release the device or file (idempotent, safe from any thread)."""
        self._stop.set()
        deadline = time.monotonic() + 5.0
        if self._thread is not None:
            # Unblock a capture thread waiting on a full queue.
            while self._thread.is_alive() and time.monotonic() < deadline:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=0.05)
        if self.end_reason is None:
            self.end_reason = "stopped"
        if self._thread is None or not self._thread.is_alive():
            self._release()
        # else: a driver call that never returns; releasing under it could crash, and the
        # daemon thread goes away with the process.

    def __enter__(self) -> "FrameSource":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            f = self.read()
            if f is None:
                return
            yield f

    # --- capture thread -----------------------------------------------------------------------
    def _run(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                if self._first is not None:  # decoded by open_*(); its time is not a capture sample
                    img, self._first, timed = self._first, None, False
                else:
                    img, timed = self._next_image(), True
                t1 = time.perf_counter()
                if img is None:
                    break
                if timed:
                    self.capture_ms.append((t1 - t0) * 1000.0)
                self.captured += 1
                frame = Frame(index, img, t1)
                index += 1
                if self.policy == "latest":
                    with self._cond:
                        if self._slot is not None:
                            self.dropped += 1
                        self._slot = frame
                        self._cond.notify_all()
                else:
                    while not self._stop.is_set():
                        try:
                            self._queue.put(frame, timeout=0.05)
                            break
                        except queue.Full:
                            continue
        except BaseException as exc:  # surfaced as the end reason; the run still ends cleanly
            self._error = exc
            self.end_reason = f"capture failed: {exc}"
        finally:
            if self.end_reason is None:
                self.end_reason = "stopped" if self._stop.is_set() else "end of stream"
            self._ended.set()
            with self._cond:
                self._cond.notify_all()
            if self.policy == "all":
                while True:  # the end marker must get through even to a slow consumer
                    try:
                        self._queue.put(None, timeout=0.05)
                        break
                    except queue.Full:
                        if self._stop.is_set():
                            break


class _CaptureSource(FrameSource):
    """A source backed by ``cv2.VideoCapture`` (file, camera or stream URL)."""

    def __init__(self, cap: cv2.VideoCapture, name: str, first: np.ndarray, queue_size: int = 4) -> None:
        self._cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        super().__init__(name, first, fps, n if self.kind == "file" else None, queue_size)
        self._failures = 0

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()


class FileSource(_CaptureSource):
    """Every frame of a video file, in order."""

    kind = "file"
    policy = "all"

    def _next_image(self) -> np.ndarray | None:
        ok, img = self._cap.read()
        if ok and img is not None:
            return img
        done = self.captured
        if self.frame_count is not None and done + 2 < self.frame_count:
            self.end_reason = f"the video ended early: it could only decode {done} of {self.frame_count} frames (truncated or corrupt file?)"
        else:
            self.end_reason = "end of file"
        return None


class LiveSource(_CaptureSource):
    """A webcam or a network stream: the newest frame only; retries briefly before calling it lost."""

    kind = "webcam"
    policy = "latest"
    max_failures = 20  # consecutive failed reads (about 1 s) before the camera counts as disconnected

    def __init__(self, cap: cv2.VideoCapture, name: str, first: np.ndarray, kind: str = "webcam") -> None:
        self.kind = kind
        super().__init__(cap, name, first)

    def _next_image(self) -> np.ndarray | None:
        while not self._stop.is_set():
            ok, img = self._cap.read()
            if ok and img is not None:
                self._failures = 0
                return img
            self._failures += 1
            if self._failures >= self.max_failures:
                what = "camera" if self.kind == "webcam" else "stream"
                self.end_reason = f"the {what} stopped delivering frames (disconnected?) after {self.captured} frames"
                return None
            time.sleep(0.05)
        return None


class SyntheticSource(FrameSource):
    """The package's procedural street-scene video (``rtseg.data.synthetic.video_frames``), in order.

    Rendering runs in the capture thread, where a real source would decode, so the demo behaves
    the same on a machine with no camera and no video file.
    """

    kind = "synthetic"
    policy = "all"

    def __init__(self, n: int, h: int, w: int, seed: int = 0, fps: float = 15.0, queue_size: int = 4) -> None:
        self._gen = iter(video_frames(n, h, w, seed=seed, fps=fps))
        first = self._render()
        if first is None:
            raise RtsegError("the synthetic source needs at least one frame (--frames 1 or more)")
        super().__init__(f"synthetic:{h}x{w}", first, fps, n, queue_size)
        self.seed = seed

    def _render(self) -> np.ndarray | None:
        try:
            rgb, _label = next(self._gen)
        except StopIteration:
            return None
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)

    def _next_image(self) -> np.ndarray | None:
        img = self._render()
        if img is None:
            self.end_reason = "end of the synthetic video"
        return img


def render_synthetic_video(
    path: str | os.PathLike,
    frames: int,
    hw: tuple[int, int],
    seed: int = 0,
    fps: float = 15.0,
) -> WrittenVideo:
    """Render the synthetic street video into a file (codec probed, read back), for replaying.

    The synthetic source renders each frame in the capture thread, several milliseconds a frame
    even at 64x128: with a fast model that renderer, not the pipeline, sets the end-to-end frame
    rate. Rendering to a file first and replaying it (:func:`open_file`) measures what a user's
    video would see: decoding, the pipeline and the network. Returns what was written.
    """
    if frames < 1:
        raise RtsegError("the synthetic video needs at least one frame")
    h, w = hw
    src = SyntheticSource(frames, h, w, seed=seed, fps=fps)
    with src, VideoWriter(path, fps=src.fps) as writer:
        for frame in src:
            writer.write(frame.image)
    assert writer.result is not None  # at least one frame was written
    return writer.result


def _open_capture(target: int | str, api: int = cv2.CAP_ANY) -> cv2.VideoCapture:
    with quiet_native_stderr():
        return cv2.VideoCapture(target, api)


def _read_first(cap: cv2.VideoCapture) -> np.ndarray | None:
    with quiet_native_stderr():
        ok, img = cap.read()
    return img if ok and img is not None and img.ndim == 3 else None


def open_webcam(index: int, width: int | None = None, height: int | None = None) -> LiveSource:
    """Open camera ``index``, asking for MJPG (USB cameras deliver 720p/1080p at 30 FPS only so)
    and a one-frame driver buffer, and read a first frame."""
    api = cv2.CAP_DSHOW if sys.platform == "win32" else cv2.CAP_ANY  # MSMF can take minutes to open
    cap = _open_capture(index, api)
    if not cap.isOpened():
        hint = " (no /dev/video* device exists on this machine)" if sys.platform.startswith("linux") and not any(
            Path("/dev").glob("video*")
        ) else ""
        raise RtsegError(
            f"camera {index} could not be opened{hint}; check that it is connected and not in use, try another "
            "index, or use --source FILE or --source synthetic"
        )
    with quiet_native_stderr():
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    first = _read_first(cap)
    if first is None:
        cap.release()
        raise RtsegError(f"camera {index} opened but delivered no frame; check the camera, or try another index")
    return LiveSource(cap, f"camera {index}", first, kind="webcam")


def open_stream(url: str) -> LiveSource:
    """A network stream (rtsp://, http://...) through FFmpeg; newest frame only."""
    cap = _open_capture(url, cv2.CAP_FFMPEG)
    first = _read_first(cap) if cap.isOpened() else None
    if first is None:
        cap.release()
        raise RtsegError(f"the stream {url} could not be opened or delivered no frame; check the URL and the network")
    return LiveSource(cap, url, first, kind="stream")


def open_file(path: str | os.PathLike, queue_size: int = 4) -> FileSource:
    p = Path(path)
    if not p.exists():
        raise RtsegError(f"video file not found: {p} (check the path; use --source 0 for a webcam or --source synthetic)")
    check_regular_file(p, "video file")  # a FIFO would block the reader forever, /dev/zero never end
    if not p.is_file():
        raise RtsegError(f"expected a video file, got a directory: {p}")
    cap = _open_capture(str(p), cv2.CAP_FFMPEG)
    first = _read_first(cap) if cap.isOpened() else None
    if first is None:
        cap.release()
        raise RtsegError(f"{p} is not a video OpenCV can decode (wrong format or corrupt file); try an .mp4 or .avi file")
    return FileSource(cap, str(p), first, queue_size)


def open_source(
    spec: str | int,
    *,
    synthetic_hw: tuple[int, int] = (256, 512),
    synthetic_frames: int = 300,
    seed: int = 0,
    queue_size: int = 4,
) -> FrameSource:
    """Open a source from its command-line spelling (not started yet).

    * ``0``, ``1``... : that webcam (newest frame only, drops counted);
    * ``synthetic`` or ``synthetic:HxW`` : the procedural street-scene video, ``synthetic_frames``
      frames at ``synthetic_hw`` (or the given size);
    * ``rtsp://...``, ``http://...`` : a network stream (newest frame only);
    * anything else: a video file (every frame, in order).
    """
    if isinstance(spec, int):
        return open_webcam(spec)
    s = str(spec).strip()
    if s.isdigit():
        return open_webcam(int(s))
    if s == "synthetic" or s.startswith("synthetic:"):
        hw = parse_hw(s.split(":", 1)[1]) if ":" in s else synthetic_hw
        if synthetic_frames < 1:
            raise RtsegError("the synthetic source needs at least one frame (--frames 1 or more)")
        return SyntheticSource(synthetic_frames, hw[0], hw[1], seed=seed, queue_size=queue_size)
    if "://" in s:
        return open_stream(s)
    return open_file(s, queue_size=queue_size)
