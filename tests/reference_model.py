"""An independent full-latent NumPyro reference for the radon varying-slope model.

Nothing here uses hierlm's internals: the county coefficients are ordinary latent sample
sites (non-centered) and NUTS runs over all of them. Used by ``test_reference_nuts.py`` to
check hierlm's collapsed posterior against a plain, textbook fit of the same model.

Model (every prior on the original data scale, matching ``hierlm.Priors`` semantics):

* ``b1 ~ Normal(0, 2)`` (population ``floor`` slope);
* ``b0 + mean(floor) * b1 ~ Normal(1.5, 2)`` (the intercept at the predictors' means);
* ``tau_k ~ HalfNormal(1)``, ``L ~ LKJCholesky(2, 2)``, ``z_g ~ Normal(0, I_2)``;
* ``beta_county[g] = (b0, b1) + diag(tau) @ L @ z_g``;
* ``sigma ~ HalfNormal(1)``, ``y_i ~ Normal(beta_county[g_i] . (1, floor_i), sigma)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from numpyro.infer import MCMC, NUTS

__all__ = ["ReferenceData", "reference_data", "reference_model", "run_reference"]


@dataclass(frozen=True)
class ReferenceData:
    """Arrays for the reference model, with counties indexed by sorted label."""

    counties: np.ndarray  # sorted unique county labels
    county_idx: np.ndarray  # int, per row
    floor: np.ndarray  # float, per row
    y: np.ndarray  # float, per row
    floor_mean: float


def reference_data(df: pd.DataFrame) -> ReferenceData:
    """Index counties by their sorted labels and pull out the columns the model needs."""
    county = df["county"].astype(str).to_numpy()
    counties, county_idx = np.unique(county, return_inverse=True)
    floor = df["floor"].to_numpy(dtype=np.float64)
    return ReferenceData(
        counties=counties,
        county_idx=county_idx.astype(np.int32),
        floor=floor,
        y=df["log_radon"].to_numpy(dtype=np.float64),
        floor_mean=float(floor.mean()),
    )


def reference_model(county_idx, floor, floor_mean, n_counties, y=None):
    """The full-latent, non-centered NumPyro model (see the module docstring)."""
    # The intercept prior is on the intercept at mean(floor); b0 = a - mean(floor) * b1 is a
    # unit-Jacobian linear change of variables, so sampling (a, b1) is exactly the same prior.
    a = numpyro.sample("intercept_centered", dist.Normal(1.5, 2.0))
    b1 = numpyro.sample("b1", dist.Normal(0.0, 2.0))
    b0 = numpyro.deterministic("b0", a - floor_mean * b1)
    tau = numpyro.sample("tau", dist.HalfNormal(1.0).expand([2]).to_event(1))
    chol = numpyro.sample("L", dist.LKJCholesky(2, concentration=2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([n_counties, 2]).to_event(2))
    scale_tril = tau[:, None] * chol  # diag(tau) @ L
    beta = jnp.stack([b0, b1])
    beta_county = numpyro.deterministic("beta_county", beta + z @ scale_tril.T)
    mu = beta_county[county_idx, 0] + beta_county[county_idx, 1] * floor
    numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def run_reference(
    data: ReferenceData,
    *,
    chains: int = 4,
    draws: int = 2500,
    tune: int = 1500,
    seed: int = 0,
    target_accept: float = 0.95,
) -> dict[str, np.ndarray]:
    """Run NUTS on the reference model; return draws shaped (chain, draw, ...) plus stats.

    Keys: ``beta`` (..., 2), ``sigma``, ``sd_county`` (..., 2), ``corr`` (off-diagonal),
    ``beta_county`` (..., n_counties, 2) and ``diverging`` (chain, draw) bool.
    """
    kernel = NUTS(reference_model, target_accept_prob=target_accept)
    mcmc = MCMC(
        kernel,
        num_warmup=tune,
        num_samples=draws,
        num_chains=chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(
        jax.random.PRNGKey(seed),
        county_idx=jnp.asarray(data.county_idx),
        floor=jnp.asarray(data.floor),
        floor_mean=data.floor_mean,
        n_counties=len(data.counties),
        y=jnp.asarray(data.y),
        extra_fields=("diverging",),
    )
    s = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    chol = s["L"]
    return {
        "beta": np.stack([s["b0"], s["b1"]], axis=-1),
        "sigma": s["sigma"],
        "sd_county": s["tau"],
        # corr = L L^T; its off-diagonal entry is L[1, 0] * L[0, 0] = L[1, 0].
        "corr": chol[..., 1, 0] * chol[..., 0, 0],
        "beta_county": s["beta_county"],
        "diverging": np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"]),
    }
