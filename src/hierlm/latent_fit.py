"""Fit the full-latent model with NUTS: every family, every group coefficient sampled.

The engine for families whose group coefficients do not integrate out (Student-t,
Bernoulli, binomial, Poisson), and on request (``engine="full"``) for Gaussian ones, where it
answers to the collapsed engine's exact posterior.
"""

from __future__ import annotations

import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .assemble import Problem
from .compiled import Program, program
from .density import theta_labels
from .ingest import Ingested
from .latent import LatentData, LatentLayout, coefficients, joint_log_density
from .parameterization import LevelChoice, check_levels, choose, moment_sds
from .sampler import NutsDraws, Progress, Target, check_start, compile_nuts, run_nuts

__all__ = ["LatentRun", "latent_labels", "latent_problem", "sample_latent"]

_DENSE_UP_TO = 300


def _row_information(ingested: Ingested, sigma: float) -> float:
    spec = ingested.design.spec
    rows = ingested.rows
    assert rows is not None
    if spec.family == "poisson":
        return float(max(rows.y.mean(), 1e-3))
    if spec.family in ("bernoulli", "binomial"):
        share = float(np.clip(rows.y.sum() / rows.trials.sum(), 1e-3, 1 - 1e-3))
        return float(rows.trials.mean()) * share * (1 - share)
    if spec.se is not None:
        residual = sigma**2 if spec.has_sigma else 0.0
        return float(np.mean(1.0 / (rows.se**2 + residual)))
    return 1.0 / sigma**2


def latent_problem(
    ingested: Ingested,
    problem: Problem,
    parameterization: str | dict[str, str],
    pilot_theta: np.ndarray | None,
) -> tuple[LatentLayout, LatentData, tuple[LevelChoice, ...]]:
    """The full-latent layout and arrays, with each level's parameterisation chosen.

    ``pilot_theta`` is a point estimate of θ (the collapsed engine's mode, for Gaussian
    families); without it the level sds are estimated by moments on the link scale.
    """
    from .density import unpack

    rows = ingested.rows
    assert rows is not None, "the full-latent engine needs the rows (ingest keep_rows=True)"
    design, layout = ingested.design, problem.layout
    check_levels(parameterization, design.level_names)
    # The latent density reads only the priors: no need to ship the tree statistics.
    args = problem.args._replace(stats=None)  # type: ignore[arg-type]
    leaves = (rows.leaf, *rows.crossed_leaf)
    if pilot_theta is not None:
        u = unpack(jnp.asarray(pilot_theta), args, layout)
        sigma = float(u.sigma)
        pilot: list[float | None] = [None if sd is None else float(sd[0]) for sd in u.sds]
    else:
        sigma = 1.0 if design.spec.link_scale else float(np.std(rows.y))
        moments = [
            m
            for tree, leaf in zip(design.trees, leaves, strict=True)
            for m in moment_sds(tree, leaf, rows.y, rows.trials, design.spec.family)
        ]
        pilot = [
            moments[li] if lv.v and not lv.fixed else None for li, lv in enumerate(layout.levels)
        ]
    info = _row_information(ingested, sigma)
    choices: list[LevelChoice] = []
    chain_of: list[int] = []
    for c, (tree, leaf) in enumerate(zip(design.trees, leaves, strict=True)):
        first = len(choices)
        leaf_rows = np.bincount(leaf, minlength=tree.sizes[-1]) if tree.n_levels else np.ones(1)
        pilots = pilot[first : first + tree.n_levels]
        choices += choose(tree, leaf_rows, parameterization, pilots, info)
        chain_of += [c] * tree.n_levels
    lat = LatentLayout(
        layout=layout,
        family=design.spec.family,
        sizes=tuple(g for tree in design.trees for g in tree.sizes),
        centered=tuple(c.centered for c in choices),
        chain_of=tuple(chain_of),
    )
    data = LatentData(
        args=args,
        parents=tuple(
            jax.device_put(p.astype(np.int32)) for tree in design.trees for p in tree.parents
        ),
        x=jax.device_put(rows.x),
        y=jax.device_put(rows.y),
        leaf=jax.device_put(rows.leaf.astype(np.int32)),
        trials=jax.device_put(rows.trials),
        offset=jax.device_put(rows.offset),
        se=jax.device_put(rows.se),
        crossed_leaf=tuple(jax.device_put(leaf) for leaf in rows.crossed_leaf),
    )
    return lat, data, tuple(choices)


def latent_labels(
    lat: LatentLayout, level_names: tuple[str, ...], coef_names: tuple[str, ...]
) -> list[str]:
    """A name for every entry of the full-latent vector: θ's (see
    :func:`hierlm.density.theta_labels`), ν's, the population coefficients and each
    level's deviations (``z_<level>[k]``)."""
    out = theta_labels(lat.layout, level_names, coef_names)
    if lat.has_nu:
        out.append("log(nu - 1)")
    out += [f"beta[{name}]" for name in coef_names]
    for name, dim in zip(level_names, lat.level_dims(), strict=True):
        out += [f"z_{name}[{k}]" for k in range(dim)]
    return out


def _target(lat: LatentLayout, data: LatentData) -> Target:
    logp = functools.partial(joint_log_density, lat=lat)
    # With crossed groupings the intercept has a ridge against the mean deviation of every
    # grouping, which a diagonal mass matrix follows badly (radon county x year-like data:
    # intercept ESS 71 against 4,532 with a dense one). Nested models mix well without it,
    # and on radon a dense one measured 3x slower; beyond a few hundred dimensions its
    # estimate from the warm-up draws gets noisy and its cost grows as d².
    dense = any(lat.chain_of) and lat.size <= _DENSE_UP_TO
    return Target("latent", (lat, dense), logp, data, lat.size, lat.size <= 1024, dense)


def _value_and_grad(lat: LatentLayout, data: LatentData) -> Program:
    fn = jax.value_and_grad(functools.partial(joint_log_density, lat=lat))
    return program("latent_logp", fn, (np.zeros(lat.size), data), lat, quick=lat.size <= 1024)


def _start(
    lat: LatentLayout,
    data: LatentData,
    theta0: np.ndarray,
    chains: int,
    seed: int,
    labels: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Starting points uniform within ±2 of ``theta0`` and of zero deviations on the
    unconstrained scale (as Stan and NumPyro start), one per chain; a point whose density
    is not finite is drawn again closer in. Dispersed starts let R-hat see chains that
    never leave their own region, as in a funnel. When none is found, the error names the
    entries (``labels``) whose gradient is not finite."""
    logp = _value_and_grad(lat, data)
    rng = np.random.default_rng([seed, 1])
    base = np.zeros(lat.size)
    base[: lat.layout.size] = theta0
    if lat.has_nu:
        base[lat.layout.size] = np.log(9.0)  # ν = 10
    xs: list[np.ndarray] = []
    values: list[float] = []
    grads: list[np.ndarray] = []
    for _ in range(chains):
        radius = 2.0
        for _attempt in range(20):
            x = base + rng.uniform(-radius, radius, lat.size)
            value, grad = logp(x, data)
            if np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad))):
                break
            radius /= 2
        else:
            # The finite starts before this one keep the chain's number in the message.
            check_start(
                np.array([*xs, x]),
                np.array([*values, float(value)]),
                np.array([*grads, np.asarray(grad)]),
                labels,
            )
        xs.append(x)
        values.append(float(value))
        grads.append(np.asarray(grad))
    return np.array(xs), np.array(values), np.array(grads)


class LatentRun(NamedTuple):
    """Draws of the full-latent model, mapped to the collapsed engine's coefficient dict
    (see :func:`hierlm.posterior.draw_coefficients`)."""

    nuts: NutsDraws
    coefs: dict[str, Any]
    choices: tuple[LevelChoice, ...]


def _draws_program(lat: LatentLayout, data: LatentData, n: int) -> Program:
    def run(xs, data):
        def one(x):
            c = coefficients(x, data, lat)
            return c.root, c.levels, c.theta.sigma, c.theta.sds, c.theta.chols, c.nu

        return jax.lax.map(one, xs)

    example = (jax.ShapeDtypeStruct((n, lat.size), jnp.float64), data)
    return program("latent_draws", run, example, lat, quick=lat.size <= 1024)


def sample_latent(
    lat: LatentLayout,
    data: LatentData,
    choices: tuple[LevelChoice, ...],
    theta0: np.ndarray,
    *,
    chains: int,
    draws: int,
    tune: int,
    seed: int,
    target_accept: float,
    max_tree_depth: int,
    progress: Progress | None,
    timings: dict[str, float],
    method: str = "nuts",
    advi_steps: int = 10_000,
    labels: list[str] | None = None,
) -> LatentRun:
    """Sample the joint density (NUTS, random-walk Metropolis or ADVI) and map every draw
    to the model's coefficients."""
    t0 = time.perf_counter()
    target = _target(lat, data)
    start = _start(lat, data, theta0, chains, seed, labels)
    if method == "nuts":
        programs = compile_nuts(
            target,
            chains=chains,
            tune=tune,
            target_accept=target_accept,
            max_tree_depth=max_tree_depth,
        )
        timings["nuts_compile"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        nuts = run_nuts(programs, data, start, draws=draws, seed=seed, progress=progress)
        timings["nuts"] = time.perf_counter() - t1
    elif method == "metropolis":
        from .metropolis import run_metropolis

        nuts = run_metropolis(target, start[0], draws=draws, tune=tune, seed=seed)
        timings["metropolis"] = time.perf_counter() - t0
    else:
        from .advi import run_advi

        nuts = run_advi(
            target, start[0][0], chains=chains, draws=draws, steps=advi_steps, seed=seed
        )
        timings["advi"] = time.perf_counter() - t0
    t2 = time.perf_counter()
    flat = nuts.x.reshape(-1, lat.size)
    root, levels, sigma, sds, chols, nu = jax.device_get(
        _draws_program(lat, data, flat.shape[0])(flat, data)
    )
    timings["draws"] = time.perf_counter() - t2
    coefs = {
        "root": root,
        "levels": list(levels),
        "sigma": sigma,
        "sds": sds,
        "chols": chols,
        "nu": nu,
    }
    return LatentRun(nuts, coefs, choices)
