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
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import pandas as pd

from .collapse import LevelFactor, TreeStats, upward
from .design import Design
from .group_tree import GroupTree
from .predict import level_factor
from .suffstats import SuffStats

if TYPE_CHECKING:
    from .fit import Fit

__all__ = ["Pooling", "pooling", "precompile"]

_DRAWS = 200


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
    thinned = np.linspace(0, total - 1, min(_DRAWS, total)).astype(int)
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
    return Pooling(levels, _group_factors(fit, thinned))


def _group_factors(fit: Fit, idx: np.ndarray) -> pd.DataFrame:
    """Pooling factor of every group of the primary chain (NaN for non-Gaussian families)."""
    design, spec = fit.design, fit.spec
    tree = design.tree
    if not tree.n_levels:
        return pd.DataFrame(columns=["level", "group", "n"])
    counts = [tree.level_totals(fit.stats.n, k) for k in range(tree.n_levels)]
    gaussian = spec.family in ("gaussian", "lognormal") and spec.se is None
    factors = _factors(fit, idx) if gaussian else None
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
            if factors is None:
                table[f"pool[{coef}]"] = np.nan
            elif level_factors is None:
                table[f"pool[{coef}]"] = 1.0
            else:
                table[f"pool[{coef}]"] = level_factors[:, j]
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def _factors(fit: Fit, idx: np.ndarray) -> list[np.ndarray | None]:
    """Posterior mean of ``diag((I + ΩJ)⁻¹)`` per group and varying coefficient, per level
    of the primary chain (None where nothing varies)."""
    design = fit.design
    tree = design.tree
    factor = design.scaling.coef_factor()
    sigma = fit.draws_of("sigma", idx) / design.scaling.y_scale
    lams: list[np.ndarray] = []
    vs: list[tuple[int, ...]] = []
    for level in tree.level_names:
        found = level_factor(fit, level, idx)
        coefs, root = found if found is not None else ([], np.zeros((len(idx), 0, 0)))
        # Original-scale factor rows divided by the coefficients' scale: standardised Λ.
        lams.append(np.ascontiguousarray(root / factor[coefs][None, :, None]))
        vs.append(tuple(coefs))
    stats = _tree_stats(fit.stats, tree)
    run = _factor_program(tuple(vs), sigma, tuple(lams), stats)
    result = run(sigma, tuple(lams), stats)
    return [np.asarray(r).mean(axis=0) if v else None for r, v in zip(result, vs, strict=True)]


def precompile(design: Design, stats: SuffStats, n_draws: int) -> None:
    """Build the pooling factors' program for a partially pooled Gaussian fit of
    ``n_draws`` draws ahead of time (a fit does this while the sampler's programs compile,
    so the summary that follows does not wait for it)."""
    spec = design.spec
    if spec.pooling != "partial" or spec.family not in ("gaussian", "lognormal") or spec.se:
        return
    tree = design.tree
    if not tree.n_levels:
        return
    n = min(_DRAWS, n_draws)
    vs = tuple(lv.coefs for lv in design.levels[: tree.n_levels])
    sigma = jax.ShapeDtypeStruct((n,), np.float64)
    lams = tuple(jax.ShapeDtypeStruct((n, len(v), len(v)), np.float64) for v in vs)
    _factor_program(vs, sigma, lams, _tree_stats(stats, tree))


def _tree_stats(st: SuffStats, tree: GroupTree) -> Any:
    # NumPy leaves: the saved program takes them as they are.
    parts: list[Any] = [
        np.asarray(st.n, dtype=np.float64),
        np.ascontiguousarray(np.moveaxis(st.xtx, 0, -1)),
        np.ascontiguousarray(np.moveaxis(st.xty, 0, -1)),
        np.asarray(st.yty, dtype=np.float64),
        tuple(np.asarray(p, dtype=np.int32) for p in tree.parents),
    ]
    return TreeStats(*parts)


def _factor_program(vs: tuple[tuple[int, ...], ...], sigma: Any, lams: Any, stats: Any) -> Any:
    """The compiled map over draws of the pooling factors (saved and reloaded like the
    sampler's programs, so a warm summary skips its tracing)."""
    import jax.numpy as jnp

    from .compiled import program

    def one(args, stats):
        s, lam_list = args
        levels = tuple(LevelFactor(lam, v) for lam, v in zip(lam_list, vs, strict=True))
        _, per_level = upward(stats, s, levels)
        out = []
        for (J, _h), lam, v in zip(per_level, lam_list, vs, strict=True):
            if not v:
                out.append(jnp.zeros((J.shape[-1], 0)))
                continue
            idx_v = np.asarray(v)
            Jv = jnp.moveaxis(J[idx_v][:, idx_v], -1, 0)  # (G, q, q)
            omega = lam @ lam.T
            m = jnp.eye(len(v)) + omega[None] @ Jv
            out.append(jnp.diagonal(jnp.linalg.inv(m), axis1=1, axis2=2))
        return tuple(out)

    def run(s, lam_list, stats):
        return jax.lax.map(lambda a: one(a, stats), (s, lam_list))

    return program("pooling", run, (sigma, lams, stats), key=vs, quick=True)
