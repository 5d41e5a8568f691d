"""The collapsed likelihood and draws against dense multivariate-normal references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from conftest import log_marginal_jit
from hierlm.collapse import LevelFactor, TreeStats, draw_tree, log_marginal
from hierlm.node_layout import leaf_parent_sums, node_layout
from hierlm.suffstats import distinct_leaves

jax.config.update("jax_enable_x64", True)


def random_problem(rng: np.random.Generator, n_levels: int, p: int):
    """A random tree with rows, per-level factors (some levels with nothing varying)."""
    sizes, parents = [], []
    for depth in range(n_levels):
        prev = 1 if depth == 0 else sizes[-1]
        g = prev + int(rng.integers(1, 4)) * prev
        parent = np.sort(rng.integers(0, prev, size=g))
        parent[:prev] = np.arange(prev)  # every parent has a child
        sizes.append(g)
        parents.append(np.sort(parent))
    n_leaves = sizes[-1] if n_levels else 1
    counts = rng.integers(0, 4, size=n_leaves)
    counts[0] = 1  # a group of size 1
    leaf = np.repeat(np.arange(n_leaves), counts)
    X = rng.normal(size=(len(leaf), p))
    X[:, 0] = 1.0
    y = rng.normal(size=len(leaf))
    factors = []
    for depth in range(n_levels):
        q = int(rng.integers(0, p + 1)) if depth % 2 else int(rng.integers(1, p + 1))
        v = tuple(sorted(rng.choice(p, size=q, replace=False).tolist()))
        lam = np.tril(rng.normal(size=(q, q))) * 0.7
        if rng.random() < 0.5:
            lam = np.diag(np.abs(np.diag(lam)) + 0.1)  # independent effects
        factors.append((v, lam))
    m0 = rng.normal(size=p)
    L0 = np.tril(rng.normal(size=(p, p))) + np.eye(p)
    sigma = float(rng.uniform(0.3, 2.0))
    return sizes, parents, leaf, X, y, factors, m0, L0, sigma


def stats_of(n_leaves, leaf, X, y, parents):
    p = X.shape[1]
    xtx = np.zeros((n_leaves, p, p))
    xty = np.zeros((n_leaves, p))
    yty = np.zeros(n_leaves)
    n = np.zeros(n_leaves)
    np.add.at(xtx, leaf, X[:, :, None] * X[:, None, :])
    np.add.at(xty, leaf, X * y[:, None])
    np.add.at(yty, leaf, y * y)
    np.add.at(n, leaf, 1.0)
    return TreeStats(
        n,
        np.moveaxis(xtx, 0, -1),
        np.moveaxis(xty, 0, -1),
        yty,
        tuple(jnp.asarray(pa) for pa in parents),
    )


def laid_out(stats: TreeStats, parents, slack: float) -> TreeStats:
    """``stats`` with every level that ``slack`` allows slotted (see ``node_layout``)."""
    nodes = node_layout(
        tuple(np.asarray(p) for p in parents), pad=False, min_slotted=0, slack=slack
    )

    def place(a):
        return np.moveaxis(nodes.place_leaves(np.moveaxis(np.asarray(a), -1, 0)), 0, -1)

    return TreeStats(
        place(stats.n),
        place(stats.xtx),
        place(stats.xty),
        place(stats.yty),
        tuple(jnp.asarray(p) for p in nodes.parents),
        tuple(jnp.asarray(o) for o in nodes.order),
    )


def with_leaf_sums(stats: TreeStats) -> TreeStats:
    """``stats`` with the leaves' ``XᵀX`` and ``Xᵀy`` summed into their parents."""
    parents = tuple(np.asarray(p) for p in stats.parents)
    sums = [leaf_parent_sums(np.asarray(a), parents) for a in (stats.xtx, stats.xty)]
    return stats._replace(leaf_sums=tuple(jnp.asarray(a) for a in sums))


def ancestors(parents, leaf_of_row, depth):
    node = leaf_of_row
    for d in range(len(parents) - 1, depth, -1):
        node = parents[d][node]
    return node


def dense_logpdf(sizes, parents, leaf, X, y, factors, m0, L0, sigma):
    cov = X @ L0 @ L0.T @ X.T + sigma**2 * np.eye(len(y))
    p = X.shape[1]
    for depth, (v, lam) in enumerate(factors):
        if not v:
            continue
        E = np.zeros((p, len(v)))
        E[list(v), range(len(v))] = 1.0
        S = E @ lam @ lam.T @ E.T
        node = ancestors(parents, leaf, depth)
        same = node[:, None] == node[None, :]
        cov += same * (X @ S @ X.T)
    return multivariate_normal(X @ m0, cov).logpdf(y)


@pytest.mark.parametrize("seed", range(24))
def test_collapsed_equals_dense_mvn(seed):
    rng = np.random.default_rng(seed)
    n_levels = 1 + seed % 4
    p = 1 + (seed // 4) % 4
    sizes, parents, leaf, X, y, factors, m0, L0, sigma = random_problem(rng, n_levels, p)
    stats = stats_of(sizes[-1], leaf, X, y, parents)
    if seed % 3:
        # Slotted levels: all of them, or those within the default slack (mixed layouts).
        stats = laid_out(stats, parents, np.inf if seed % 3 == 1 else 1.25)
        assert any(p.ndim == 2 for p in stats.parents)
    if seed % 2:
        stats = with_leaf_sums(stats)
    levels = tuple(LevelFactor(jnp.asarray(lam), v) for v, lam in factors)
    got = float(log_marginal_jit(stats, sigma, levels, jnp.asarray(m0), jnp.asarray(L0)))
    want = dense_logpdf(sizes, parents, leaf, X, y, factors, m0, L0, sigma)
    assert got == pytest.approx(want, abs=1e-8, rel=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_distinct_leaf_terms_equal_dense_mvn(seed):
    """Leaves grouped by their row count (an intercept varying alone at the leaf level)
    give the same log marginal and gradient as the per-leaf terms, and the dense one."""
    rng = np.random.default_rng(100 + seed)
    sizes, parents, leaf, X, y, factors, m0, L0, sigma = random_problem(rng, 2 + seed % 2, 2)
    factors[-1] = ((0,), np.array([[0.4 + 0.3 * seed]]))
    stats = stats_of(sizes[-1], leaf, X, y, parents)
    xtx, xty = np.moveaxis(stats.xtx, -1, 0), np.moveaxis(stats.xty, -1, 0)
    distinct = distinct_leaves(xtx, xty, 0, max_share=1.0)
    assert distinct is not None and distinct.shape[1] < sizes[-1]
    padded = np.concatenate([distinct, np.zeros((3, 2))], axis=1)  # zero columns add nothing
    grouped = with_leaf_sums(stats._replace(distinct=jnp.asarray(padded)))

    def f(st, scale):
        levels = tuple(LevelFactor(scale * jnp.asarray(lam), v) for v, lam in factors)
        return log_marginal(st, sigma, levels, jnp.asarray(m0), jnp.asarray(L0))

    value_grad = jax.jit(jax.value_and_grad(f, argnums=1))
    got, got_grad = value_grad(grouped, 1.3)
    want, want_grad = value_grad(stats, 1.3)
    assert float(got) == pytest.approx(float(want), abs=1e-9)
    assert float(got_grad) == pytest.approx(float(want_grad), rel=1e-9)
    scaled = [(v, 1.3 * lam) for v, lam in factors]
    dense = dense_logpdf(sizes, parents, leaf, X, y, scaled, m0, L0, sigma)
    assert float(got) == pytest.approx(dense, abs=1e-8, rel=1e-10)


def test_padding_nodes_change_nothing():
    rng = np.random.default_rng(7)
    sizes, parents, leaf, X, y, factors, m0, L0, sigma = random_problem(rng, 2, 2)
    stats = stats_of(sizes[-1], leaf, X, y, parents)
    levels = tuple(LevelFactor(jnp.asarray(lam), v) for v, lam in factors)
    base = log_marginal_jit(stats, sigma, levels, m0, L0)
    pad = 5
    padded = TreeStats(
        jnp.concatenate([stats.n, jnp.zeros(pad)]),
        jnp.concatenate([stats.xtx, jnp.zeros((2, 2, pad))], axis=-1),
        jnp.concatenate([stats.xty, jnp.zeros((2, pad))], axis=-1),
        jnp.concatenate([stats.yty, jnp.zeros(pad)]),
        (
            stats.parents[0],
            jnp.concatenate([stats.parents[1], jnp.full(pad, stats.parents[1][-1])]),
        ),
    )
    assert float(log_marginal_jit(padded, sigma, levels, m0, L0)) == pytest.approx(
        float(base), abs=1e-10
    )


def test_gradient_is_finite_at_zero_sd():
    rng = np.random.default_rng(3)
    sizes, parents, leaf, X, y, factors, m0, L0, sigma = random_problem(rng, 2, 2)
    stats = stats_of(sizes[-1], leaf, X, y, parents)

    def f(scale):
        levels = tuple(LevelFactor(scale * jnp.asarray(lam), v) for v, lam in factors)
        return log_marginal(stats, sigma, levels, m0, L0)

    g = jax.jit(jax.grad(f))(0.0)
    assert np.isfinite(float(g))


@pytest.mark.parametrize("slotted", [False, True])
def test_downward_draws_match_dense_conditional(slotted):
    """Moments of exact draws of a leaf's β equal the dense Gaussian posterior, also when
    the levels are slotted (draws come back in the natural order)."""
    rng = np.random.default_rng(11)
    sizes, parents, leaf, X, y, factors, m0, L0, sigma = random_problem(rng, 2, 2)
    factors = [((0, 1), np.array([[0.8, 0.0], [0.3, 0.5]])), ((0,), np.array([[0.6]]))]
    stats = stats_of(sizes[-1], leaf, X, y, parents)
    if slotted:
        stats = laid_out(stats, parents, np.inf)
    levels = tuple(LevelFactor(jnp.asarray(lam), v) for v, lam in factors)
    keys = jax.random.split(jax.random.PRNGKey(0), 20000)
    draw = jax.jit(jax.vmap(lambda k: draw_tree(k, stats, sigma, levels, m0, L0)))
    root, (lev1, lev2), log_ml, _ = draw(keys)
    want = log_marginal_jit(stats, sigma, levels, m0, L0)
    assert np.allclose(np.asarray(log_ml), float(want), rtol=1e-12)
    # Dense joint prior of (root, level-1 nodes, leaves) is linear in standard normals.
    G1, G2 = sizes
    dim = 2 + 2 * G1 + 1 * G2
    T = np.zeros((2 + 2 * G1 + 2 * G2, dim))
    T[0:2, 0:2] = L0
    for g in range(G1):
        T[2 + 2 * g : 4 + 2 * g, 0:2] = L0
        T[2 + 2 * g : 4 + 2 * g, 2 + 2 * g : 4 + 2 * g] = factors[0][1]
    off = 2 + 2 * G1
    for g in range(G2):
        par = parents[1][g]
        rows = slice(off + 2 * g, off + 2 * g + 2)
        T[rows] = T[2 + 2 * par : 4 + 2 * par]
        T[off + 2 * g, 2 + 2 * G1 + g] += factors[1][1][0, 0]
    mean0 = np.concatenate([m0] * (1 + G1 + G2))
    # y = X β_leaf + noise
    Z = np.zeros((len(y), T.shape[0]))
    for r, g in enumerate(leaf):
        Z[r, off + 2 * g : off + 2 * g + 2] = X[r]
    P = T @ T.T
    S = Z @ P @ Z.T + sigma**2 * np.eye(len(y))
    K = P @ Z.T @ np.linalg.solve(S, np.eye(len(y)))
    post_mean = mean0 + K @ (y - Z @ mean0)
    post_cov = P - K @ Z @ P
    flat = np.concatenate(
        [
            np.asarray(root),
            np.asarray(lev1)[:, :G1].reshape(len(keys), -1),
            np.asarray(lev2)[:, :G2].reshape(len(keys), -1),
        ],
        axis=1,
    )
    sd = np.sqrt(np.diag(post_cov))
    se = sd / np.sqrt(len(keys))
    assert np.all(np.abs(flat.mean(0) - post_mean) < 5 * se)
    assert np.allclose(flat.std(0), sd, rtol=0.04)
