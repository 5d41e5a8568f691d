"""A rich progress bar for sampling (terminal and Jupyter)."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["SamplingProgress"]


class SamplingProgress:
    """Shows ``done / total`` iterations per chain and the phase; writes to stderr."""

    def __init__(self) -> None:
        from rich.console import Console

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task: TaskID | None = None

    def update(self, done: int, total: int, phase: str) -> None:
        """Move the bar to ``done`` of ``total`` iterations."""
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task(phase, total=total)
        self._bar.update(self._task, completed=done, description=f"{phase:9s}")

    def close(self) -> None:
        """Stop drawing."""
        if self._task is not None:
            self._bar.stop()
