"""rtseg: deployment-oriented real-time semantic segmentation.

Public API::

    rtseg.build_model(arch_or_path_or_name) -> nn.Module
    rtseg.load_arch(path_or_name) -> Arch
"""

from importlib.metadata import PackageNotFoundError, version as _pkg_version

try:
    __version__ = _pkg_version("rtseg")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+src"

from typing import Any  # noqa: E402

from rtseg.arch import Arch, builtin_arch_names  # noqa: E402
from rtseg.errors import RtsegError  # noqa: E402


def __getattr__(name: str) -> Any:
    """``rtseg.build_model`` and ``rtseg.load_arch`` come from the space registry, which imports torch:
    loaded on first use, so ``import rtseg`` stays torch-free for a deploy install."""
    if name in ("build_model", "load_arch"):
        from rtseg import spaces

        return getattr(spaces, name)
    raise AttributeError(f"module 'rtseg' has no attribute {name!r}")


__all__ = ["Arch", "RtsegError", "__version__", "build_model", "builtin_arch_names", "load_arch"]
