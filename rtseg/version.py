"""The installed rtseg's version, recorded in every file rtseg writes (LUTs, checkpoints, exports, bench
records). A leaf module: reading it imports nothing else of rtseg (``import rtseg`` reaches the
space registry for ``rtseg.build_model``)."""

from importlib.metadata import PackageNotFoundError, version as _pkg_version

try:
    __version__ = _pkg_version("rtseg")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+src"
