"""The mode of θ and the curvature there (the sampler's preconditioner)."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from conftest import simulate_two_level
from hierlm.density import log_density
from hierlm.laplace import find_laplace


def _floored_inverse(hess: np.ndarray) -> np.ndarray:
    w, V = np.linalg.eigh(-hess)
    return (V / np.maximum(w, 0.1)) @ V.T


def _exact(model: hl.Model, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    layout = model.problem.layout

    @jax.jit
    def exact(t, args):
        f = lambda t: log_density(t, args, layout)  # noqa: E731
        return jax.grad(f)(t), jax.hessian(f)(t)

    grad, hess = exact(theta, model.problem.args)
    return np.asarray(grad), np.asarray(hess)


@pytest.mark.parametrize(
    "formula", ["y ~ x + (1 + x | a/b)", "y ~ x + (1 + x || a) + (1 | a:b)", "y ~ x + (1 | a)"]
)
def test_mode_and_curvature_match_autodiff(small_df, formula):
    model = hl.Model(formula, small_df)
    lap = find_laplace(model.problem.layout, model.problem.args)
    assert lap.converged
    grad, hess = _exact(model, lap.mode)
    sd = np.sqrt(np.diag(np.linalg.inv(-hess)))
    assert np.all(np.abs(grad) * sd < 1e-4)  # within 1e-4 posterior sds of the mode
    # C Cᵀ is the inverse of -H with curvatures floored at 0.1.
    want = _floored_inverse(hess)
    np.testing.assert_allclose(lap.root_cov @ lap.root_cov.T, want, rtol=1e-4, atol=1e-6)


def test_mode_converges_with_a_million_rows():
    # At 1e6 rows the curvature of log σ is ~2e6 against ~1 for the sds: the ill
    # conditioning that stopped the BFGS search the sampler used before.
    rng = np.random.default_rng(3)
    n, groups = 1_000_000, 40
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    y = 1 + rng.normal(0, 0.5, groups)[g] + (0.5 + rng.normal(0, 0.2, groups)[g]) * x
    y += rng.normal(size=n)
    frame = pd.DataFrame({"y": y, "x": x, "g": g})
    model = hl.Model("y ~ x + (1 + x | g)", frame)
    lap = find_laplace(model.problem.layout, model.problem.args)
    assert lap.converged
    grad, hess = _exact(model, lap.mode)
    sd = np.sqrt(np.diag(np.linalg.inv(-hess)))
    assert np.all(np.abs(grad) * sd < 1e-3)  # within a thousandth of a posterior sd
    np.testing.assert_allclose(
        lap.root_cov @ lap.root_cov.T, _floored_inverse(hess), rtol=1e-3, atol=1e-9
    )


def test_unconverged_mode_is_reported(small_df, monkeypatch):
    model = hl.Model("y ~ x + (1 + x | a/b)", small_df)
    lap = find_laplace(model.problem.layout, model.problem.args, max_iter=1)
    assert not lap.converged and lap.iterations == 1
    import hierlm.laplace

    monkeypatch.setattr(
        hierlm.laplace,
        "find_laplace",
        lambda layout, args, **kw: find_laplace(layout, args, max_iter=1, **kw),
    )
    fit = model.fit(chains=2, draws=100, tune=100)
    assert not fit.info.mode_converged
    first = fit.diagnose()[0]
    assert first.severity == "warning" and "without converging" in first.message


def test_other_seed_data_still_converges():
    for seed in range(3):
        model = hl.Model("y ~ x + (1 + x | a/b)", simulate_two_level(seed, n_a=3, n_b=4))
        assert find_laplace(model.problem.layout, model.problem.args).converged


def test_mode_of_the_three_level_benchmark_model():
    # The benchmark's model B at 1e5 rows: untamed Newton steps from θ = 0 ran off to
    # log sd = 12, where the message passing loses precision, and never converged.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from simulate import simulate

    model = hl.Model("y ~ x + (1 + x | a/b/c)", simulate(100_000).frame)
    lap = find_laplace(model.problem.layout, model.problem.args)
    assert lap.converged and lap.iterations < 30
    grad, hess = _exact(model, lap.mode)
    sd = np.sqrt(np.diag(np.linalg.inv(-hess)))
    assert np.all(np.abs(grad) * sd < 1e-4)
    assert np.all(np.abs(lap.mode) < 5)
