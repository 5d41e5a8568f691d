"""Variance decomposition per level and how much each group was pooled toward its parent.

Notes
-----
Share of variance (ICC) of a level ``l``, for the intercept, per draw:
``τ_l² / (Σ_k τ_k² + σ_e²)`` with ``σ_e² = σ²`` for Gaussian families and ``π²/3`` (the
logistic's variance) for the logit link; reported as a posterior mean.

Pooling factor of a group for its varying coefficients, per draw: the group's data carry
information ``J`` about its coefficients (for a leaf ``XᵀX/σ²``; above the leaves, what its
subtree's data say, from the collapsed upward pass), and its level gives it prior
covariance ``Ω = ΛΛᵀ`` around its parent. Its posterior mean is

.. math::

    (J + Ω^{-1})^{-1} (J \\hat β + Ω^{-1} a) ,

a matrix-weighted average of its own-data estimate and its parent ``a``; the weight on the
parent is ``(I + ΩJ)^{-1}``, and its diagonal is the pooling factor: 0 when the group's own
data decide, 1 when it is pooled completely into its parent. For one intercept it is
``σ² / (σ² + n τ²)``. Gaussian families only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .fit import Fit

__all__ = ["Pooling", "pooling"]


@dataclass(frozen=True)
class Pooling:
    """``levels``: per level and varying coefficient, the sd and (for the intercept) the
    share of variance; ``groups``: per group, its rows and pooling factor per varying
    coefficient (``pool[<coef>]``)."""

    levels: pd.DataFrame
    groups: pd.DataFrame


def _level_sds(fit: Fit, level: str, idx: np.ndarray):
    post = fit.idata["posterior"]
    if f"sd_{level}" in post:
        coefs = [str(c) for c in post[f"sd_{level}"].coords[f"coef_{level}"].values]
        return coefs, fit.draws_of(f"sd_{level}", idx), True
    if "constant_data" in fit.idata.groups() and f"prior_sd_{level}" in fit.idata["constant_data"]:
        da = fit.idata["constant_data"][f"prior_sd_{level}"]
        coefs = [str(c) for c in da.coords[f"coef_{level}"].values]
        return coefs, np.broadcast_to(da.values, (len(idx), len(coefs))), False
    return [], np.zeros((len(idx), 0)), False


def pooling(fit: Fit) -> Pooling:
    """The variance decomposition and per-group pooling factors of a fit."""
    post = fit.idata["posterior"]
    total = post.sizes["chain"] * post.sizes["draw"]
    idx = np.arange(total)
    spec = fit.spec
    names = list(fit.design.coef_names)
    icpt = fit.design.encoding.intercept
    if spec.has_sigma and spec.family in ("gaussian", "lognormal", "student_t"):
        resid = fit.draws_of("sigma", idx) ** 2
    elif spec.family in ("bernoulli", "binomial"):
        resid = np.full(len(idx), np.pi**2 / 3)
    else:
        resid = None
    icpt_var = []
    for level in fit.design.level_names:
        coefs, sd, free = _level_sds(fit, level, idx)
        if free and icpt is not None and names[icpt] in coefs:
            icpt_var.append(sd[:, coefs.index(names[icpt])] ** 2)
    denom = sum(icpt_var) + resid if resid is not None and icpt_var else None
    rows = []
    for level in fit.design.level_names:
        coefs, sd, free = _level_sds(fit, level, idx)
        for j, coef in enumerate(coefs):
            share = np.nan
            if free and denom is not None and icpt is not None and coef == names[icpt]:
                share = float(np.mean(sd[:, j] ** 2 / denom))
            rows.append(
                {
                    "level": level,
                    "coef": coef,
                    "sd": float(sd[:, j].mean()),
                    "share_of_variance": share,
                    "pooling": "partial" if free else "none (fixed prior)",
                }
            )
    levels = pd.DataFrame(rows, columns=["level", "coef", "sd", "share_of_variance", "pooling"])
    return Pooling(levels, _group_factors(fit, idx))


def _group_factors(fit: Fit, idx: np.ndarray) -> pd.DataFrame:
    """Pooling factor of every group of the primary chain: the posterior means the
    downward pass accumulated (NaN for non-Gaussian families)."""
    design, spec = fit.design, fit.spec
    tree = design.tree
    if not tree.n_levels:
        return pd.DataFrame(columns=["level", "group", "n"])
    counts = [tree.level_totals(fit.stats.n, k) for k in range(tree.n_levels)]
    gaussian = spec.family in ("gaussian", "lognormal") and spec.se is None
    factors = fit.pooling_factors if gaussian else None
    frames = []
    names = list(design.coef_names)
    for k, level in enumerate(tree.level_names):
        table = pd.DataFrame(
            {"level": level, "group": list(tree.labels[k]), "n": counts[k].astype(int)}
        )
        coefs, _, _ = _level_sds(fit, level, idx)
        if not coefs and spec.pooling == "complete":
            coefs = [names[j] for j in design.levels[k].coefs]
        level_factors = factors[k] if factors is not None else None
        for j, coef in enumerate(coefs):
            if level_factors is None:
                table[f"pool[{coef}]"] = np.nan
            elif not level_factors.shape[1]:
                table[f"pool[{coef}]"] = 1.0
            else:
                table[f"pool[{coef}]"] = level_factors[:, j]
        frames.append(table)
    return pd.concat(frames, ignore_index=True)
