"""Model building, the original-scale likelihood, pooling modes and saving."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

import hierlm as hl
from hierlm.assemble import bucket

FAST = {"chains": 2, "draws": 200, "tune": 200}


def test_bucket_is_monotone_and_close():
    prev = 0
    for n in range(1, 5000):
        b = bucket(n)
        assert b >= n and b >= prev
        assert n <= 8 or b <= 1.2 * n + 1
        prev = b


def test_repeated_labels_become_distinct_groups(small_df):
    model = hl.Model("y ~ x + (1 + x | a/b)", small_df)
    tree = model.data.design.tree
    assert model.n_groups == {"a": 4, "b": 12}
    assert "a0/b1" in tree.labels[1] and "a3/b1" in tree.labels[1]
    notes = [str(r) for r in tree.repeated]
    assert "b: 'b0' occurs under 4 as, treated as 4 groups" in notes


def test_radon_washington_is_reported():
    model = hl.Model("log_radon ~ floor + (1 | state/county)", hl.datasets.radon())
    text = [str(r) for r in model.data.design.tree.repeated]
    assert "county: 'WASHINGTON' occurs under 4 states, treated as 4 groups" in text
    labels = model.data.design.tree.labels[1]
    assert {"MN/WASHINGTON", "PA/WASHINGTON"} <= set(labels)


def test_gradient_is_finite_at_start(small_df):
    model = hl.Model("y ~ x + (1 + x | a/b)", small_df)
    theta = jnp.zeros(model.problem.layout.size)
    value, grad = jax.value_and_grad(model.log_density)(theta)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))


def dense_loglik_original(df, sigma, sd_a, corr_a, sd_b, corr_b, prior_mean, prior_cov):
    """log p(y) on the original scale, all coefficients integrated out, by a dense MVN."""
    X = np.column_stack([np.ones(len(df)), df["x"].to_numpy()])
    y = df["y"].to_numpy()
    cov = X @ prior_cov @ X.T + sigma**2 * np.eye(len(y))
    for col, sd, corr in (("a", sd_a, corr_a), (("a", "b"), sd_b, corr_b)):
        key = df[col].astype(str) if isinstance(col, str) else df["a"] + "/" + df["b"]
        S = np.outer(sd, sd) * corr
        same = key.to_numpy()[:, None] == key.to_numpy()[None, :]
        cov += same * (X @ S @ X.T)
    return multivariate_normal(X @ prior_mean, cov).logpdf(y)


@pytest.mark.slow
def test_reported_loglik_is_exact_on_original_scale(small_df):
    priors = hl.Priors(intercept=hl.Normal(9.0, 3.0), beta=hl.Normal(1.0, 2.0))
    fit = hl.Model("y ~ x + (1 + x | a/b)", small_df, priors=priors).fit(**FAST, seed=3)
    post = fit.idata.posterior.isel(chain=0)
    xbar = small_df["x"].mean()
    # Prior on (b0 + xbar b1, b1) independent; map to (b0, b1).
    A = np.array([[1.0, -xbar], [0.0, 1.0]])
    mean = A @ np.array([9.0, 1.0])
    cov = A @ np.diag([9.0, 4.0]) @ A.T
    lml = fit.idata.sample_stats["log_marginal_likelihood"].isel(chain=0)
    for d in (0, 57, 199):
        p = post.isel(draw=d)
        want = dense_loglik_original(
            small_df,
            float(p["sigma"]),
            p["sd_a"].values,
            p["corr_a"].values,
            p["sd_b"].values,
            p["corr_b"].values,
            mean,
            cov,
        )
        assert float(lml.isel(draw=d)) == pytest.approx(want, abs=1e-6)


@pytest.mark.slow
def test_lognormal_reports_jacobian(small_df):
    df = small_df.assign(w=np.exp(small_df["y"] / 10), lw=small_df["y"] / 10)
    kw = {"chains": 1, "draws": 50, "tune": 50, "seed": 1}
    by_family = hl.Model("w ~ x + (1 | a)", df, family="lognormal").fit(**kw)
    by_log = hl.Model("log(w) ~ x + (1 | a)", df).fit(**kw)
    on_log_column = hl.Model("lw ~ x + (1 | a)", df).fit(**kw)
    a = by_family.idata.sample_stats["log_marginal_likelihood"].values
    b = by_log.idata.sample_stats["log_marginal_likelihood"].values
    c = on_log_column.idata.sample_stats["log_marginal_likelihood"].values
    np.testing.assert_allclose(a, b, rtol=1e-12)
    # The third fit sees v where the others see log(exp(v)): the chains drift apart at the
    # rounding level (1e-10 relative), far below the Jacobian offset sum(lw) (about 140).
    np.testing.assert_allclose(a, c - df["lw"].sum(), rtol=1e-7)
    np.testing.assert_allclose(
        by_family.idata.posterior["beta"].values,
        on_log_column.idata.posterior["beta"].values,
        rtol=1e-6,
    )


@pytest.mark.slow
def test_complete_pooling_has_no_group_variation(small_df):
    fit = hl.Model("y ~ x + (1 + x | a/b)", small_df, pooling="complete").fit(**FAST)
    post = fit.idata.posterior
    assert not any(str(v).startswith("sd_") for v in post.data_vars)
    np.testing.assert_allclose(
        post["beta_b"].values, post["beta"].values[:, :, None, :].repeat(12, axis=2)
    )


@pytest.mark.slow
def test_no_pooling_matches_per_group_least_squares():
    rng = np.random.default_rng(5)
    g = np.repeat(["g0", "g1", "g2"], 400)
    x = rng.normal(size=len(g))
    slopes = np.array([1.0, -1.0, 3.0])[np.repeat(np.arange(3), 400)]
    y = 5 + slopes * x + rng.normal(0, 0.5, size=len(g))
    df = pd.DataFrame({"y": y, "x": x, "g": g})
    fit = hl.Model("y ~ x + (1 + x | g)", df, pooling="none").fit(**FAST)
    est = fit.idata.posterior["beta_g"].mean(("chain", "draw")).values
    for k in range(3):
        rows = df["g"] == f"g{k}"
        X = np.column_stack([np.ones(rows.sum()), x[rows]])
        ols = np.linalg.lstsq(X, y[rows], rcond=None)[0]
        np.testing.assert_allclose(est[k], ols, atol=0.02)


@pytest.mark.slow
def test_save_load_is_bit_identical(small_df, tmp_path):
    fit = hl.Model("y ~ x + (1 + x || a/b)", small_df).fit(**FAST, seed=2)
    path = fit.save(tmp_path / "m.hlm")
    back = hl.load(path)
    for name in fit.idata.posterior.data_vars:
        np.testing.assert_array_equal(
            fit.idata.posterior[name].values, back.idata.posterior[name].values
        )
    pd.testing.assert_frame_equal(fit.summary(), back.summary())
    assert back.design.tree.labels == fit.design.tree.labels
    assert not list(tmp_path.glob("*.part"))
    # A loaded fit is whole in memory: load reads a temporary copy of the data and deletes
    # it. Closing xarray's cached file handles (as its LRU cache may at any time) must not
    # lose anything.
    from xarray.backends.file_manager import FILE_CACHE

    reloaded = hl.load(path)
    FILE_CACHE.clear()
    again = hl.load(reloaded.save(tmp_path / "again.hlm"))
    np.testing.assert_array_equal(
        fit.idata.sample_stats["lp"].values, again.idata.sample_stats["lp"].values
    )


def test_load_refuses_garbage(tmp_path):
    bad = tmp_path / "bad.hlm"
    bad.write_bytes(b"not a zip")
    with pytest.raises(hl.HierlmError, match="not a hierlm fit file or is corrupted"):
        hl.load(bad)


@pytest.mark.slow
def test_same_seed_same_draws(small_df):
    m = hl.Model("y ~ x + (1 | a/b)", small_df)
    a = m.fit(**FAST, seed=4).idata.posterior["beta_b"].values
    b = m.fit(**FAST, seed=4).idata.posterior["beta_b"].values
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("devices", [1, 2])
def test_chains_on_fewer_devices_agree(small_df, monkeypatch, devices):
    # One device per chain (the default on CPU), two chains per device, and all four
    # vectorised on one device are three different programs of the same sampler.
    import jax

    import hierlm.sampler

    assert jax.device_count() >= 4
    model = hl.Model("y ~ x + (1 + x | a/b)", small_df)
    kw = {"chains": 4, "draws": 500, "tune": 500, "seed": 3}
    spread = model.fit(**kw)
    monkeypatch.setattr(hierlm.sampler, "_chain_devices", lambda chains: devices)
    packed = model.fit(**kw)
    for fit in (spread, packed):
        assert fit.idata.sample_stats["diverging"].values.sum() == 0
    a, b = (f.idata.posterior for f in (spread, packed))
    for name in ("beta", "sigma", "sd_a", "sd_b"):
        x, y = a[name].values, b[name].values
        se = np.sqrt(x.var(axis=(0, 1)) / 1000 + y.var(axis=(0, 1)) / 1000)
        assert np.all(np.abs(x.mean(axis=(0, 1)) - y.mean(axis=(0, 1))) < 4 * se), name


@pytest.mark.slow
def test_draws_are_identical_in_another_process_without_the_cache(small_df, tmp_path):
    # The saved (exported) programs and freshly traced ones must be the same programs, and
    # a new process must draw the same numbers.
    import os
    import subprocess
    import sys

    small_df.to_csv(tmp_path / "d.csv", index=False)
    here = hl.Model("y ~ x + (1 | a/b)", small_df).fit(**FAST, seed=9)
    script = (
        "import sys, numpy as np, pandas as pd, hierlm as hl\n"
        f"df = pd.read_csv({str(tmp_path / 'd.csv')!r})\n"
        "fit = hl.Model('y ~ x + (1 | a/b)', df).fit("
        + ", ".join(f"{k}={v!r}" for k, v in FAST.items())
        + ", seed=9)\n"
        f"np.save({str(tmp_path / 'b.npy')!r}, fit.idata.posterior['beta_b'].values)\n"
    )
    env = {**os.environ, "HIERLM_CACHE_DIR": "off"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    there = np.load(tmp_path / "b.npy")
    np.testing.assert_array_equal(here.idata.posterior["beta_b"].values, there)


def test_one_chain_fit_keeps_arviz_quiet(small_df):
    import logging

    import arviz as az

    seen: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    catch = Catch()
    az._log.addHandler(catch)
    try:
        fit = hl.Model("y ~ x + (1 | a)", small_df).fit(chains=1, draws=100, tune=100)
        fit.summary()
        assert "Only one chain" in str(fit.diagnose()[0])
        assert not [m for m in seen if "Shape validation" in m]
        az.rhat(np.zeros((1, 10)))  # the user's own ArviZ calls still warn
        assert [m for m in seen if "Shape validation" in m]
    finally:
        az._log.removeHandler(catch)
