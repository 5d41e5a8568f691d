"""Shared fixtures: small simulated data sets and one shared radon fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl

# Before any test runs JAX code: float64 and one CPU device per chain, as in a real session.
hl._jax.configure()


def log_marginal_jit(stats, sigma, levels, m0, L0):
    """:func:`hierlm.collapse.log_marginal`, compiled (the path every fit runs). Run op by op
    it took seconds per tree, minutes over the test suite."""
    import jax

    from hierlm.collapse import LevelFactor, log_marginal

    vs = tuple(lf.v for lf in levels)

    def f(stats, sigma, lams, m0, L0):
        return log_marginal(stats, sigma, tuple(map(LevelFactor, lams, vs)), m0, L0)

    return jax.jit(f)(stats, sigma, tuple(lf.lam for lf in levels), m0, L0)


def simulate_two_level(seed: int = 0, n_a: int = 4, n_b: int = 3, rows: int = 5) -> pd.DataFrame:
    """y ~ x + (1 + x | a/b) with labels b repeated under every a."""
    rng = np.random.default_rng(seed)
    a = np.repeat([f"a{i}" for i in range(n_a)], n_b * rows)
    b = np.tile(np.repeat([f"b{j}" for j in range(n_b)], rows), n_a)
    x = rng.normal(3.0, 2.0, size=len(a))
    ia = np.repeat(np.arange(n_a), n_b * rows)
    ib = np.repeat(np.arange(n_a * n_b), rows)
    u_a = rng.normal(0, 0.8, size=(n_a, 2))
    u_b = rng.normal(0, 0.4, size=(n_a * n_b, 2))
    y = (
        10
        + 2 * x
        + u_a[ia, 0]
        + u_b[ib, 0]
        + (u_a[ia, 1] + u_b[ib, 1]) * x
        + rng.normal(0, 0.7, size=len(a))
    )
    return pd.DataFrame({"y": y, "x": x, "a": a, "b": b})


@pytest.fixture(scope="session")
def small_df() -> pd.DataFrame:
    return simulate_two_level()


@pytest.fixture(scope="session")
def radon_mn() -> pd.DataFrame:
    return hl.datasets.radon("MN")


@pytest.fixture(scope="session")
def radon_all() -> pd.DataFrame:
    return hl.datasets.radon()


@pytest.fixture
def out_of_core(monkeypatch):
    """Stream (DuckDB) or reduce on the workers (Dask) however small the source: the
    threshold below which a source is read into memory."""
    from hierlm import model as model_module

    monkeypatch.setattr(model_module, "KEEP_DATA_ROWS", 10)
