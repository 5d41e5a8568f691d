"""Convergence findings in plain words, each with the fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

__all__ = [
    "ESS_MIN",
    "R_HAT_MAX",
    "Convergence",
    "Finding",
    "convergence",
    "diagnose",
    "divergences_by_level",
]

R_HAT_MAX = 1.01
"""R-hat above this is a finding (Vehtari et al. 2021)."""

ESS_MIN = 400
"""Bulk or tail ESS below this is a finding (Vehtari et al. 2021: 100 per chain, 4 chains)."""


@dataclass(frozen=True)
class Finding:
    """One diagnostic finding."""

    severity: Literal["ok", "warning", "error"]
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return self.message + (f" Fix: {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class Convergence:
    """The numbers every summary shows, whether or not they raise a finding."""

    max_r_hat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    draws: int

    def __str__(self) -> str:
        def fmt(x: float, spec: str) -> str:
            return "—" if not np.isfinite(x) else format(x, spec)

        return (
            f"largest R-hat {fmt(self.max_r_hat, '.3f')} (needs ≤ {R_HAT_MAX}), smallest bulk "
            f"ESS {fmt(self.min_ess_bulk, '.0f')} and tail ESS {fmt(self.min_ess_tail, '.0f')} "
            f"(need ≥ {ESS_MIN}), {self.divergences} divergent of {self.draws:,} draws "
            "(needs 0)."
        )


def convergence(table: pd.DataFrame, diverging: np.ndarray) -> Convergence:
    """The worst R-hat and ESS of a summary table, and the number of divergent draws."""

    def worst(col: str, fn: str) -> float:
        values = table[col].dropna()
        return float(getattr(values, fn)()) if len(values) else float("nan")

    return Convergence(
        worst("r_hat", "max"),
        worst("ess_bulk", "min"),
        worst("ess_tail", "min"),
        int(np.sum(diverging)),
        int(np.size(diverging)),
    )


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
    elif len(rhat) and rhat.max() > R_HAT_MAX:
        worst = rhat.idxmax()
        n_bad = int((rhat > R_HAT_MAX).sum())
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
    floor = ESS_MIN
    if len(ess) and min(ess.min(), tail.min() if len(tail) else np.inf) < floor:
        worst = ess.idxmin()
        out.append(
            Finding(
                "warning",
                f"Few effective draws: the smallest bulk ESS is {ess.min():.0f} ({worst}) and the smallest "
                f"tail ESS {tail.min():.0f}, below {floor}; means and intervals are noisy.",
                f"run more draws (at least {ESS_MIN} effective draws need a few thousand "
                "draws in all: chains=4, draws=1000 or more).",
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


def divergences_by_level(
    sds: dict[str, np.ndarray],
    diverging: np.ndarray,
    centered: dict[str, bool],
    mixing: dict[str, tuple[float, float]] | None = None,
    sd_names: dict[str, list[str]] | None = None,
) -> list[Finding]:
    """Where divergent draws sit in each level's sd, and which level is a funnel.

    Parameters
    ----------
    sds
        Per level name, draws of its sds, (chain, draw) or (chain, draw, q) with
        ``sd_names`` naming the q entries.
    diverging
        Divergence flags (chain, draw).
    centered
        Per level name, whether the full-latent engine sampled it centred.
    mixing
        Per level name, the worst R-hat and smallest bulk ESS over the level's sds.

    Notes
    -----
    A funnel makes the sampler diverge where a level's sd is small (the neck). For each
    level the percentile of every divergent draw's sd among all draws is taken; when their
    median is below 25% the level is named as the likely cause. A funnel also shows without
    divergences, when the chains never enter the neck: a centred level whose sds do not mix
    (R-hat above 1.01 or bulk ESS below 400) is named too.
    """
    flags = np.asarray(diverging, dtype=bool).ravel()
    n_div = int(flags.sum())
    mixing = mixing or {}
    out = []
    for level, draws in sds.items():
        fix = (
            f"sample level {level!r} non-centred (parameterization={{'{level}': 'noncentered'}}), "
            "or use the collapsed engine (engine='auto') for a Gaussian model"
            if centered.get(level, False)
            else "use the collapsed engine (engine='auto') for a Gaussian model, or give "
            f"sd_{level} a prior that keeps it off zero if the data allow"
        )
        rhat, ess = mixing.get(level, (1.0, np.inf))
        stuck = centered.get(level, False) and (rhat > R_HAT_MAX or ess < ESS_MIN)
        if n_div:
            # The coefficient whose sd the divergences sit lowest in: the funnel's neck.
            columns = np.asarray(draws).reshape(len(flags), -1)
            labels = (sd_names or {}).get(level) or [f"sd_{level}"] * columns.shape[1]
            best = None
            for k in range(columns.shape[1]):
                ranks = (np.argsort(np.argsort(columns[:, k])) + 0.5) / len(flags)
                at = ranks[flags]
                if best is None or np.median(at) < best[0]:
                    best = (float(np.median(at)), float(np.mean(at < 0.2)), labels[k])
            assert best is not None
            median, low, label = best
            where = (
                f"{n_div} divergent draws ({n_div / len(flags):.1%} of all) sit at a median "
                f"percentile of {median:.0%} of {label}, {low:.0%} of them in its lowest fifth"
            )
            if median < 0.25 or stuck:
                out.append(
                    Finding("warning", f"Level {level!r} looks like a funnel: {where}.", fix)
                )
            else:
                out.append(Finding("ok", f"Level {level!r}: {where}; no sign of a funnel there."))
        elif stuck:
            out.append(
                Finding(
                    "warning",
                    f"Level {level!r} looks like a funnel: it was sampled centred and its sd "
                    f"does not mix (R-hat {rhat:.3f}, bulk ESS {ess:.0f}); the chains do not "
                    "reach small values of the sd, where the group deviations must shrink too.",
                    fix,
                )
            )
    return out
