"""Sampling progress: a rich bar in a terminal, one updating line in a Jupyter notebook."""

from __future__ import annotations

import html
import sys
import time
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["NotebookProgress", "SamplingProgress", "in_notebook", "sampling_progress"]


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


class NotebookProgress:
    """One output cell line, updated in place: an HTML ``<progress>`` bar with the phase,
    ``done / total`` and the time (IPython's display handles; no widgets needed, where
    rich's live display would ask for ipywidgets)."""

    _EVERY = 0.25  # seconds between redraws: a notebook's front end repaints slowly

    def __init__(self) -> None:
        from IPython.display import HTML, display

        self._html = HTML
        self._handle: Any = display(HTML(""), display_id=True)
        self._start = time.perf_counter()
        self._shown = 0.0
        self._last: tuple[int, int, str] | None = None

    def update(self, done: int, total: int, phase: str) -> None:
        """Redraw (at most every quarter second, and always at the end)."""
        self._last = (done, total, phase)
        now = time.perf_counter()
        if done >= total or now - self._shown >= self._EVERY:
            self._draw()
            self._shown = now

    def _draw(self) -> None:
        if self._last is None or self._handle is None:
            return
        done, total, phase = self._last
        elapsed = time.perf_counter() - self._start
        self._handle.update(
            self._html(
                f'<progress value="{done}" max="{max(total, 1)}"></progress> '
                f"<code>{html.escape(phase)} {done}/{total} · {elapsed:.1f} s</code>"
            )
        )

    def close(self) -> None:
        """Draw the final state."""
        self._draw()


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (IPython's ZMQ shell)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def sampling_progress() -> SamplingProgress | NotebookProgress:
    """The progress display that suits where this process runs."""
    return NotebookProgress() if in_notebook() else SamplingProgress()
