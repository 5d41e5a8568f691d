"""Predictive checks, pooling comparison (LOO and leave-one-group-out) and pooling factors."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.compare import _collapsed_logo, group_log_lik
from test_model import dense_loglik_original

FAST = {"chains": 2, "draws": 300, "tune": 300}
FORMULA = "log_radon ~ floor + (1 + floor | county)"


@pytest.fixture(scope="module")
def radon_fit(radon_mn):
    return hl.Model(FORMULA, radon_mn).fit(**FAST, seed=2)


def test_ppc_statistics_and_shapes(radon_fit, radon_mn):
    check = radon_fit.ppc(draws=200, seed=1)
    assert check.replicated.shape == (200, len(radon_mn))
    assert list(check.statistics.index) == ["mean", "sd", "min", "max", "sd of county means"]
    np.testing.assert_allclose(check.statistics.loc["mean", "observed"], radon_mn.log_radon.mean())
    # A model that fits: the centre and spread of the data are typical of its replicates.
    for stat in ("mean", "sd", "sd of county means"):
        assert 0.05 < check.statistics.loc[stat, "p_value"] < 0.95
    assert check.extreme() == [] or all("max" in e or "min" in e for e in check.extreme())


def test_ppc_flags_a_model_without_group_variation():
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(20), 10)
    df = pd.DataFrame(
        {"y": rng.normal(0, 2, 20)[g] + rng.normal(0, 0.5, len(g)), "g": g.astype(str)}
    )
    good = hl.Model("y ~ 1 + (1 | g)", df).fit(**FAST, seed=2).ppc(draws=200, seed=1)
    bad = hl.Model("y ~ 1 + (1 | g)", df, pooling="complete").fit(**FAST, seed=2)
    check = bad.ppc(draws=200, seed=1)
    # Complete pooling cannot reproduce how much the group means differ; partial can.
    assert check.statistics.loc["sd of g means", "p_value"] < 0.01
    assert any("sd of g means" in e for e in check.extreme())
    assert 0.05 < good.statistics.loc["sd of g means", "p_value"] < 0.95


def test_prior_predictive_draws_from_the_priors_without_sampling(radon_mn):
    tight = hl.Normal(0.0, 1e-3)
    priors = hl.Priors(
        intercept=tight,
        beta=tight,
        sd=hl.HalfNormal(1e-3),
        sigma=hl.HalfNormal(2.0),
    )
    model = hl.Model(FORMULA, radon_mn, priors=priors)
    started = time.perf_counter()
    check = model.prior_predictive(draws=2000, seed=3)
    assert time.perf_counter() - started < 30
    assert check.source == "prior"
    # y ≈ σ ε with σ ~ HalfNormal(2): the replicates' sd averages E σ = 2 √(2/π).
    sd = check.statistics.loc["sd", "mean"]
    assert sd == pytest.approx(2 * np.sqrt(2 / np.pi), rel=0.05)
    assert abs(check.statistics.loc["mean", "mean"]) < 0.05


def test_prior_predictive_group_spread_follows_the_sd_prior(radon_mn):
    priors = hl.Priors(
        intercept=hl.Normal(0.0, 1e-3),
        beta=hl.Normal(0.0, 1e-3),
        sd=hl.HalfNormal(1e-3),
        sigma=hl.HalfNormal(1e-3),
    )
    quiet = hl.Model("log_radon ~ 1 + (1 | county)", radon_mn, priors=priors)
    wide = hl.Model(
        "log_radon ~ 1 + (1 | county)",
        radon_mn,
        priors=priors.merged(hl.Priors(sd=hl.HalfNormal(3.0))),
    )
    a = quiet.prior_predictive(draws=500, seed=1).statistics.loc["sd of county means", "mean"]
    b = wide.prior_predictive(draws=500, seed=1).statistics.loc["sd of county means", "mean"]
    assert a < 0.01
    # County means ≈ the county effects: their sd averages E τ = 3 √(2/π).
    assert b == pytest.approx(3 * np.sqrt(2 / np.pi), rel=0.1)


def test_pooling_factor_matches_the_closed_form(radon_mn):
    fit = hl.Model("log_radon ~ floor + (1 | county)", radon_mn).fit(**FAST, seed=4)
    pooled = fit.pooling()
    post = fit.idata.posterior
    s2 = post["sigma"].values.reshape(-1, 1) ** 2
    t2 = post["sd_county"].values.reshape(-1, 1) ** 2
    n = pooled.groups["n"].to_numpy()[None, :]
    want = np.mean(s2 / (s2 + n * t2), axis=0)
    got = pooled.groups["pool[Intercept]"].to_numpy()
    # Averaged over every draw, as the downward pass accumulates them.
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # Small counties are pooled more than large ones.
    assert got[np.argmin(n)] > 0.5 > got[np.argmax(n)]
    share = pooled.levels.set_index("coef").loc["Intercept", "share_of_variance"]
    assert share == pytest.approx(np.mean(t2 / (t2 + s2)), rel=1e-6)


def test_pooling_factors_of_correlated_effects_match_a_dense_inverse(radon_mn):
    """diag((I + ΩJ)⁻¹) per county, J = XᵀX/σ² and Ω from the drawn sds and correlation,
    averaged over draws: a dense NumPy inverse against the downward pass's push-through
    form. A diagonal rescaling of the coefficients leaves that diagonal unchanged, so the
    original scale serves."""
    fit = hl.Model("log_radon ~ floor + (1 + floor | county)", radon_mn).fit(**FAST, seed=2)
    post = fit.idata.posterior
    sigma = post["sigma"].values.reshape(-1)
    sd = post["sd_county"].values.reshape(-1, 2)
    corr = post["corr_county"].values.reshape(-1, 2, 2)
    omega = sd[:, :, None] * corr * sd[:, None, :]
    design = fit.design
    tree = design.tree
    labels = list(tree.labels[0])
    county = radon_mn["county"].astype(str).to_numpy()
    floor = radon_mn["floor"].to_numpy(dtype=float)
    want = np.empty((len(labels), 2))
    for g, label in enumerate(labels):
        x = floor[county == label.split("/")[-1]]
        X = np.column_stack([np.ones_like(x), x])
        J = (X.T @ X)[None] / sigma[:, None, None] ** 2
        inv = np.linalg.inv(np.eye(2)[None] + omega @ J)
        want[g] = np.diagonal(inv, axis1=1, axis2=2).mean(axis=0)
    got = fit.pooling().groups[["pool[Intercept]", "pool[floor]"]].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-8)


def test_group_log_lik_ignores_terms_precomputed_from_all_leaves(small_df):
    """Leaving a group out changes the leaf statistics, so the leaf terms that assembling
    precomputed from all of them (distinct counts, parent sums) must not be used."""
    model = hl.Model("y ~ x + (1 | a/b)", small_df)
    stats = model.problem.args.stats
    assert stats.distinct is not None and stats.leaf_sums is not None
    theta = np.random.default_rng(0).normal(0, 0.3, (2, model.problem.layout.size))
    got = _collapsed_logo(model, theta, "a")
    plain = stats._replace(distinct=None, leaf_sums=None)
    model.problem = dataclasses.replace(
        model.problem, args=model.problem.args._replace(stats=plain)
    )
    np.testing.assert_allclose(got, _collapsed_logo(model, theta, "a"), rtol=1e-10)


def test_group_log_lik_is_the_exact_conditional_density(small_df):
    priors = hl.Priors(intercept=hl.Normal(9.0, 3.0), beta=hl.Normal(1.0, 2.0))
    model = hl.Model("y ~ x + (1 + x | a/b)", small_df, priors=priors)
    fit = model.fit(chains=1, draws=30, tune=100, seed=3)
    xbar = small_df["x"].mean()
    A = np.array([[1.0, -xbar], [0.0, 1.0]])
    mean, cov = A @ np.array([9.0, 1.0]), A @ np.diag([9.0, 4.0]) @ A.T
    cond, method = group_log_lik(fit, model, small_df, "a", np.array([5, 17]))
    assert "exact" in method
    post = fit.idata.posterior.isel(chain=0)
    labels = model.data.design.tree.labels[0]
    for row, d in enumerate((5, 17)):
        p = post.isel(draw=d)
        args = [float(p["sigma"]), p["sd_a"].values, p["corr_a"].values]
        args += [p["sd_b"].values, p["corr_b"].values, mean, cov]
        full = dense_loglik_original(small_df, *args)
        for g, label in enumerate(labels):
            rest = small_df[small_df["a"] != label].reset_index(drop=True)
            want = full - dense_loglik_original(rest, *args)
            assert cond[row, g] == pytest.approx(want, abs=1e-6)


@pytest.mark.slow
def test_partial_pooling_predicts_new_counties_best(radon_mn):
    fit = hl.Model(FORMULA, radon_mn).fit(chains=4, draws=500, tune=500, seed=1)
    comparison = fit.compare_pooling()
    table = comparison.table
    assert comparison.level == "county"
    assert "exact" in comparison.logo_method
    logo = table["elpd_logo"]
    assert logo["partial"] > logo["complete"] + 2 * table.loc["complete", "logo_se_diff"]
    assert logo["partial"] > logo["none"] + 2 * table.loc["none", "logo_se_diff"]
    assert table["elpd_loo"].idxmax() == "partial"
    assert set(comparison.fits) == {"partial", "none", "complete"}
    assert comparison.fits["partial"] is fit
    # No pooling has a free effect per county: many more effective parameters.
    assert (
        table.loc["none", "p_loo"] > table.loc["partial", "p_loo"] > table.loc["complete", "p_loo"]
    )


def test_sensitivity_names_the_prior_a_parameter_hinges_on():
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(3), 30)
    df = pd.DataFrame(
        {"y": rng.normal(0, 1.5, 3)[g] + rng.normal(0, 1.0, len(g)), "g": g.astype(str)}
    )
    # Three groups barely inform their sd, and this prior holds it well below the data's
    # spread: halving or doubling it moves the sd's posterior far.
    fit = hl.Model("y ~ 1 + (1 | g)", df, priors=hl.Priors(sd=hl.HalfNormal(0.3))).fit(
        **FAST, seed=1
    )
    result = fit.sensitivity()
    assert set(result.table["prior"]) == {"intercept", "sd", "sigma"}
    sd_rows = result.table[
        (result.table["prior"] == "sd") & (result.table["parameter"] == "sd_g[Intercept]")
    ]
    assert sd_rows.set_index("width").loc[2.0, "shift_sd"] > 0.5
    assert sd_rows.set_index("width").loc[0.5, "shift_sd"] < -0.5
    assert any(f.startswith("sd_g[Intercept] depends on the sd prior") for f in result.findings)
    # 90 rows pin sigma down whatever its prior.
    assert not any(f.startswith("sigma depends on the sigma prior") for f in result.findings)


def _bernoulli_groups() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(12), 15)
    eta = -0.3 + rng.normal(0, 1.0, 12)[g]
    y = (rng.random(len(g)) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "g": g.astype(str)})


@pytest.mark.slow
def test_full_latent_fits_compare_by_importance_sampling_and_say_so():
    fit = hl.Model("y ~ 1 + (1 | g)", _bernoulli_groups(), family="bernoulli").fit(**FAST, seed=1)
    check = fit.ppc(draws=200)
    # A 0/1 response ties its min and max in every replicate: mid p-values, no alarm.
    assert check.statistics.loc["min", "p_value"] == pytest.approx(0.5)
    assert not any(e.startswith(("min", "max")) for e in check.extreme())
    comparison = fit.compare_pooling()
    assert "full-latent engine: no exact route" in comparison.logo_method
    table = comparison.table
    assert set(table.index) == {"partial", "none", "complete"}
    assert np.isfinite(table[["elpd_loo", "elpd_logo", "se_diff"]].to_numpy()).all()


def test_fit_shows_itself_as_html_in_notebooks(radon_fit):
    from html.parser import HTMLParser

    html = radon_fit._repr_html_()
    assert html.startswith('<section class="hierlm-fit">')
    assert "log_radon ~ floor + (1 + floor | county)" in html
    assert "county: 85" in html and "sd_county[floor]" in html
    assert "<h4>Diagnostics</h4>" in html and "ESS" in html
    # Well formed: every opened element is closed.
    stack: list[str] = []
    void = {"br", "hr", "img", "meta", "input"}

    class Check(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag not in void:
                stack.append(tag)

        def handle_endtag(self, tag):
            assert stack and stack.pop() == tag, tag

    Check().feed(html)
    assert stack == []
