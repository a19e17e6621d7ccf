"""Small OpenCV facts the demo needs: is there a GUI, and how to keep OpenCV/FFmpeg quiet.

OpenCV and FFmpeg print warnings straight to the process's stderr from C code (``moov atom not
found``, ``can't open camera by index``, failed encoder probes). The demo turns those situations
into one clear sentence of its own, so while it opens a capture or probes a codec it silences
file descriptor 2 for the duration of that call only, and it lowers FFmpeg's own log level to
fatal errors (``OPENCV_FFMPEG_LOGLEVEL=8``, read when OpenCV first uses FFmpeg; set the variable
yourself, e.g. to 32, to see FFmpeg's messages again).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

import cv2

from rtseg.errors import RtsegError

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL: decode chatter off the console


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Redirect fd 2 to /dev/null inside the block (native libraries' chatter), then restore it."""
    try:
        sys.stderr.flush()
    except Exception:  # pragma: no cover - stderr replaced by something odd
        pass
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no fd 2 at all
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    level = None
    try:
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except Exception:  # pragma: no cover - very old OpenCV without utils.logging
        pass
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        if level is not None:
            cv2.utils.logging.setLogLevel(level)


def opencv_gui_backend() -> str | None:
    """The GUI backend OpenCV was built with (``GTK3``, ``QT``, ``WIN32UI``, ``COCOA``...), or None.

    Read from ``cv2.getBuildInformation()``'s ``GUI:`` line; ``opencv-python-headless`` says NONE.
    """
    for line in cv2.getBuildInformation().splitlines():
        s = line.strip()
        if s.startswith("GUI:"):
            value = s.split(":", 1)[1].strip()
            return None if not value or value.upper() == "NONE" else value
    return None


#: The pip distributions of OpenCV. All four install the same ``cv2`` folder, so two of them in one
#: environment overwrite each other's files (the last installed wins, and uninstalling either one then
#: breaks ``import cv2``): exactly one may be installed.
OPENCV_DISTRIBUTIONS = ("opencv-python", "opencv-contrib-python", "opencv-python-headless", "opencv-contrib-python-headless")


def opencv_distributions() -> list[str]:
    """The OpenCV pip distributions installed here (normally one; none for a conda or system OpenCV)."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for dist in OPENCV_DISTRIBUTIONS:
        try:
            version(dist)
        except PackageNotFoundError:
            continue
        found.append(dist)
    return found


def gui_install_command(installed: list[str]) -> str:
    """The pip command that replaces a headless OpenCV by the GUI build of the same flavour.

    The headless package is uninstalled first (the two share ``cv2``), and so is a GUI package that is
    already there, because the headless one overwrote its files: ``pip install`` alone would call it
    satisfied and leave the headless files in place.
    """
    gui = "opencv-contrib-python" if any("contrib" in d for d in installed) else "opencv-python"
    remove = [d for d in installed if d.endswith("-headless") or d == gui]
    return (f"pip uninstall -y {' '.join(remove)} && " if remove else "") + f"pip install {gui}"


def gui_unavailable_reason() -> str | None:
    """None when ``cv2.imshow`` can open a window here, else one sentence saying why not and what to do."""
    backend = opencv_gui_backend()
    if backend is None:
        installed = opencv_distributions()
        origin = f"from {' and '.join(installed)}" if installed else "not installed by pip"
        clash = " (both are installed, and they overwrite each other's cv2 files)" if len(installed) > 1 else ""
        return (
            f"this OpenCV build ({cv2.__version__}, {origin}) has no GUI support, so --show cannot open a window{clash}; "
            f"install the GUI build with `{gui_install_command(installed)}`, or use --no-show --save out.mp4"
        )
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display is available (DISPLAY is not set), so --show cannot open a window; use --no-show --save out.mp4"
    return None


class Display:
    """One OpenCV window on the main thread; ``show`` returns False once the user quits (q, Esc, close)."""

    def __init__(self, title: str = "rtseg demo") -> None:
        reason = gui_unavailable_reason()
        if reason:
            raise RtsegError(reason)
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:  # a GUI build that still cannot reach a display
            msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
            raise RtsegError(f"OpenCV could not open a window ({msg}); use --no-show --save out.mp4") from None
        self._open = True

    def show(self, img: "object") -> bool:
        cv2.imshow(self.title, img)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return False
        try:
            if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                return False
        except cv2.error:  # pragma: no cover - backends without the property
            pass
        return True

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:  # pragma: no cover
                pass
