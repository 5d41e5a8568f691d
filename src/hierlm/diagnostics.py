"""Convergence findings in plain words, each with the fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["Finding", "diagnose"]


@dataclass(frozen=True)
class Finding:
    """One diagnostic finding."""

    severity: Literal["ok", "warning", "error"]
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return self.message + (f" Fix: {self.fix}" if self.fix else "")


def diagnose(
    table: pd.DataFrame, diverging: np.ndarray, tree_depth: np.ndarray, max_tree_depth: int
) -> list[Finding]:
    """Findings from a summary table (with ``r_hat``, ``ess_bulk``, ``ess_tail``) and sampler stats."""
    out: list[Finding] = []
    n_draws = diverging.size
    chains = diverging.shape[0]
    rhat = table["r_hat"].dropna()
    if chains < 2:
        out.append(
            Finding(
                "warning",
                "Only one chain was run, so R-hat cannot check convergence.",
                "run chains=4.",
            )
        )
    elif len(rhat) and rhat.max() > 1.01:
        worst = rhat.idxmax()
        n_bad = int((rhat > 1.01).sum())
        out.append(
            Finding(
                "error",
                f"The chains disagree: R-hat is above 1.01 for {n_bad} parameters (worst {worst}: {rhat.max():.3f}).",
                "run more warm-up and draws (tune=2000, draws=2000); if it persists, check the model "
                "for a level with very few groups or a weakly identified coefficient.",
            )
        )
    ess = table["ess_bulk"].dropna()
    tail = table["ess_tail"].dropna()
    floor = min(400, n_draws // 2)
    if len(ess) and min(ess.min(), tail.min() if len(tail) else np.inf) < floor:
        worst = ess.idxmin()
        out.append(
            Finding(
                "warning",
                f"Few effective draws: the smallest bulk ESS is {ess.min():.0f} ({worst}) and the smallest "
                f"tail ESS {tail.min():.0f}, below {floor}; means and intervals are noisy.",
                "run more draws.",
            )
        )
    n_div = int(diverging.sum())
    if n_div:
        out.append(
            Finding(
                "error" if n_div > 0.01 * n_draws else "warning",
                f"{n_div} of {n_draws} draws ended in a divergence, so the sampler may have missed part of the posterior.",
                "raise target_accept to 0.95 (--target-accept 0.95); if they remain, put tighter priors on "
                "the group sds of levels with few groups.",
            )
        )
    n_max = int((tree_depth >= max_tree_depth).sum())
    if n_max > 0.05 * n_draws:
        out.append(
            Finding(
                "warning",
                f"{n_max} draws hit the maximum tree depth {max_tree_depth}; sampling was inefficient.",
                "raise max_tree_depth, or check for a coefficient that the data and priors barely identify.",
            )
        )
    if not out:
        out.append(
            Finding(
                "ok",
                f"No problems found: R-hat ≤ 1.01, bulk ESS ≥ {ess.min():.0f}, no divergences.",
            )
        )
    return out
