"""A Student-t prior on a population coefficient, against a plain full-latent NumPyro fit.

hierlm keeps the coefficients Gaussian given θ by writing the Student-t prior as a scale
mixture (an extra ``log λ`` in θ). The reference samples the coefficient directly under a
``StudentT`` prior, with every group effect latent, so it shares none of that machinery.
"""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
from numpyro.infer import MCMC, NUTS

import hierlm as hl

PRIORS = hl.Priors(
    beta={"x": hl.StudentT(2.0, 0.0, 0.3)},
    intercept=hl.Normal(0.0, 5.0),
    sd=hl.HalfNormal(1.0),
    sigma=hl.HalfNormal(2.0),
)


def _data() -> pd.DataFrame:
    # Few, noisy rows and a slope far out in the prior's tail: the posterior of the slope
    # is then shaped by the t tails (a normal prior of the same scale would pull it to ~0.4).
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(6), 4)
    x = rng.normal(0.0, 1.0, g.size)
    y = 0.5 + rng.normal(0, 0.5, 6)[g] + 1.5 * x + rng.normal(0, 1.0, g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def _reference(df: pd.DataFrame) -> dict[str, np.ndarray]:
    x, y, g = df["x"].to_numpy(), df["y"].to_numpy(), df["g"].to_numpy()
    x_mean = float(x.mean())

    def model():
        a = numpyro.sample("a", dist.Normal(0.0, 5.0))  # intercept at mean(x)
        b = numpyro.sample("b", dist.StudentT(2.0, 0.0, 0.3))
        tau = numpyro.sample("tau", dist.HalfNormal(1.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([6]).to_event(1))
        mu = a - x_mean * b + tau * z[g] + b * x
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)

    mcmc = MCMC(
        NUTS(model, target_accept_prob=0.95),
        num_warmup=2000,
        num_samples=5000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0))
    s = mcmc.get_samples()
    return {k: np.asarray(s[k]) for k in ("b", "tau", "sigma")}


@pytest.mark.slow
def test_student_t_slope_matches_full_latent_reference():
    df = _data()
    fit = hl.Model("y ~ x + (1 | g)", df, priors=PRIORS).fit(draws=5000, tune=1000, seed=2)
    post = fit.idata.posterior
    ours = {
        "b": post["beta"].sel(coef="x").values.ravel(),
        "tau": post["sd_g"].values.ravel(),
        "sigma": post["sigma"].values.ravel(),
    }
    ref = _reference(df)
    normal = hl.Model(
        "y ~ x + (1 | g)",
        df,
        priors=hl.Priors(
            beta={"x": hl.Normal(0.0, 0.3)},
            intercept=PRIORS.intercept,
            sd=PRIORS.sd,
            sigma=PRIORS.sigma,
        ),
    ).fit(draws=2000, seed=2)
    b_normal = normal.idata.posterior["beta"].sel(coef="x").values.mean()
    # The tails matter here, so the check can fail: a normal prior lands far away.
    assert abs(b_normal - ref["b"].mean()) > 10 * ref["b"].std() / np.sqrt(2000)
    for name in ("b", "tau", "sigma"):
        a, r = ours[name], ref[name]
        se = np.sqrt(a.var() / 2000 + r.var() / 2000)  # conservative ESS for both
        assert abs(a.mean() - r.mean()) < 4 * se, name
        assert abs(a.std() / r.std() - 1) < 0.1, name
