"""rtseg: deployment-oriented real-time semantic segmentation.

Public API::

    rtseg.build_model(arch_or_path_or_name) -> nn.Module
    rtseg.load_arch(path_or_name) -> Arch
"""

from typing import Any

from rtseg.arch import Arch, builtin_arch_names
from rtseg.errors import RtsegError
from rtseg.version import __version__


def __getattr__(name: str) -> Any:
    """``rtseg.build_model`` and ``rtseg.load_arch`` come from the space registry, which imports torch:
    loaded on first use, so ``import rtseg`` stays torch-free for a deploy install."""
    if name in ("build_model", "load_arch"):
        from rtseg import spaces

        return getattr(spaces, name)
    raise AttributeError(f"module 'rtseg' has no attribute {name!r}")


__all__ = ["Arch", "RtsegError", "__version__", "build_model", "builtin_arch_names", "load_arch"]
