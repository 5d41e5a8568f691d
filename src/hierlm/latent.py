"""The full-latent model: θ and every group coefficient as parameters, for any family.

The flat parameter vector is ``[θ, ν?, z₀, z₁, ..., z_L]``: θ as in :mod:`hierlm.density`
(the same priors, so on Gaussian data this model and the collapsed one share their
posterior), ``log(ν - 1)`` for Student-t, the root's standard-normal ``z₀`` and per level
``G_l × q_l`` entries. A level is *non-centred* when they are standard normal
``w`` and a group's varying coefficients are its parent's plus ``Λ w``, and *centred* when
they are the group's varying coefficients themselves, ``β_g ~ N(β_parent, ΛΛᵀ)`` (the
classic centred form). The two are the same model; they differ in geometry (see
:mod:`hierlm.parameterization`).

Notes
-----
With ``β₀ = m₀ + L₀ z₀`` and, for a node ``g`` of level ``l`` with parent ``a``,
``β_g = β_a + E_l δ_g`` (``E_l`` places the ``q_l`` varying coefficients), row ``i`` in leaf
``g`` has linear predictor ``η_i = x_iᵀ β_g + offset_i`` and

* gaussian / lognormal: ``y_i ~ N(η_i, σ² + s_i²)`` (y standardised; log y for lognormal;
  ``s_i`` the known standard error of ``se()`` models, where σ is absent unless asked for);
* student_t: ``y_i ~ t_ν(η_i, σ)``, ``ν = 1 + exp(r)``, ``ν ~ Gamma(2, 0.1)`` (brms);
* bernoulli: ``y_i ~ Bernoulli(logit⁻¹ η_i)``; binomial: ``y_i ~ Bin(n_i, logit⁻¹ η_i)``;
* poisson: ``y_i ~ Poisson(exp η_i)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import gammaln

from .density import DensityArgs, Layout, Unpacked, unpack

__all__ = [
    "LatentData",
    "LatentLayout",
    "coefficients",
    "joint_log_density",
    "numpyro_model",
    "pointwise",
]

_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class LatentLayout:
    """Static structure of the flat parameter vector (hashable; part of the program).

    Attributes
    ----------
    layout
        θ's layout.
    family
        The response family.
    sizes
        Groups per level, top first.
    centered
        Per level, whether its deviations are centred.
    chain_of
        Per level, its nesting chain: 0 for the primary chain (which carries the
        population coefficients), 1, 2, ... for crossed chains (deviations only).
    """

    layout: Layout
    family: str
    sizes: tuple[int, ...]
    centered: tuple[bool, ...]
    chain_of: tuple[int, ...]

    @property
    def has_nu(self) -> bool:
        """Whether the vector holds Student-t's degrees of freedom."""
        return self.family == "student_t"

    def level_dims(self) -> tuple[int, ...]:
        """Entries of each level's deviations, ``G_l × q_l``."""
        return tuple(g * len(lv.v) for g, lv in zip(self.sizes, self.layout.levels, strict=True))

    @property
    def size(self) -> int:
        """Length of the flat vector."""
        return self.layout.size + int(self.has_nu) + self.layout.p + sum(self.level_dims())


class LatentData(NamedTuple):
    """The arrays of the full-latent density (a pytree).

    ``args`` holds the priors (its tree statistics are not used); ``parents[l]`` each node's
    parent in the level above; the rest are per row, as in :class:`hierlm.ingest.Rows`.
    """

    args: DensityArgs
    parents: tuple[jax.Array, ...]
    x: jax.Array
    y: jax.Array
    leaf: jax.Array
    trials: jax.Array
    offset: jax.Array
    se: jax.Array
    crossed_leaf: tuple[jax.Array, ...] = ()


class Coefficients(NamedTuple):
    """Model quantities at one parameter vector.

    ``levels`` holds every level's group coefficients (for a crossed chain, the population
    plus the group's deviations); ``primary_leaf`` the primary chain's leaf coefficients and
    ``crossed_leaf`` each crossed chain's leaf deviations, which the linear predictor adds.
    """

    theta: Unpacked
    nu: jax.Array
    root: jax.Array
    levels: tuple[jax.Array, ...]
    latent_log_prior: jax.Array
    primary_leaf: jax.Array
    crossed_leaf: tuple[jax.Array, ...]


def _split(x: jax.Array, lat: LatentLayout):
    pos = lat.layout.size
    theta = x[:pos]
    if lat.has_nu:
        r = x[pos]
        pos += 1
    else:
        r = jnp.zeros((), x.dtype)
    p = lat.layout.p
    z0 = x[pos : pos + p]
    pos += p
    parts = []
    for g, lv, size in zip(lat.sizes, lat.layout.levels, lat.level_dims(), strict=True):
        parts.append(x[pos : pos + size].reshape(g, len(lv.v)))
        pos += size
    return theta, r, z0, parts


def coefficients(x: jax.Array, data: LatentData, lat: LatentLayout) -> Coefficients:
    """Every group's coefficient vector (standardised scale) at the flat vector ``x``, with
    the log prior of the group deviations and ν's log prior and Jacobian."""
    theta, r, z0, parts = _split(x, lat)
    u = unpack(theta, data.args, lat.layout)
    lp = -0.5 * jnp.sum(z0**2) - 0.5 * z0.shape[0] * _LOG_2PI
    nu = 1.0 + jnp.exp(r)
    if lat.has_nu:
        # Gamma(2, 0.1) on ν, with the Jacobian of ν = 1 + exp(r).
        lp += 2 * math.log(0.1) + jnp.log(nu) - 0.1 * nu + r
    root = data.args.m0 + u.L0 @ z0
    terms = []

    def value(li: int, base: jax.Array, lam: jax.Array) -> jax.Array:
        w = parts[li]
        if lat.centered[li]:
            terms.append(_mvn_logpdf(w - base, lam))
            return w
        terms.append(-0.5 * jnp.sum(w**2) - 0.5 * w.size * _LOG_2PI)
        return base + w @ lam.T

    shown, primary, crossed = _walk(root, data, lat, u, value)
    lp += sum(terms, jnp.zeros(()))
    return Coefficients(u, nu, root, shown, lp, primary, crossed)


def _mvn_logpdf(delta: jax.Array, lam: jax.Array) -> jax.Array:
    """``Σ_g log N(δ_g; 0, ΛΛᵀ)`` for rows ``δ_g`` and lower-triangular ``Λ``."""
    white = solve_triangular(lam, delta.T, lower=True)
    log_det = jnp.sum(jnp.log(jnp.abs(jnp.diag(lam))))
    return -0.5 * jnp.sum(white**2) - delta.shape[0] * log_det - 0.5 * delta.size * _LOG_2PI


def _walk(root: jax.Array, data: LatentData, lat: LatentLayout, u: Unpacked, value):
    """Every level's coefficients, top down: each group starts from its parent's and takes
    its varying coefficients from ``value(level, parent_values, Λ)``.

    Returns the levels as reported (a crossed chain's groups with the population added),
    the primary chain's leaf coefficients and each crossed chain's leaf deviations.
    """
    chain_of = lat.chain_of
    prev = {0: root[None, :]}
    levels = []
    for li, lv in enumerate(lat.layout.levels):
        chain = chain_of[li]
        # A crossed chain starts from zero: it adds deviations to the primary chain's β.
        start = prev.get(chain, jnp.zeros((1, root.shape[0]), root.dtype))
        beta = start[data.parents[li]]
        if lv.v:
            v = np.asarray(lv.v)
            beta = beta.at[:, v].set(value(li, beta[:, v], u.levels[li].lam))
        levels.append(beta)
        prev[chain] = beta
    crossed = tuple(prev[c] for c in sorted(set(chain_of)) if c > 0)
    shown = tuple(
        lv if chain == 0 else lv + root[None, :] for lv, chain in zip(levels, chain_of, strict=True)
    )
    return shown, prev[0], crossed


def pointwise(x: jax.Array, data: LatentData, lat: LatentLayout) -> jax.Array:
    """Log-likelihood of each row (on the model's scale: y standardised for families with
    a residual sd)."""
    c = coefficients(x, data, lat)
    return _row_log_lik(c, data, lat)


def _eta(primary: jax.Array, crossed: tuple[jax.Array, ...], data: LatentData) -> jax.Array:
    """Each row's linear predictor: its primary leaf's coefficients, plus each crossed
    chain's leaf deviations, plus the offset."""
    eta = jnp.sum(data.x * primary[data.leaf], axis=1) + data.offset
    for dev, leaf in zip(crossed, data.crossed_leaf, strict=True):
        eta = eta + jnp.sum(data.x * dev[leaf], axis=1)
    return eta


def _row_log_lik(c: Coefficients, data: LatentData, lat: LatentLayout) -> jax.Array:
    family = lat.family
    eta = _eta(c.primary_leaf, c.crossed_leaf, data)
    y = data.y
    if family in ("gaussian", "lognormal"):
        # Known standard errors add to the residual variance (se() models; zeros otherwise).
        var = data.se**2 + (c.theta.sigma**2 if lat.layout.has_sigma else 0.0)
        return -0.5 * (y - eta) ** 2 / var - 0.5 * jnp.log(var) - 0.5 * _LOG_2PI
    if family == "student_t":
        return jax.scipy.stats.t.logpdf(y, c.nu, eta, c.theta.sigma)
    if family == "bernoulli":
        return y * jax.nn.log_sigmoid(eta) + (1 - y) * jax.nn.log_sigmoid(-eta)
    if family == "binomial":
        n = data.trials
        log_choose = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
        return log_choose + y * jax.nn.log_sigmoid(eta) + (n - y) * jax.nn.log_sigmoid(-eta)
    if family == "poisson":
        return y * eta - jnp.exp(eta) - gammaln(y + 1)
    raise ValueError(f"unknown family {family!r}")


def joint_log_density(x: jax.Array, data: LatentData, lat: LatentLayout) -> jax.Array:
    """``log p(y, β, θ)`` at the flat vector ``x`` (unconstrained, Jacobians included)."""
    c = coefficients(x, data, lat)
    return jnp.sum(_row_log_lik(c, data, lat)) + c.latent_log_prior + c.theta.log_prior


def numpyro_model(data: LatentData, lat: LatentLayout, level_names: tuple[str, ...]) -> None:
    """The full-latent model as a NumPyro model with named sites.

    Sites: ``theta`` (θ, flat prior; its priors and Jacobians enter as the factor
    ``theta_prior``), ``nu_raw`` for Student-t, ``z_root``, per level ``z_<level>``
    (non-centred, standard normal) or ``beta_<level>`` (centred: the groups' varying
    coefficients, ``N(parent's, ΛΛᵀ)``), and the observed ``y``. Its log density equals
    :func:`joint_log_density` at the same point, so NumPyro's tools (``Predictive``,
    ``log_likelihood``, autoguides) apply to the model hierlm samples.
    """
    from ._numpyro import ensure_imported

    ensure_imported()
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    layout = lat.layout
    theta = numpyro.sample("theta", dist.ImproperUniform(constraints.real, (), (layout.size,)))
    u = unpack(theta, data.args, layout)
    numpyro.factor("theta_prior", u.log_prior)
    if lat.has_nu:
        r = numpyro.sample("nu_raw", dist.ImproperUniform(constraints.real, (), ()))
        nu = 1.0 + jnp.exp(r)
        numpyro.factor("nu_prior", dist.Gamma(2.0, 0.1).log_prob(nu) + r)
    normal = dist.Normal(0.0, 1.0)
    z0 = numpyro.sample("z_root", normal.expand([layout.p]).to_event(1))
    root = data.args.m0 + u.L0 @ z0

    def value(li: int, base: jax.Array, lam: jax.Array) -> jax.Array:
        name, g, q = level_names[li], lat.sizes[li], base.shape[1]
        if lat.centered[li]:
            mvn = dist.MultivariateNormal(base, scale_tril=lam)
            return numpyro.sample(f"beta_{name}", mvn.to_event(1))
        w = numpyro.sample(f"z_{name}", normal.expand([g, q]).to_event(2))
        return base + w @ lam.T

    _, primary, crossed = _walk(root, data, lat, u, value)
    eta = _eta(primary, crossed, data)
    family = lat.family
    if family in ("gaussian", "lognormal"):
        var = data.se**2 + (u.sigma**2 if layout.has_sigma else 0.0)
        likelihood = dist.Normal(eta, jnp.sqrt(var))
    elif family == "student_t":
        likelihood = dist.StudentT(nu, eta, u.sigma)
    elif family == "bernoulli":
        likelihood = dist.Bernoulli(logits=eta)
    elif family == "binomial":
        likelihood = dist.Binomial(total_count=data.trials, logits=eta)
    else:
        likelihood = dist.Poisson(jnp.exp(eta))
    with numpyro.plate("rows", data.y.shape[0]):
        numpyro.sample("y", likelihood, obs=data.y)
