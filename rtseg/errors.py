"""User-facing errors.

Anything the user can fix (a wrong path, malformed JSON, an unknown name, a mismatched LUT) raises
:class:`RtsegError` with one sentence saying what is wrong and how to fix it. The CLI prints that
sentence and exits with code 2, never a traceback; library callers get a normal exception.
"""

from __future__ import annotations


class RtsegError(Exception):
    """An error caused by user input; its message is shown to the user as-is."""

    exit_code: int = 2


class MissingDependencyError(RtsegError):
    """An optional dependency (TensorRT, pycuda, ...) is needed but not installed."""
