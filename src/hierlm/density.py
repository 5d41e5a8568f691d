"""The log density of the variance parameters θ, group coefficients integrated out.

θ is one unconstrained vector: ``log σ`` (for families with a residual sd); per level ``log τ`` for each varying coefficient
and the unconstrained coordinates of each correlated block's Cholesky factor; and ``log λ``
for each population coefficient with a Student-t prior (a scale mixture of normals, so the
coefficients stay Gaussian given θ and collapse exactly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._numpyro import ensure_imported
from .collapse import LevelFactor, TreeStats, log_marginal

__all__ = [
    "DensityArgs",
    "Layout",
    "LevelLayout",
    "Unpacked",
    "log_density",
    "log_density_jit",
    "theta_labels",
    "unpack",
]


@dataclass(frozen=True)
class LevelLayout:
    """Static shape of one level's parameters.

    Attributes
    ----------
    v
        Varying coefficient indices, in block order.
    block_sizes
        Size of each block (they partition ``v`` in order).
    correlated
        Per block, whether it has a correlation.
    sd_kind
        Family of the sd prior (``halfnormal``, ``halfcauchy``, ``halfstudentt``,
        ``exponential``).
    fixed
        ``True`` when Λ is a fixed matrix (no pooling), not a parameter.
    """

    v: tuple[int, ...]
    block_sizes: tuple[int, ...]
    correlated: tuple[bool, ...]
    sd_kind: str
    fixed: bool = False

    @property
    def n_free(self) -> int:
        """Number of θ entries this level owns."""
        if self.fixed:
            return 0
        return len(self.v) + sum(
            k * (k - 1) // 2 for k, c in zip(self.block_sizes, self.correlated, strict=True) if c
        )


@dataclass(frozen=True)
class Layout:
    """Static structure of θ (hashable; part of the compiled program)."""

    p: int
    sigma_kind: str
    levels: tuple[LevelLayout, ...]
    t_coefs: tuple[int, ...]
    has_sigma: bool = True

    @property
    def size(self) -> int:
        """Dimension of θ."""
        return int(self.has_sigma) + sum(lv.n_free for lv in self.levels) + len(self.t_coefs)


def theta_labels(
    layout: Layout, level_names: tuple[str, ...], coef_names: tuple[str, ...]
) -> list[str]:
    """A name for every entry of θ, in :func:`unpack`'s order (``log sigma``,
    ``log sd_<level>[<coef>]``, ``corr_<level>[<block>] (unconstrained k)``,
    ``log lambda[<coef>]``)."""
    out = ["log sigma"] if layout.has_sigma else []
    for name, lv in zip(level_names, layout.levels, strict=True):
        if lv.fixed or not lv.v:
            continue
        out += [f"log sd_{name}[{coef_names[v]}]" for v in lv.v]
        offset = 0
        for size, corr in zip(lv.block_sizes, lv.correlated, strict=True):
            block = ", ".join(coef_names[v] for v in lv.v[offset : offset + size])
            offset += size
            if corr:
                m = size * (size - 1) // 2
                out += [f"corr_{name}[{block}] (unconstrained {k})" for k in range(m)]
    out += [f"log lambda[{coef_names[j]}]" for j in layout.t_coefs]
    return out


class DensityArgs(NamedTuple):
    """Data-dependent arrays of the density (a pytree: traced, so compilations are reused).

    ``sigma_prior`` and each ``sd_prior[l]`` hold (df, scale) rows on the standardised scale
    (the scale of an Exponential is 1/rate). ``beta_scale`` is 0 for coefficients without a
    population value. ``fixed_lam[l]`` is used only by fixed (no-pooling) levels.
    """

    stats: TreeStats
    sigma_prior: jax.Array
    sd_prior: tuple[jax.Array, ...]
    lkj_eta: tuple[jax.Array, ...]
    m0: jax.Array
    L0_base: jax.Array
    beta_scale: jax.Array
    beta_df: jax.Array
    fixed_lam: tuple[jax.Array, ...]

    @property
    def small(self) -> bool:
        """Whether the tree is small enough that compiling costs more than running (at
        most 1,024 nodes, padding included)."""
        return sum(p.size for p in self.stats.parents) <= 1024


class Unpacked(NamedTuple):
    """θ mapped to model quantities, with the log prior and log-Jacobian."""

    sigma: jax.Array
    levels: tuple[LevelFactor, ...]
    sds: tuple[jax.Array | None, ...]
    chols: tuple[jax.Array | None, ...]
    L0: jax.Array
    log_prior: jax.Array


def _scale_logpdf(kind: str, x: jax.Array, df: jax.Array, scale: jax.Array) -> jax.Array:
    ensure_imported()
    import numpyro.distributions as dist

    if kind == "halfnormal":
        d = dist.HalfNormal(scale)
    elif kind == "halfcauchy":
        d = dist.HalfCauchy(scale)
    elif kind == "halfstudentt":
        return jnp.log(2.0) + dist.StudentT(df, 0.0, scale).log_prob(x)
    elif kind == "exponential":
        d = dist.Exponential(1.0 / scale)
    else:
        raise ValueError(f"unknown scale prior {kind!r}")
    return d.log_prob(x)


def unpack(theta: jax.Array, args: DensityArgs, layout: Layout) -> Unpacked:
    """Map unconstrained θ to σ, per-level factors Λ and the root factor L₀."""
    ensure_imported()
    import numpyro.distributions as dist
    from numpyro.distributions.transforms import CorrCholeskyTransform

    corr_chol = CorrCholeskyTransform()
    if layout.has_sigma:
        log_sigma = theta[0]
        sigma = jnp.exp(log_sigma)
        lp = (
            _scale_logpdf(layout.sigma_kind, sigma, args.sigma_prior[0], args.sigma_prior[1])
            + log_sigma
        )
        pos = 1
    else:  # link-scale families: no residual sd
        sigma = jnp.ones((), theta.dtype)
        lp = jnp.zeros((), theta.dtype)
        pos = 0
    factors: list[LevelFactor] = []
    sds: list[jax.Array | None] = []
    chols: list[jax.Array | None] = []
    for li, lv in enumerate(layout.levels):
        q = len(lv.v)
        if lv.fixed or q == 0:
            lam = args.fixed_lam[li] if lv.fixed else jnp.zeros((0, 0))
            factors.append(LevelFactor(lam, lv.v))
            sds.append(None)
            chols.append(None)
            continue
        log_tau = theta[pos : pos + q]
        pos += q
        tau = jnp.exp(log_tau)
        prior = args.sd_prior[li]
        lp += jnp.sum(_scale_logpdf(lv.sd_kind, tau, prior[:, 0], prior[:, 1]) + log_tau)
        chol = jnp.zeros((q, q))
        offset, ci = 0, 0
        for size, corr in zip(lv.block_sizes, lv.correlated, strict=True):
            if corr:
                m = size * (size - 1) // 2
                x = theta[pos : pos + m]
                pos += m
                R = corr_chol(x)
                lp += corr_chol.log_abs_det_jacobian(x, R)
                lp += dist.LKJCholesky(size, args.lkj_eta[li][ci]).log_prob(R)
                ci += 1
            else:
                R = jnp.eye(size)
            chol = chol.at[offset : offset + size, offset : offset + size].set(R)
            offset += size
        factors.append(LevelFactor(tau[:, None] * chol, lv.v))
        sds.append(tau)
        chols.append(chol)
    scale = args.beta_scale
    if layout.t_coefs:
        idx = np.asarray(layout.t_coefs)
        log_lam = theta[pos : pos + len(layout.t_coefs)]
        pos += len(layout.t_coefs)
        lam = jnp.exp(log_lam)
        half_df = args.beta_df[idx] / 2
        lp += jnp.sum(dist.InverseGamma(half_df, half_df).log_prob(lam) + log_lam)
        # A static selection matrix, not a scatter: scatter-multiply has no gradient.
        select = np.zeros((layout.p, len(idx)))
        select[idx, np.arange(len(idx))] = 1.0
        scale = scale * (1.0 + select @ (jnp.sqrt(lam) - 1.0))
    L0 = args.L0_base * scale[None, :]
    return Unpacked(sigma, tuple(factors), tuple(sds), tuple(chols), L0, lp)


def log_density(theta: jax.Array, args: DensityArgs, layout: Layout) -> jax.Array:
    """``log p(y_std | θ) + log p(θ)`` on the unconstrained scale (Jacobians included)."""
    u = unpack(theta, args, layout)
    return log_marginal(args.stats, u.sigma, u.levels, args.m0, u.L0) + u.log_prior


log_density_jit = jax.jit(log_density, static_argnames="layout")
