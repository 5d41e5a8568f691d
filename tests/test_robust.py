"""Numerical robustness of the collapsed path: float64 throughout, extremely unbalanced
groups against a dense reference, and finite gradients at near-zero level sds."""

from __future__ import annotations

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

import hierlm as hl
from conftest import log_marginal_jit
from hierlm.collapse import LevelFactor, TreeStats
from hierlm.density import log_density
from test_collapse import dense_logpdf, stats_of


@pytest.fixture(scope="module")
def model(small_df) -> hl.Model:
    return hl.Model("y ~ x + (1 + x | a/b)", small_df)


# One compiled program (op by op, the density's first evaluation took 20 s).
_value_and_grad = jax.jit(jax.value_and_grad(log_density), static_argnums=2)


def test_collapsed_path_is_float64(model):
    args, layout = model.problem.args, model.problem.layout
    for leaf in jax.tree.leaves(args):
        kind = jnp.result_type(leaf)
        assert kind in (jnp.float64, jnp.int32, jnp.int64), kind
    assert any(jnp.result_type(leaf) == jnp.float64 for leaf in jax.tree.leaves(args))
    theta = np.zeros(layout.size)
    value, grad = _value_and_grad(theta, args, layout)
    assert value.dtype == jnp.float64 and grad.dtype == jnp.float64
    # No intermediate anywhere in the program is computed in lower precision.
    jaxpr = jax.make_jaxpr(jax.value_and_grad(log_density), static_argnums=2)(theta, args, layout)
    low = {jnp.dtype(t) for t in ("float32", "float16", "bfloat16")}
    seen = set()

    def walk(jx):
        for eqn in jx.eqns:
            for var in eqn.outvars:
                seen.add(var.aval.dtype)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jaxpr.jaxpr)
    assert jnp.dtype("float64") in seen and not seen & low, seen


def _one_level_stats(rows: list[int], rng: np.random.Generator):
    """y ~ (1 + x | g) data with the given rows per group, as leaf statistics."""
    leaf = np.repeat(np.arange(len(rows)), rows)
    x = rng.normal(size=len(leaf))
    X = np.column_stack([np.ones(len(leaf)), x])
    beta = rng.normal(size=(len(rows), 2)) * np.array([1.0, 0.5])
    y = 0.3 + np.sum(X * beta[leaf], axis=1) + rng.normal(0, 0.8, size=len(leaf))
    parents = (np.zeros(len(rows), dtype=np.int64),)
    return stats_of(len(rows), leaf, X, y, parents), (leaf, X, y, parents)


def _reference_from_stats(stats: TreeStats, sigma, lam, m0, L0) -> float:
    """``log p(y)`` of a one-level model from its statistics alone, by the candidate
    identity ``log p(y) = log p(y | u) + log p(u) - log p(u | y)`` at the posterior mean
    of ``u``, the standard normals behind every coefficient (the root's and each
    group's), with their joint Gaussian prior and posterior written out densely: no
    message passing."""
    n, xtx, xty, yty = (np.asarray(a) for a in stats[:4])
    p, G = xty.shape
    d = p * (1 + G)
    # b = T u + m, u ~ N(0, I): the root β0 = m0 + L0 u0, group β_g = β0 + Λ u_g.
    T = np.zeros((d, d))
    T[:p, :p] = L0
    for g in range(G):
        rows = slice(p * (1 + g), p * (2 + g))
        T[rows, :p] = L0
        T[rows, rows] = lam
    mean = np.tile(m0, 1 + G)
    # The likelihood as a quadratic in b: only the group blocks see the data.
    A = np.zeros((d, d))
    r = np.zeros(d)
    for g in range(G):
        rows = slice(p * (1 + g), p * (2 + g))
        A[rows, rows] = xtx[:, :, g] / sigma**2
        r[rows] = xty[:, g] / sigma**2
    # In u the prior is N(0, I) and the posterior precision I + TᵀAT stays well
    # conditioned however small Λ is.
    post_prec = np.eye(d) + T.T @ A @ T
    u = np.linalg.solve(post_prec, T.T @ (r - A @ mean))
    b = mean + T @ u
    log_lik = np.sum(-0.5 * n * np.log(2 * np.pi * sigma**2) - 0.5 * yty / sigma**2)
    log_lik += b @ r - 0.5 * b @ A @ b
    log_prior = -0.5 * d * np.log(2 * np.pi) - 0.5 * u @ u
    log_post = -0.5 * d * np.log(2 * np.pi) + 0.5 * np.linalg.slogdet(post_prec)[1]
    return float(log_lik + log_prior - log_post)


def _collapsed(stats: TreeStats, sigma, lam, m0, L0) -> float:
    jstats = TreeStats(*(jnp.asarray(a) for a in stats[:4]), tuple(map(jnp.asarray, stats[4])))
    levels = (LevelFactor(jnp.asarray(lam), (0, 1)),)
    return float(log_marginal_jit(jstats, sigma, levels, jnp.asarray(m0), jnp.asarray(L0)))


_LAM = np.array([[0.9, 0.0], [0.2, 0.4]])
_M0 = np.array([0.1, -0.2])
_L0 = np.array([[2.0, 0.0], [0.3, 1.5]])


def test_statistics_reference_equals_dense_mvn():
    """The reference used below agrees with the dense MVN over rows where that fits."""
    rng = np.random.default_rng(0)
    stats, (leaf, X, y, parents) = _one_level_stats([1, 40, 3], rng)
    dense = dense_logpdf([3], parents, leaf, X, y, [((0, 1), _LAM)], _M0, _L0, 0.8)
    assert _reference_from_stats(stats, 0.8, _LAM, _M0, _L0) == pytest.approx(dense, rel=1e-12)
    assert _collapsed(stats, 0.8, _LAM, _M0, _L0) == pytest.approx(dense, rel=1e-12)


@pytest.mark.parametrize("lam_scale", [1.0, 1e-6])
def test_one_row_beside_a_million_rows(lam_scale):
    """A group of 1 row, one of 1e6 and one of 3: the collapsed log marginal likelihood
    equals the dense reference, which needs only the statistics (a dense covariance over
    a million rows would not fit in memory)."""
    rng = np.random.default_rng(1)
    stats, _ = _one_level_stats([1, 1_000_000, 3], rng)
    lam = _LAM * lam_scale
    want = _reference_from_stats(stats, 0.8, lam, _M0, _L0)
    got = _collapsed(stats, 0.8, lam, _M0, _L0)
    assert np.isfinite(got) and abs(want) > 1e6
    assert got == pytest.approx(want, rel=1e-13)  # measured 2e-16


@pytest.mark.parametrize("log_sd", [-10.0, -20.0, -30.0])
def test_near_zero_level_sds_have_finite_gradients(model, log_sd):
    from hierlm.density import theta_labels

    design = model.data.design
    labels = theta_labels(model.problem.layout, design.level_names, design.coef_names)
    theta = np.array([log_sd if name.startswith("log sd_") else 0.0 for name in labels])
    assert (theta == log_sd).sum() == 4  # Intercept and x at both levels
    args, layout = model.problem.args, model.problem.layout
    value, grad = _value_and_grad(theta, args, layout)
    assert np.isfinite(float(value)), value
    assert np.all(np.isfinite(np.asarray(grad))), dict(zip(labels, np.asarray(grad), strict=True))
    # One level's sd near zero while the other's is ordinary.
    mixed = np.array([log_sd if name.startswith("log sd_b") else 0.0 for name in labels])
    value, grad = _value_and_grad(mixed, args, layout)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))


@pytest.mark.parametrize(
    ("formula", "family"),
    [
        ("y ~ x + (1 + x | a/b)", "gaussian"),
        ("y ~ x + (1 | a) + (1 | b)", "gaussian"),
        ("y ~ x + (1 | a)", "student_t"),
    ],
)
def test_full_latent_start_names_every_entry(small_df, monkeypatch, formula, family):
    """The full-latent engine's start failure names the entry, wherever it sits."""
    import hierlm.latent_fit as latent_fit

    seen = {}
    real = latent_fit._value_and_grad

    def broken(lat, data):
        program = real(lat, data)
        seen["size"] = lat.size

        def call(x, data):
            value, grad = program(x, data)
            return value, np.asarray(grad).copy() * np.where(
                np.arange(lat.size) == lat.size - 1, np.nan, 1
            )

        return call

    monkeypatch.setattr(latent_fit, "_value_and_grad", broken)
    with pytest.raises(hl.HierlmError, match=r"the sampler cannot start") as caught:
        hl.Model(formula, small_df, family=family, engine="full").fit(chains=2, draws=10, tune=10)
    last = "z_b[23]" if "a/b" in formula else ("z_b[2]" if "(1 | b)" in formula else "z_a[3]")
    assert f"gradient is not, for {last}." in str(caught.value)
    assert seen["size"] > 0
