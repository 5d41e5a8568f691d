"""Random-walk Metropolis with an adaptive step scale: the classic sampler, for comparison.

Each chain proposes ``x' = x + s ε`` with ``ε ~ N(0, I)`` and accepts with probability
``min(1, p(x')/p(x))``. During warm-up the log scale follows a Robbins-Monro recursion
towards the acceptance rate 0.234 (optimal for high-dimensional Gaussian targets); it is
then frozen, so the kept draws are a valid Markov chain. Its mixing time grows with the
dimension and the target's conditioning, which is the point of offering it: set against
NUTS on the same model, its R-hat and ESS show why gradient-based sampling wins.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .compiled import program
from .sampler import NutsDraws, Target, plain_draws

__all__ = ["run_metropolis"]

_TARGET_RATE = 0.234


def _chain_fn(target: Target, tune: int, draws: int):
    log_p = target.log_density

    def run(x0, key, data):
        d = x0.shape[0]

        def step(carry, i):
            x, lp, log_s, key = carry
            key, k_prop, k_acc = jax.random.split(key, 3)
            proposal = x + jnp.exp(log_s) * jax.random.normal(k_prop, (d,))
            lp_new = log_p(proposal, data)
            lp_new = jnp.where(jnp.isfinite(lp_new), lp_new, -jnp.inf)
            rate = jnp.minimum(1.0, jnp.exp(lp_new - lp))
            accept = jax.random.uniform(k_acc) < rate
            x = jnp.where(accept, proposal, x)
            lp = jnp.where(accept, lp_new, lp)
            gain = jnp.where(i < tune, 1.0 / jnp.sqrt(i + 1.0), 0.0)
            log_s = log_s + gain * (rate - _TARGET_RATE)
            return (x, lp, log_s, key), (x, lp, jnp.exp(log_s))

        start = (x0, log_p(x0, data), jnp.log(2.38 / jnp.sqrt(d)), key)
        _, out = jax.lax.scan(step, start, jnp.arange(tune + draws))
        return jax.tree.map(lambda a: a[tune:], out)

    return run


def run_metropolis(
    target: Target, x0: np.ndarray, *, draws: int, tune: int, seed: int
) -> NutsDraws:
    """Run one random-walk Metropolis chain per row of ``x0`` (chains, d), vectorised.

    Returns the draws in :class:`hierlm.sampler.NutsDraws` form: ``n_steps`` is 1 (one
    density evaluation per iteration), ``tree_depth`` 0, ``step_size`` the proposal scale,
    ``diverging`` False and ``energy`` the negative log density.
    """
    chains = x0.shape[0]
    keys = np.random.default_rng([seed, 2]).integers(0, 2**32, (chains, 2), dtype=np.uint32)
    fn = jax.vmap(_chain_fn(target, tune, draws), in_axes=(0, 0, None))
    example = (np.zeros_like(x0), keys, target.data)
    run = program(f"{target.name}_rwm", fn, example, (target.key, tune, draws), target.small)
    x, lp, scale = jax.device_get(run(x0, keys, target.data))
    return plain_draws(x, lp, n_steps=1, step_size=scale)
