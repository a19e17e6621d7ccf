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

from rtseg.arch import Arch, build_model, builtin_arch_names, load_arch  # noqa: E402
from rtseg.errors import RtsegError  # noqa: E402

__all__ = ["Arch", "RtsegError", "__version__", "build_model", "builtin_arch_names", "load_arch"]
