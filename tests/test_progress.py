"""Progress displays: a rich bar in a terminal, one updating HTML line in a notebook."""

from __future__ import annotations

import sys
import types

import hierlm as hl
from hierlm.progress import NotebookProgress, SamplingProgress, in_notebook, sampling_progress


def _fake_notebook(monkeypatch) -> list[str]:
    """Install a stand-in for IPython inside a Jupyter kernel; returns the drawn HTML."""
    drawn: list[str] = []

    class ZMQInteractiveShell:  # the class name is how a kernel is recognised
        pass

    class HTML:
        def __init__(self, data: str):
            self.data = data

    class Handle:
        def update(self, obj: HTML) -> None:
            drawn.append(obj.data)

    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: ZMQInteractiveShell()  # type: ignore[attr-defined]
    display = types.ModuleType("IPython.display")
    display.HTML = HTML  # type: ignore[attr-defined]
    display.display = lambda obj, display_id=False: Handle()  # type: ignore[attr-defined]
    ipython.display = display  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    return drawn


def test_terminal_gets_the_rich_bar():
    assert not in_notebook()
    assert isinstance(sampling_progress(), SamplingProgress)


def test_notebook_gets_one_updating_line(monkeypatch, small_df):
    drawn = _fake_notebook(monkeypatch)
    assert in_notebook() and isinstance(sampling_progress(), NotebookProgress)
    hl.Model("y ~ x + (1 | a)", small_df).fit(chains=2, draws=100, tune=100, progress=True)
    # Redrawn in place (not one line per chunk printed), ending complete.
    assert drawn and len(drawn) < 50
    last = drawn[-1]
    assert '<progress value="200" max="200">' in last and "200/200" in last
