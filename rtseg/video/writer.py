"""Writing the overlaid video: a codec the installed OpenCV can really write, checked by reading back.

pip's OpenCV wheels ship FFmpeg without libx264 (opencv-python #299), so ``avc1``/``H264`` often fails
to open, and a writer with the wrong codec, size or channel count silently produces an empty file
(deploy.md sec. 5.3). So:

* the codec is **probed**: for the file's extension, each candidate FourCC (browser-friendly H.264
  first, then MPEG-4 Part 2, Motion-JPEG, XVID...) writes two frames to a scratch file, which is then
  decoded again; the first one that round-trips is used (cached per extension and frame size);
* frames are written to a temporary file beside the target (same extension, so FFmpeg picks the
  same container) and moved into place on :meth:`VideoWriter.close`, which runs from ``finally``
  blocks on any exit (end of stream, disconnect, Ctrl-C), so the output is always a finalized file;
* :meth:`VideoWriter.close` reads the result back and reports how many frames it decodes.

The frame rate is passed as an integer (fractional rates break some MP4 muxers).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rtseg.errors import RtsegError
from rtseg.video.cvutil import quiet_native_stderr

#: Candidate FourCCs per container, best first. avc1 (H.264) plays in browsers but needs an
#: encoder the pip wheels usually lack; mp4v always works in .mp4 but browsers will not play it.
CODECS: dict[str, tuple[str, ...]] = {
    ".mp4": ("avc1", "mp4v"),
    ".m4v": ("avc1", "mp4v"),
    ".mov": ("avc1", "mp4v", "MJPG"),
    ".avi": ("MJPG", "XVID", "mp4v"),
    ".mkv": ("avc1", "MJPG", "XVID", "mp4v", "VP80"),  # VP8 last: the slowest encoder on a CPU (docs/demo.md)
    ".webm": ("VP80",),
}

_probe_cache: dict[tuple[str, int, int], str | None] = {}


@dataclass
class WrittenVideo:
    path: str
    codec: str
    fps: int
    size_hw: tuple[int, int]
    frames_written: int
    frames_read_back: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fourcc(code: str) -> int:
    return cv2.VideoWriter_fourcc(*code)


def count_frames(path: str | os.PathLike) -> tuple[int, tuple[int, int] | None]:
    """Decode a video to the end: (frames decoded, (H, W) of the first frame or None)."""
    with quiet_native_stderr():
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    n, hw = 0, None
    try:
        if not cap.isOpened():
            return 0, None
        while True:
            ok, img = cap.read()
            if not ok or img is None:
                break
            if hw is None:
                hw = (int(img.shape[0]), int(img.shape[1]))
            n += 1
    finally:
        cap.release()
    return n, hw


def probe_codec(suffix: str, size_hw: tuple[int, int] = (64, 64), fps: int = 30) -> str | None:
    """The first FourCC for ``suffix`` that this OpenCV can write and read back at ``size_hw``, or None."""
    suffix = suffix.lower()
    h, w = size_hw
    key = (suffix, h, w)
    if key in _probe_cache:
        return _probe_cache[key]
    found: str | None = None
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="rtseg-codec-") as d:
        for code in CODECS.get(suffix, ()):
            p = Path(d) / f"probe-{code}{suffix}"
            with quiet_native_stderr():
                wr = cv2.VideoWriter(str(p), fourcc(code), fps, (w, h))
                ok = wr.isOpened()
                if ok:
                    wr.write(img)
                    wr.write(img)
                wr.release()
            if ok and p.exists() and count_frames(p)[0] == 2:
                found = code
                break
    _probe_cache[key] = found
    return found


class VideoWriter:
    """Write BGR frames of one size to ``path``; the writer opens at the first frame.

    ``codec=None`` probes :data:`CODECS` for the extension. Always :meth:`close` (or use ``with``):
    that finalizes the container, moves it into place and verifies it by reading it back.
    """

    def __init__(self, path: str | os.PathLike, fps: float | None = 30.0, codec: str | None = None) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in CODECS:
            raise RtsegError(
                f"cannot write video {self.path}: unknown extension {suffix or '(none)'!r}; use one of {', '.join(CODECS)}"
            )
        if self.path.is_dir():
            raise RtsegError(f"--save expects a file name, got a directory: {self.path}")
        self.fps = max(1, int(round(fps))) if fps and fps > 0 else 30
        self.codec = codec
        self.frames_written = 0
        self.size_hw: tuple[int, int] | None = None
        self._writer: cv2.VideoWriter | None = None
        self._tmp: Path | None = None
        self.result: WrittenVideo | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(self.path.parent, os.W_OK):
            raise RtsegError(f"cannot write video {self.path}: the folder {self.path.parent} is not writable")

    def _open(self, h: int, w: int) -> None:
        code = self.codec or probe_codec(self.path.suffix, (h, w), self.fps)
        if code is None:
            raise RtsegError(
                f"this OpenCV ({cv2.__version__}) cannot write any of {', '.join(CODECS[self.path.suffix.lower()])} "
                f"into {self.path.suffix} files; try --save out.avi (Motion-JPEG)"
            )
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        with quiet_native_stderr():
            wr = cv2.VideoWriter(str(self._tmp), fourcc(code), self.fps, (w, h))
        if not wr.isOpened():
            self._tmp.unlink(missing_ok=True)
            raise RtsegError(f"OpenCV could not open a {code} writer for {self.path}; try another extension such as .avi")
        self._writer, self.codec, self.size_hw = wr, code, (h, w)

    def write(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"VideoWriter needs BGR uint8 HxWx3 frames, got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        if self._writer is None:
            self._open(h, w)
        elif (h, w) != self.size_hw:
            raise ValueError(f"frame size {h}x{w} differs from the video's {self.size_hw[0]}x{self.size_hw[1]}")
        self._writer.write(np.ascontiguousarray(frame))
        self.frames_written += 1

    def close(self) -> WrittenVideo | None:
        """Finalize, move into place and read back. None when no frame was ever written."""
        if self.result is not None or self._writer is None:
            return self.result
        self._writer.release()
        self._writer = None
        assert self._tmp is not None and self.size_hw is not None and self.codec is not None
        os.chmod(self._tmp, 0o644)  # mkstemp makes 0600; a video is an ordinary shareable file
        os.replace(self._tmp, self.path)
        n, hw = count_frames(self.path)
        self.result = WrittenVideo(str(self.path), self.codec, self.fps, self.size_hw, self.frames_written, n)
        if n == 0 or (hw is not None and hw != self.size_hw):
            raise RtsegError(
                f"the video written to {self.path} does not read back ({n} frames decoded of {self.frames_written}); "
                "try another extension such as .avi"
            )
        return self.result

    def abort(self) -> None:
        """Drop a partial file (used only when the run fails before producing anything useful)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
