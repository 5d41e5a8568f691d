"""Draws of every parameter and group coefficient from the prior alone.

The draws come out on the standardised scale in the form the downward pass returns
(:func:`hierlm.posterior.draw_coefficients`), so :func:`hierlm.posterior.build_idata` maps
them to the original scale and the same prediction code turns them into prior predictive
data sets. Nothing is sampled by MCMC: each prior is drawn directly.

Notes
-----
θ's priors are those of :mod:`hierlm.density` (scale priors on σ and each level's sds, LKJ on
each correlated block, a Student-t population prior as a normal scale mixture with
``λ ~ InvGamma(ν/2, ν/2)``). The population coefficients are ``m₀ + L₀ z`` and every group's
are its parent's plus ``E_v Λ z``, top down; a crossed chain starts from zero and its groups
are reported with the population added, as in the posterior.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .assemble import Problem
from .design import Design

__all__ = ["sample_prior"]


def _scale_draws(
    rng: np.random.Generator, kind: str, df: np.ndarray, scale: np.ndarray, n: int
) -> np.ndarray:
    shape = (n, *np.shape(scale))
    if kind == "halfnormal":
        return np.abs(rng.standard_normal(shape)) * scale
    if kind == "halfcauchy":
        return np.abs(rng.standard_cauchy(shape)) * scale
    if kind == "halfstudentt":
        return np.abs(rng.standard_t(np.broadcast_to(df, shape))) * scale
    if kind == "exponential":
        return rng.exponential(1.0, shape) * scale
    raise ValueError(f"unknown scale prior {kind!r}")


def _lkj_cholesky(size: int, eta: float, n: int, seed: int) -> np.ndarray:
    """``n`` Cholesky factors of LKJ(eta) correlation matrices (NumPyro's sampler)."""
    import jax

    from ._numpyro import ensure_imported

    ensure_imported()
    import numpyro.distributions as dist

    key = jax.random.PRNGKey(seed)
    return np.asarray(dist.LKJCholesky(size, eta).sample(key, (n,)), dtype=np.float64)


def sample_prior(design: Design, problem: Problem, n: int, seed: int) -> dict[str, Any]:
    """``n`` joint prior draws of σ, the level sds and correlations, the population and
    every group's coefficients (standardised scale, padding-free)."""
    rng = np.random.default_rng([seed, 11])
    layout, args = problem.layout, problem.args
    p = layout.p
    if layout.has_sigma:
        s = np.asarray(args.sigma_prior)
        sigma = _scale_draws(rng, layout.sigma_kind, s[0], s[1], n)
    else:
        sigma = np.ones(n)
    scale = np.broadcast_to(np.asarray(args.beta_scale), (n, p)).copy()
    if layout.t_coefs:
        idx = np.asarray(layout.t_coefs)
        half = np.asarray(args.beta_df)[idx] / 2
        lam = 1.0 / rng.gamma(half, 1.0 / half, (n, len(idx)))
        scale[:, idx] *= np.sqrt(lam)
    L0 = np.asarray(args.L0_base)[None] * scale[:, None, :]
    root = np.asarray(args.m0) + np.einsum("spq,sq->sp", L0, rng.standard_normal((n, p)))

    levels, sds, chols = [], [], []
    li = 0
    for tree_index, tree in enumerate(design.trees):
        parent = root[:, None, :] if tree_index == 0 else np.zeros((n, 1, p))
        for k in range(tree.n_levels):
            lv = layout.levels[li]
            node = parent[:, tree.parents[k]]
            q = len(lv.v)
            sd, chol = None, None
            if q and lv.fixed:
                lam_l = np.broadcast_to(np.asarray(args.fixed_lam[li]), (n, q, q))
            elif q:
                rows = np.asarray(args.sd_prior[li])
                sd = _scale_draws(rng, lv.sd_kind, rows[:, 0], rows[:, 1], n)
                chol = np.broadcast_to(np.eye(q), (n, q, q)).copy()
                start, ci = 0, 0
                for size, corr in zip(lv.block_sizes, lv.correlated, strict=True):
                    if corr:
                        eta = float(np.asarray(args.lkj_eta[li])[ci])
                        block = _lkj_cholesky(size, eta, n, int(rng.integers(2**31)))
                        chol[:, start : start + size, start : start + size] = block
                        ci += 1
                    start += size
                lam_l = sd[:, :, None] * chol
            if q:
                z = rng.standard_normal((n, node.shape[1], q))
                node = node.copy()
                node[:, :, np.asarray(lv.v)] += np.einsum("sqr,sgr->sgq", lam_l, z)
            levels.append(node if tree_index == 0 else node + root[:, None, :])
            sds.append(sd)
            chols.append(chol)
            parent = node
            li += 1
    out: dict[str, Any] = {
        "root": root,
        "levels": levels,
        "sigma": sigma,
        "sds": sds,
        "chols": chols,
    }
    if design.spec.family == "student_t":
        nu = rng.gamma(2.0, 10.0, 4 * n)
        out["nu"] = nu[nu > 1][:n] if (nu > 1).sum() >= n else np.maximum(nu[:n], 1.0)
    return out
