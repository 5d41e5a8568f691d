"""What every example shares: settings for full and fast runs, saving figures, markdown."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

HERE = Path(__file__).parent

FULL = {"chains": 4, "draws": 1000, "tune": 1000}
FAST = {"chains": 2, "draws": 200, "tune": 200}


def settings(fast: bool) -> dict[str, int]:
    """Sampler settings: the defaults, or a quick run for CI."""
    return dict(FAST if fast else FULL)


def save(fig: Any, out: Path, name: str) -> str:
    """Save a figure as ``out/figures/<name>.png``; return its path relative to ``out``."""
    import matplotlib.pyplot as plt

    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f"figures/{name}.png"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cli(doc: str | None) -> argparse.Namespace:
    """``--fast`` and ``--out`` for every example."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="small data and few draws (CI)")
    parser.add_argument(
        "--out", type=Path, default=HERE, help="folder for the markdown and figures"
    )
    return parser.parse_args()
