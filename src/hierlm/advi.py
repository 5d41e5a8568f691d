"""Automatic differentiation variational inference with NumPyro's autoguides.

The target's flat vector is one NumPyro sample site with an improper flat prior, and the
log density enters as a factor; a mean-field normal guide (``AutoNormal``) is fitted by
stochastic gradient ascent on the ELBO, and draws come from the fitted guide. Mean-field
ADVI is fast but its intervals are too narrow wherever the posterior has correlations
(between a level's sd and its groups' deviations, above all), which the fit's note says.
"""

from __future__ import annotations

import jax
import numpy as np

from ._numpyro import ensure_imported
from .sampler import NutsDraws, Target, plain_draws

__all__ = ["run_advi"]


def run_advi(
    target: Target,
    x0: np.ndarray,
    *,
    chains: int,
    draws: int,
    steps: int,
    seed: int,
    learning_rate: float = 0.01,
) -> NutsDraws:
    """Fit a mean-field normal guide to ``target`` from ``x0`` (d,); return ``chains ×
    draws`` independent draws from it in :class:`hierlm.sampler.NutsDraws` form (the chain
    axis only groups them, as the other methods' draws are grouped)."""
    ensure_imported()
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal
    from numpyro.infer.initialization import init_to_value

    d = target.dim

    def model(data):
        x = numpyro.sample("x", dist.ImproperUniform(constraints.real, (), (d,)))
        numpyro.factor("log_density", target.log_density(x, data))

    guide = AutoNormal(model, init_loc_fn=init_to_value(values={"x": x0}), init_scale=0.1)
    svi = SVI(model, guide, numpyro.optim.Adam(learning_rate), Trace_ELBO())
    keys = np.random.default_rng([seed, 3]).integers(0, 2**32, (2, 2), dtype=np.uint32)
    result = svi.run(jax.numpy.asarray(keys[0]), steps, target.data, progress_bar=False)
    sample = guide.sample_posterior(
        jax.numpy.asarray(keys[1]), result.params, sample_shape=(chains * draws,)
    )
    x = np.asarray(sample["x"])
    lp = np.asarray(jax.jit(jax.vmap(target.log_density, in_axes=(0, None)))(x, target.data))
    return plain_draws(x.reshape(chains, draws, d), lp.reshape(chains, draws))
