"""NUTS over θ, preconditioned by a Laplace approximation, all chains in one program.

With many rows the posterior of θ is very narrow in some directions (the sd of log σ shrinks
like 1/sqrt(2N)), below what NUTS's mass-matrix adaptation can represent, and the step size
collapses. Sampling ``u`` with ``θ = mode + C u``, where ``C Cᵀ`` is the inverse Hessian at
the mode, keeps the geometry near the identity at every data size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.hmc import hmc
from numpyro.infer.util import ParamInfo

from .compiled import Program, program
from .density import DensityArgs, Layout, log_density
from .laplace import Laplace, LogDensity

__all__ = ["NutsDraws", "NutsPrograms", "compile_nuts", "run_nuts"]

Progress = Callable[[int, int, str], None]


class NutsDraws(NamedTuple):
    """Draws of θ and per-draw sampler statistics, shapes (chains, draws, ...)."""

    theta: np.ndarray
    diverging: np.ndarray
    n_steps: np.ndarray
    tree_depth: np.ndarray
    energy: np.ndarray
    lp: np.ndarray
    step_size: np.ndarray


def _nuts_fns(layout: Layout, tune: int, target_accept: float, max_tree_depth: int, chunk: int):
    def potential_gen(args, mode, root_cov):
        return lambda u: -log_density(mode + root_cov @ u, args, layout)

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")

    def init(start: ParamInfo, keys, model_args):
        # The potential and its gradient at the start come from the host: this program then
        # holds no copy of the density, and compiles in a fraction of the time.
        def one(z, pe, grad, k):
            return init_kernel(
                ParamInfo(z, pe, grad),
                tune,
                target_accept_prob=target_accept,
                max_tree_depth=max_tree_depth,
                model_args=model_args,
                rng_key=k,
            )

        return jax.vmap(one)(start.z, start.potential_energy, start.z_grad, keys)

    step = jax.vmap(lambda s, ma: sample_kernel(s, model_args=ma), in_axes=(0, None))

    def run_chunk(state, model_args):
        def body(s, _):
            s = step(s, model_args)
            return s, (
                s.z,
                s.diverging,
                s.num_steps,
                s.energy,
                s.potential_energy,
                s.adapt_state.step_size,
            )

        return jax.lax.scan(body, state, None, length=chunk)

    return init, run_chunk


class NutsPrograms(NamedTuple):
    """The compiled programs of :func:`run_nuts` and the settings they were built for."""

    init: Program
    chunk: Program
    chains: int
    tune: int
    chunk_size: int


def compile_nuts(
    layout: Layout,
    args: DensityArgs,
    *,
    chains: int,
    tune: int,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    chunk: int = 100,
) -> NutsPrograms:
    """Compile (or load) the sampler's programs; needs only shapes, so it can run while
    the mode of θ is being found."""
    settings = (tune, target_accept, max_tree_depth, chunk)
    init_fn, chunk_fn = _nuts_fns(layout, *settings)
    d = layout.size
    f64 = jnp.float64
    start = ParamInfo(
        jax.ShapeDtypeStruct((chains, d), f64),
        jax.ShapeDtypeStruct((chains,), f64),
        jax.ShapeDtypeStruct((chains, d), f64),
    )
    keys = jax.ShapeDtypeStruct((chains, 2), jnp.uint32)
    model_args = (args, jax.ShapeDtypeStruct((d,), f64), jax.ShapeDtypeStruct((d, d), f64))
    quick = args.small
    init = program("nuts_init", init_fn, (start, keys, model_args), (layout, *settings), quick)
    state = jax.eval_shape(init_fn, start, keys, model_args)
    run_chunk = program("nuts_chunk", chunk_fn, (state, model_args), (layout, *settings), quick)
    return NutsPrograms(init, run_chunk, chains, tune, chunk)


def run_nuts(
    programs: NutsPrograms,
    args: DensityArgs,
    laplace: Laplace,
    logp: LogDensity,
    *,
    draws: int,
    seed: int,
    progress: Progress | None = None,
) -> NutsDraws:
    """Run the chains in lockstep (vectorised) over ``u``; return θ draws.

    The iterations run in compiled chunks so a progress bar can update between them;
    warm-up and sampling share one compiled program. ``logp`` is the density's value and
    gradient program (:func:`hierlm.laplace.logp_program`), used at the starting points.
    """
    chains, tune, chunk = programs.chains, programs.tune, programs.chunk_size
    mode = np.asarray(laplace.mode)
    C = np.asarray(laplace.root_cov)
    key = jax.random.PRNGKey(seed)
    k_init, k_chain = jax.random.split(key)
    u0 = np.asarray(jax.random.normal(k_init, (chains, mode.shape[0]), dtype=jnp.float64))
    keys = jax.random.split(k_chain, chains)
    values, grads = logp(mode + u0 @ C.T)
    pe, grad = -values, -(grads @ C)
    model_args = (args, jnp.asarray(mode), jnp.asarray(C))
    state = programs.init(ParamInfo(u0, pe, grad), keys, model_args)
    total = tune + draws
    outs = []
    done = 0
    if progress is not None:
        progress(0, total, "warmup")
    while done < total:
        state, out = programs.chunk(state, model_args)
        outs.append(jax.device_get(out))
        done = min(done + chunk, total)
        if progress is not None:
            progress(done, total, "warmup" if done <= tune else "sampling")
    z, div, n_steps, energy, pe_draws, eps = (
        np.concatenate(parts, axis=0)[tune:total].swapaxes(0, 1)
        for parts in zip(*outs, strict=True)
    )
    theta = mode + z @ C.T
    depth = np.ceil(np.log2(n_steps + 1.0)).astype(np.int64)
    return NutsDraws(
        theta, div.astype(bool), n_steps.astype(np.int64), depth, energy, -pe_draws, eps
    )
