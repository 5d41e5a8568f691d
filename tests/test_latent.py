"""The full-latent engine: its density, its agreement with the collapsed engine, families,
parameterisation, and bad input for each family."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import DataError, FormulaError, HierlmError


def simulate_family(family: str, seed: int = 0, n_a: int = 8, n_b: int = 4, rows: int = 25):
    """``y ~ x + (1 | a/b)`` with known population coefficients, for a link family."""
    rng = np.random.default_rng(seed)
    a = np.repeat(np.arange(n_a), n_b * rows)
    b = np.repeat(np.arange(n_a * n_b), rows)
    x = rng.normal(0.0, 1.0, size=len(a))
    u_a = rng.normal(0, 0.4, size=n_a)
    u_b = rng.normal(0, 0.3, size=n_a * n_b)
    beta = (0.3, 0.8)
    eta = beta[0] + beta[1] * x + u_a[a] + u_b[b]
    frame = pd.DataFrame({"x": x, "a": [f"a{i}" for i in a], "b": [f"b{j % n_b}" for j in b]})
    if family == "bernoulli":
        frame["y"] = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    elif family == "binomial":
        frame["n"] = rng.integers(1, 12, size=len(a))
        frame["y"] = rng.binomial(frame["n"].to_numpy(), 1 / (1 + np.exp(-eta)))
    elif family == "poisson":
        frame["exposure"] = np.log(rng.uniform(0.5, 2.0, size=len(a)))
        frame["y"] = rng.poisson(np.exp(eta + frame["exposure"].to_numpy()))
    elif family == "student_t":
        frame["y"] = eta + 0.5 * rng.standard_t(4, size=len(a))
    return frame, beta


FORMULAS = {
    "bernoulli": "y ~ x + (1 | a/b)",
    "binomial": "y | trials(n) ~ x + (1 | a/b)",
    "poisson": "y ~ x + offset(exposure) + (1 | a/b)",
    "student_t": "y ~ x + (1 | a/b)",
}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FORMULAS))
def test_each_family_recovers_its_coefficients(family):
    frame, beta = simulate_family(family, seed=11)
    model = hl.Model(FORMULAS[family], frame, family=family)
    assert model.engine == "full"
    fit = model.fit(chains=2, draws=400, tune=400, seed=3)
    post = fit.idata.posterior
    for k, coef in enumerate(("Intercept", "x")):
        draws = post["beta"].sel(coef=coef).values.ravel()
        lo, hi = np.quantile(draws, [0.01, 0.99])
        assert lo < beta[k] < hi, (family, coef, lo, hi)
    assert "sigma" in post if family == "student_t" else "sigma" not in post
    if family == "student_t":
        assert post["nu"].values.min() > 1.0
    assert set(post["beta_b"].dims) == {"chain", "draw", "b", "coef"}
    assert post["beta_b"].sizes["b"] == 32
    assert int(fit.idata.sample_stats["diverging"].sum()) <= 4
    assert fit.info.engine == "full" and len(fit.info.parameterization) == 2


def test_joint_density_matches_a_hand_written_one():
    """The flat joint log density equals one written out term by term with scipy."""
    from scipy import stats

    from hierlm.latent import coefficients, joint_log_density
    from hierlm.latent_fit import latent_problem

    frame, _ = simulate_family("poisson", seed=2, n_a=2, n_b=3, rows=5)
    model = hl.Model(FORMULAS["poisson"], frame, family="poisson")
    lat, data, _ = latent_problem(model.data, model.problem, "noncentered", None)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.3, lat.size)
    got = float(joint_log_density(x, data, lat))
    c = coefficients(x, data, lat)
    leaf_beta = np.asarray(c.levels[-1])[np.asarray(data.leaf)]
    eta = np.sum(np.asarray(data.x) * leaf_beta, axis=1) + np.asarray(data.offset)
    lik = stats.poisson.logpmf(np.asarray(data.y), np.exp(eta)).sum()
    z = x[lat.layout.size :]
    latent_prior = stats.norm.logpdf(z).sum()
    want = lik + latent_prior + float(c.theta.log_prior)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-8)


def test_centered_and_noncentered_are_the_same_model():
    """Same β at matching points: the centred coordinates are the groups' coefficients,
    parent's + Λ w, and the two densities differ by the Jacobian log|det Λ| per group."""
    from hierlm.latent import coefficients, joint_log_density
    from hierlm.latent_fit import latent_problem

    frame, _ = simulate_family("bernoulli", seed=4, n_a=2, n_b=3, rows=6)
    model = hl.Model(FORMULAS["bernoulli"], frame, family="bernoulli")
    lat_nc, data, _ = latent_problem(model.data, model.problem, "noncentered", None)
    lat_c, _, _ = latent_problem(model.data, model.problem, "centered", None)
    rng = np.random.default_rng(1)
    x_nc = rng.normal(0, 0.5, lat_nc.size)
    c_nc = coefficients(x_nc, data, lat_nc)
    x_c = x_nc.copy()
    pos = lat_nc.layout.size + lat_nc.layout.p
    log_det = 0.0
    for li, (g, lv) in enumerate(zip(lat_nc.sizes, lat_nc.layout.levels, strict=True)):
        q = len(lv.v)
        lam = np.asarray(c_nc.theta.levels[li].lam)
        x_c[pos : pos + g * q] = np.asarray(c_nc.levels[li])[:, list(lv.v)].ravel()
        log_det += g * np.log(np.abs(np.diag(lam))).sum()
        pos += g * q
    c_c = coefficients(x_c, data, lat_c)
    np.testing.assert_allclose(np.asarray(c_c.levels[-1]), np.asarray(c_nc.levels[-1]), atol=1e-12)
    diff = float(joint_log_density(x_c, data, lat_c)) - float(joint_log_density(x_nc, data, lat_nc))
    assert diff == pytest.approx(-log_det, abs=1e-9)


def test_auto_parameterization_follows_the_data():
    """Many rows per group and a clear group spread: centred; two rows per group: not."""
    rng = np.random.default_rng(5)

    def data(groups, rows, sd):
        g = np.repeat(np.arange(groups), rows)
        y = rng.normal(0, sd, groups)[g] + rng.normal(0, 1, len(g))
        return pd.DataFrame({"y": y, "g": g.astype(str)})

    strong = hl.Model("y ~ 1 + (1 | g)", data(8, 200, 2.0), engine="full")
    weak = hl.Model("y ~ 1 + (1 | g)", data(40, 2, 0.2), engine="full")
    from hierlm.laplace import find_laplace
    from hierlm.latent_fit import latent_problem

    for model, centered in ((strong, True), (weak, False)):
        mode = find_laplace(model.problem.layout, model.problem.args).mode
        _, _, (choice,) = latent_problem(model.data, model.problem, "auto", mode)
        assert choice.centered is centered, str(choice)
        assert ("strong" if centered else "weak") in choice.reason
    _, _, (forced,) = latent_problem(weak.data, weak.problem, {"g": "centered"}, None)
    assert forced.centered and forced.reason == "as requested"
    with pytest.raises(HierlmError, match="level 'h'"):
        latent_problem(weak.data, weak.problem, {"h": "centered"}, None)


@pytest.mark.slow
def test_full_latent_agrees_with_collapsed_on_radon():
    """The two engines sample the same posterior: every parameter, all 85 x 2 county
    coefficients included, within 0.1 posterior sd in mean and 15% in sd."""
    from test_reference_nuts import PRIORS, compare, scalar_draws_hierlm

    df = hl.datasets.radon("MN")
    formula = "log_radon ~ floor + (1 + floor | county)"
    collapsed = hl.Model(formula, df, priors=PRIORS).fit(draws=2500, seed=5)
    full_model = hl.Model(formula, df, priors=PRIORS, engine="full")
    full = full_model.fit(draws=2500, seed=6)
    counties = list(collapsed.idata.posterior["beta_county"].coords["county"].values)
    a = scalar_draws_hierlm(full.idata.posterior, counties)
    b = scalar_draws_hierlm(collapsed.idata.posterior, counties)
    bad = compare(a, b, mean_tol=0.1, sd_tol=0.15)
    assert not bad, "\n".join(map(str, bad[:10]))
    assert int(full.idata.sample_stats["diverging"].sum()) < 10


@pytest.mark.parametrize(
    ("family", "formula", "frame", "message"),
    [
        (
            "binomial",
            "y | trials(n) ~ x",
            {"y": [1, 5, 2], "n": [3, 4, 2], "x": [0.1, 0.2, 0.3]},
            "exceeds its trials 'n' in 1 rows (e.g. row 1: 5 successes of 4 trials)",
        ),
        (
            "poisson",
            "y ~ x",
            {"y": [1, -2, 2], "x": [0.1, 0.2, 0.3]},
            "must be a count",
        ),
        (
            "bernoulli",
            "y ~ x",
            {"y": [0, 1, 2], "x": [0.1, 0.2, 0.3]},
            "must be 0 or 1 for family='bernoulli'",
        ),
        (
            "lognormal",
            "y ~ x",
            {"y": [1.0, 0.0, 2.0], "x": [0.1, 0.2, 0.3]},
            "values <= 0",
        ),
        (
            "binomial",
            "y | trials(n) ~ x",
            {"y": [1, 1, 2], "n": [3, 0, 2], "x": [0.1, 0.2, 0.3]},
            "trials column 'n' must hold whole numbers >= 1",
        ),
    ],
)
def test_family_bad_input_is_named(family, formula, frame, message):
    with pytest.raises(DataError) as err:
        hl.Model(formula, pd.DataFrame(frame), family=family)
    assert message in str(err.value)


def test_engine_choice_and_refusals():
    frame, _ = simulate_family("bernoulli", seed=1, n_a=2, n_b=2, rows=5)
    with pytest.raises(HierlmError, match="collapsed engine needs a gaussian"):
        hl.Model(FORMULAS["bernoulli"], frame, family="bernoulli", engine="collapsed")
    with pytest.raises(HierlmError, match="engine must be"):
        hl.Model(FORMULAS["bernoulli"], frame, family="bernoulli", engine="fast")
    with pytest.raises(FormulaError, match="needs the number of trials"):
        hl.Model("y ~ x", frame, family="binomial")
    gaussian = hl.Model("x ~ 1 + (1 | a)", frame)
    assert gaussian.engine == "collapsed" and gaussian.data.rows is None
    assert hl.Model("x ~ 1 + (1 | a)", frame, engine="full").data.rows is not None


def test_divergences_are_attributed_to_the_funnel_level():
    from hierlm.diagnostics import divergences_by_level

    rng = np.random.default_rng(0)
    sd_a = rng.gamma(2.0, 0.5, size=(2, 500))
    sd_b = rng.gamma(2.0, 0.5, size=(2, 500))
    diverging = sd_a < np.quantile(sd_a, 0.05)  # all at a's neck, unrelated to b
    found = divergences_by_level({"a": sd_a, "b": sd_b}, diverging, {"a": True})
    by_level = {f.message.split("'")[1]: f for f in found}
    assert by_level["a"].severity == "warning" and "funnel" in by_level["a"].message
    assert "noncentered" in by_level["a"].fix
    assert by_level["b"].severity == "ok"
    assert divergences_by_level({"a": sd_a}, np.zeros_like(diverging), {}) == []


def simulate_crossed(seed: int = 7, counties: int = 30, years: int = 12, rows: int = 4):
    rng = np.random.default_rng(seed)
    county = np.repeat(np.arange(counties), years * rows)
    year = np.tile(np.repeat(np.arange(years), rows), counties)
    x = rng.normal(0, 1, len(county))
    u, v = rng.normal(0, 0.6, counties), rng.normal(0, 0.3, years)
    y = 1.0 + 0.5 * x + u[county] + v[year] + rng.normal(0, 0.5, len(x))
    frame = pd.DataFrame({"y": y, "x": x, "county": [f"c{i}" for i in county]})
    return frame.assign(year=2000 + year), u, v


@pytest.mark.slow
def test_crossed_county_by_year_recovers_both_sds():
    frame, u, v = simulate_crossed()
    model = hl.Model("y ~ x + (1 | county) + (1 | year)", frame)
    assert model.engine == "full" and model.n_groups == {"county": 30, "year": 12}
    fit = model.fit(seed=1)
    post = fit.idata.posterior
    for name, effects in (("sd_county", u), ("sd_year", v)):
        lo, hi = np.quantile(post[name].values, [0.05, 0.95])
        realised = float(np.std(effects, ddof=1))
        assert lo < realised < hi, (name, lo, hi, realised)
    # Each year's coefficients: the population plus that year's deviation.
    year_effect = post["beta_year"].sel(coef="Intercept") - post["beta"].sel(coef="Intercept")
    got = year_effect.mean(("chain", "draw")).values
    assert np.corrcoef(got, v)[0, 1] > 0.9
    assert list(post["beta_year"].coords["year"].values[:2]) == ["2000", "2001"]
    table = fit.summary()
    assert table["r_hat"].max() < 1.01 and table["ess_bulk"].min() > 400
    assert any("(crossed: year)" in line for line in [_groups_line(fit)])


def _groups_line(fit) -> str:
    from io import StringIO

    from rich.console import Console

    from hierlm.present import render_summary

    buffer = StringIO()
    render_summary(fit, Console(file=buffer, width=200))
    return next(line for line in buffer.getvalue().splitlines() if line.startswith("groups:"))


def test_crossed_groupings_need_the_full_engine_and_partial_pooling():
    frame, _, _ = simulate_crossed(counties=4, years=3, rows=2)
    formula = "y ~ x + (1 | county) + (1 | year)"
    with pytest.raises(HierlmError, match="crossed groupings"):
        hl.Model(formula, frame, engine="collapsed")
    with pytest.raises(HierlmError, match="pooling='none' is defined for one nesting chain"):
        hl.Model(formula, frame, pooling="none")
    model = hl.Model(formula, frame)
    assert model.data.rows is not None and len(model.data.rows.crossed_leaf) == 1
    assert model.data.design.level_names == ("county", "year")


def _sites(x, lat, names):
    """Split a flat vector into the NumPyro model's sites."""
    pos = lat.layout.size
    out = {"theta": x[:pos]}
    if lat.has_nu:
        out["nu_raw"] = x[pos]
        pos += 1
    out["z_root"] = x[pos : pos + lat.layout.p]
    pos += lat.layout.p
    for li, (name, g, lv) in enumerate(zip(names, lat.sizes, lat.layout.levels, strict=True)):
        q = len(lv.v)
        if q:
            key = f"beta_{name}" if lat.centered[li] else f"z_{name}"
            out[key] = x[pos : pos + g * q].reshape(g, q)
            pos += g * q
    return out


@pytest.mark.parametrize(
    ("family", "formula", "parameterization"),
    [
        ("poisson", FORMULAS["poisson"], "noncentered"),
        ("binomial", FORMULAS["binomial"], "centered"),
        ("student_t", FORMULAS["student_t"], {"a": "centered", "b": "noncentered"}),
        ("bernoulli", "y ~ x + (1 + x | a) + (1 | b)", "auto"),
    ],
)
def test_numpyro_model_has_the_same_density(family, formula, parameterization):
    """NumPyro's log density of the generated model (its own distributions) equals the
    hand-written joint density, for every family, centred or not, nested or crossed."""
    from numpyro.infer.util import log_density

    from hierlm.latent import joint_log_density, numpyro_model
    from hierlm.latent_fit import latent_problem

    frame, _ = simulate_family(family, seed=3, n_a=3, n_b=2, rows=6)
    model = hl.Model(formula, frame, family=family)
    lat, data, _ = latent_problem(model.data, model.problem, parameterization, None)
    names = model.data.design.level_names
    x = np.random.default_rng(2).normal(0, 0.4, lat.size)
    got, _ = log_density(numpyro_model, (data, lat, names), {}, _sites(x, lat, names))
    assert float(got) == pytest.approx(float(joint_log_density(x, data, lat)), rel=1e-9)
