"""How long jobs (profiling, search, training, export, validation) tell a person what they are doing.

The library never reaches for the command line's console: a job takes a :class:`Reporter` and
speaks through it. :class:`SilentReporter` (the default for library calls and tests) says nothing;
:class:`RichReporter` draws rich progress bars and messages on a console the caller owns (the CLI
hands in its stderr console, so ``--json`` output on stdout stays clean).

A job reports in two ways::

    with reporter.task("profile", total=len(entries)) as bar:
        for entry in entries:
            ...
            bar.advance(info=f"{entry.key}")   # one step done, with an optional short status
    reporter.message("wrote lut.json")          # one line, outside any bar
    reporter.warn("3 entries failed")           # one line, marked as a warning
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


class TaskBar:
    """One running task: a description, an optional total and a short status text."""

    def advance(self, steps: float = 1, info: str | None = None) -> None:
        """Mark ``steps`` more units of work done; ``info`` replaces the short status text."""

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None, info: str | None = None) -> None:
        """Set the position, total, description or status directly (e.g. after resuming)."""


class Reporter:
    """Says nothing. Subclasses draw progress and messages somewhere a person can see them."""

    @contextmanager
    def task(self, description: str, total: float | None = None, completed: float = 0) -> Iterator[TaskBar]:
        """A task that lasts the ``with`` block; ``completed`` starts it part-way (a resumed job)."""
        yield TaskBar()

    def message(self, text: str) -> None:
        """One line of information (rich markup allowed)."""

    def warn(self, text: str) -> None:
        """One line a person should not miss."""


class SilentReporter(Reporter):
    """The library default: no output at all."""


class _RichTaskBar(TaskBar):
    def __init__(self, progress: Any, task_id: Any) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, steps: float = 1, info: str | None = None) -> None:
        fields = {} if info is None else {"info": info}
        self._progress.update(self._id, advance=steps, **fields)

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None, info: str | None = None) -> None:
        kw: dict[str, Any] = {}
        if completed is not None:
            kw["completed"] = completed
        if total is not None:
            kw["total"] = total
        if description is not None:
            kw["description"] = description
        if info is not None:
            kw["info"] = info
        self._progress.update(self._id, **kw)


class RichReporter(Reporter):
    """Rich progress bars (description, bar, done/total, elapsed, remaining, status) on ``console``."""

    def __init__(self, console: Any | None = None, transient: bool = False) -> None:
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True)
        self.transient = transient

    @contextmanager
    def task(self, description: str, total: float | None = None, completed: float = 0) -> Iterator[TaskBar]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console,
                      transient=self.transient) as progress:
            task_id = progress.add_task(description, total=total, completed=completed, info="")
            yield _RichTaskBar(progress, task_id)

    def message(self, text: str) -> None:
        self.console.print(text)

    def warn(self, text: str) -> None:
        self.console.print(f"[yellow]warning:[/] {text}")


def reporter_for(enabled: bool, console: Any | None = None) -> Reporter:
    """A :class:`RichReporter` on ``console`` when ``enabled``, else a :class:`SilentReporter`."""
    return RichReporter(console) if enabled else SilentReporter()


__all__ = ["Reporter", "TaskBar", "SilentReporter", "RichReporter", "reporter_for"]
