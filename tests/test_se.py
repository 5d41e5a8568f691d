"""Known measurement error, ``y | se(s) ~ ...``: the collapsed engine weights each row by
1/se², with no residual sd. Checked on the eight schools against a quadrature of the exact
posterior and against the published means."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

import hierlm as hl
from hierlm.errors import DataError

Y = np.array([28.0, 8, -3, 7, -1, 1, 18, 12])
SE = np.array([15.0, 10, 16, 11, 9, 11, 10, 18])
PRIORS = hl.Priors(intercept=hl.Normal(0, 5), sd=hl.HalfCauchy(5))
FORMULA = "y | se(se) ~ 1 + (1 | school)"


def schools() -> pd.DataFrame:
    return pd.DataFrame({"school": list("ABCDEFGH"), "y": Y, "se": SE})


def exact_means() -> tuple[float, float]:
    """Posterior means of mu and tau by quadrature: the school effects integrate out,
    y_j ~ N(mu, se_j² + tau²), mu ~ N(0, 5), tau ~ HalfCauchy(5)."""

    def density(mu: float, tau: float) -> float:
        lik = stats.norm.logpdf(Y, mu, np.sqrt(SE**2 + tau**2)).sum()
        prior = stats.norm.logpdf(mu, 0, 5) + stats.halfcauchy.logpdf(tau, scale=5)
        return float(np.exp(lik + prior + 30.0))

    def moment(f) -> float:
        value, _ = integrate.dblquad(
            lambda mu, tau: f(mu, tau) * density(mu, tau), 0, 200, -30, 40, epsabs=1e-12
        )
        return value

    z = moment(lambda mu, tau: 1.0)
    return moment(lambda mu, tau: mu) / z, moment(lambda mu, tau: tau) / z


@pytest.fixture(scope="module")
def eight_schools():
    return hl.Model(FORMULA, schools(), priors=PRIORS).fit(draws=5000, seed=1)


def test_exact_posterior_is_the_published_one():
    mu, tau = exact_means()
    assert mu == pytest.approx(4.4, abs=0.05)
    assert tau == pytest.approx(3.6, abs=0.05)


def test_collapsed_matches_the_exact_posterior(eight_schools):
    mu_exact, tau_exact = exact_means()
    post = eight_schools.idata.posterior
    assert "sigma" not in post
    mu = post["beta"].sel(coef="Intercept").values
    tau = post["sd_school"].values[..., 0]
    summary = eight_schools.summary()
    # Within 4 Monte Carlo standard errors (sd / sqrt(bulk ESS)).
    for draws, exact, name in ((mu, mu_exact, "beta[Intercept]"), (tau, tau_exact, "sd_school")):
        row = summary.loc[next(i for i in summary.index if i.startswith(name))]
        mcse = float(np.std(draws)) / np.sqrt(row["ess_bulk"])
        assert abs(float(np.mean(draws)) - exact) < 4 * mcse + 1e-3, (name, np.mean(draws), exact)
    assert int(eight_schools.idata.sample_stats["diverging"].sum()) == 0


def test_reported_loglik_is_the_exact_marginal(eight_schools):
    """log p(y | tau), the school effects and mu integrated out, against a dense normal."""
    tau = eight_schools.idata.posterior["sd_school"].values[..., 0].ravel()[:5]
    got = eight_schools.idata.sample_stats["log_marginal_likelihood"].values.ravel()[:5]
    for t, value in zip(tau, got, strict=True):
        cov = np.diag(SE**2 + t**2) + 25.0
        want = stats.multivariate_normal.logpdf(Y, np.zeros(8), cov)
        assert value == pytest.approx(want, abs=1e-8)


@pytest.mark.slow
def test_full_latent_engine_agrees():
    mu_exact, tau_exact = exact_means()
    fit = hl.Model(FORMULA, schools(), priors=PRIORS, engine="full").fit(draws=5000, seed=2)
    post = fit.idata.posterior
    assert abs(float(post["beta"].mean()) - mu_exact) < 0.15
    assert abs(float(post["sd_school"].mean()) - tau_exact) < 0.15


def test_residual_sd_on_top_is_the_full_engine():
    model = hl.Model("y | se(se, sigma = TRUE) ~ 1 + (1 | school)", schools(), priors=PRIORS)
    assert model.engine == "full" and model.spec.has_sigma


def test_nonpositive_se_is_refused():
    bad = schools().assign(se=SE * np.r_[1, 1, 0, 1, 1, 1, 1, 1])
    with pytest.raises(DataError, match="standard-error column 'se' must be > 0"):
        hl.Model(FORMULA, bad)
