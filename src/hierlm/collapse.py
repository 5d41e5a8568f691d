"""Collapsed Gaussian message passing on the group tree (pure JAX).

Every node carries a coefficient vector β ∈ ℝᵖ. A node at a level with factor L (p × q,
nonzero only on the rows ``v`` of the coefficients that vary there, ``L = E_v Λ``) has
``β = a + L z``, ``z ~ N(0, I_q)``, where ``a`` is its parent's β. Leaves hold the rows:
``y ~ N(X β, σ² I)``. Integrating β out bottom-up gives the exact marginal likelihood; going
top-down with the same quantities draws every β exactly.

Notes
-----
A node's information triple (J, h, c) stands for ``exp(-½ βᵀJβ + hᵀβ + c)``. Its message to
the parent, integrating its own z out, is

.. math::

    M = I + Λᵀ J_{vv} Λ, \\quad
    J' = J - J L M^{-1} Lᵀ J, \\quad
    h' = h - J L M^{-1} Lᵀ h, \\quad
    c' = c + ½ (Lᵀh)ᵀ M^{-1} (Lᵀh) - ½ \\log|M|.

``M ⪰ I``, so its Cholesky factor always exists, also for q = 0 columns, zero sds or empty
leaves. Padded nodes (all-zero statistics) send an exact zero message. At the root, the same
step with the prior ``N(m₀, L₀L₀ᵀ)`` yields ``log p(y | θ)``. The downward draw of a node
given its parent value ``a`` is ``z ~ N(M⁻¹Λᵀ(h - Ja)_v, M⁻¹)``, ``β = a + E_v Λ z``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .smallmat import cholesky, matmul, solve_lower, solve_upper_t

__all__ = ["LevelFactor", "TreeStats", "draw_tree", "log_marginal", "upward"]


class TreeStats(NamedTuple):
    """Standardised leaf statistics and the tree's parent pointers (a pytree).

    ``parents[l]`` indexes level ``l - 1`` (the root for ``l = 0``); the last level holds the
    leaves. Without levels, the single "leaf" is the root itself.
    """

    n: jax.Array
    xtx: jax.Array
    xty: jax.Array
    yty: jax.Array
    parents: tuple[jax.Array, ...]


class LevelFactor(NamedTuple):
    """``Λ`` (q × q) of one level; ``v`` (static) is where its columns sit in p."""

    lam: jax.Array
    v: tuple[int, ...]


def _message(J: jax.Array, h: jax.Array, c: jax.Array, lam: jax.Array, v: tuple[int, ...]):
    """Message of one node to its parent (see the module notes)."""
    idx = np.asarray(v)
    A = matmul(lam.T, J[idx, :])
    M = jnp.eye(len(v), dtype=J.dtype) + matmul(A[:, idx], lam)
    R = cholesky(M)
    W = solve_lower(R, A)
    u = solve_lower(R, matmul(lam.T, h[idx, None]))[:, 0]
    J_out = J - matmul(W.T, W)
    h_out = h - jnp.sum(W * u[:, None], axis=0)
    return J_out, h_out, c + 0.5 * jnp.sum(u * u) - jnp.sum(jnp.log(jnp.diagonal(R)))


_level_message = jax.vmap(_message, in_axes=(0, 0, 0, None, None))


def upward(stats: TreeStats, sigma: jax.Array, levels: tuple[LevelFactor, ...]):
    """Bottom-up pass.

    Returns
    -------
    root, per_level
        The root's accumulated (J, h, c), and for every level the nodes' (J, h) before their
        message (what the downward pass needs).
    """
    s2 = sigma * sigma
    J = stats.xtx / s2
    h = stats.xty / s2
    c = -0.5 * stats.yty / s2 - 0.5 * stats.n * jnp.log(2 * jnp.pi * s2)
    per_level = []
    for depth in range(len(levels) - 1, -1, -1):
        per_level.append((J, h))
        lf = levels[depth]
        if lf.v:
            J, h, c = _level_message(J, h, c, lf.lam, lf.v)
        n_parent = 1 if depth == 0 else stats.parents[depth - 1].shape[0]
        seg = stats.parents[depth]
        J = jax.ops.segment_sum(J, seg, n_parent)
        h = jax.ops.segment_sum(h, seg, n_parent)
        c = jax.ops.segment_sum(c, seg, n_parent)
    if not levels:
        J, h, c = J.sum(0, keepdims=True), h.sum(0, keepdims=True), c.sum(0, keepdims=True)
    return (J[0], h[0], c[0]), tuple(reversed(per_level))


def _root_terms(J, h, c, m0, L0):
    hs = h - J @ m0
    cs = c - 0.5 * m0 @ J @ m0 + h @ m0
    A = matmul(L0.T, J)
    M = jnp.eye(L0.shape[1], dtype=J.dtype) + matmul(A, L0)
    R = cholesky(M)
    u = solve_lower(R, matmul(L0.T, hs[:, None]))[:, 0]
    return cs + 0.5 * jnp.sum(u * u) - jnp.sum(jnp.log(jnp.diagonal(R))), u, R


def log_marginal(stats: TreeStats, sigma, levels: tuple[LevelFactor, ...], m0, L0) -> jax.Array:
    """``log p(y_std | θ)`` with every group coefficient integrated out."""
    (J, h, c), _ = upward(stats, sigma, levels)
    return _root_terms(J, h, c, m0, L0)[0]


def _draw_node(J, h, a, eps, lam, v):
    idx = np.asarray(v)
    A = matmul(lam.T, J[idx, :])
    R = cholesky(jnp.eye(len(v), dtype=J.dtype) + matmul(A[:, idx], lam))
    b = matmul(lam.T, h[idx, None])[:, 0] - jnp.sum(A * a[None, :], axis=1)
    # z = M⁻¹ b + R⁻ᵀ ε with M = R Rᵀ
    z = solve_upper_t(R, solve_lower(R, b[:, None]) + eps[:, None])[:, 0]
    return a.at[idx].add(jnp.sum(lam * z[None, :], axis=1))


_draw_level = jax.vmap(_draw_node, in_axes=(0, 0, 0, 0, None, None))


def draw_tree(key, stats: TreeStats, sigma, levels: tuple[LevelFactor, ...], m0, L0):
    """One exact joint draw of the root and every node's β given θ.

    Returns
    -------
    root, per_level, log_ml
        The population β (p,), per level the nodes' β with shape (G_l, p), and
        ``log p(y_std | θ)``.
    """
    (J, h, c), per_level = upward(stats, sigma, levels)
    log_ml, u, R = _root_terms(J, h, c, m0, L0)
    keys = jax.random.split(key, len(levels) + 1)
    eps = jax.random.normal(keys[0], (L0.shape[1],), dtype=J.dtype)
    z = solve_upper_t(R, (u + eps)[:, None])[:, 0]
    root = m0 + L0 @ z
    parent = root[None, :]
    out = []
    for depth, lf in enumerate(levels):
        Jl, hl = per_level[depth]
        a = parent[stats.parents[depth]]
        if lf.v:
            e = jax.random.normal(keys[depth + 1], (a.shape[0], len(lf.v)), dtype=J.dtype)
            a = _draw_level(Jl, hl, a, e, lf.lam, lf.v)
        out.append(a)
        parent = a
    return root, tuple(out), log_ml
