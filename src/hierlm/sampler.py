"""NUTS over θ, preconditioned by a Laplace approximation; on CPU, chains in parallel.

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
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._numpyro import ensure_imported
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


def _one_chain_fns(
    layout: Layout, tune: int, target_accept: float, max_tree_depth: int, chunk: int
):
    """Initialise one chain, and run one chain for ``chunk`` iterations."""

    def potential_gen(args, mode, root_cov):
        return lambda u: -log_density(mode + root_cov @ u, args, layout)

    made: list = []

    def kernels():
        # One pair for both programs, made only when a program is traced: a warm process
        # never imports NumPyro.
        if not made:
            ensure_imported()
            from numpyro.infer.hmc import hmc

            made.extend(hmc(potential_fn_gen=potential_gen, algo="NUTS"))
        return made

    def init(z, pe, grad, key, model_args):
        ensure_imported()
        from numpyro.infer.util import ParamInfo

        # The potential and its gradient at the start come from the host: this program then
        # holds no copy of the density, and compiles in a fraction of the time.
        return kernels()[0](
            ParamInfo(z, pe, grad),
            tune,
            target_accept_prob=target_accept,
            max_tree_depth=max_tree_depth,
            model_args=model_args,
            rng_key=key,
        )

    def run_chunk(state, model_args):
        if not made:
            # The sample kernel reads settings that the init kernel sets; when the init
            # program came from the cache, trace it here for those settings alone.
            jax.eval_shape(
                init, state.z, state.potential_energy, state.z_grad, state.rng_key, model_args
            )
        sample_kernel = kernels()[1]

        def body(s, _):
            s = sample_kernel(s, model_args=model_args)
            stats = (s.z, s.diverging, s.num_steps, s.energy, s.potential_energy)
            return s, (*stats, s.adapt_state.step_size)

        return jax.lax.scan(body, state, None, length=chunk)

    return init, run_chunk


def _per_block(fn: Callable, n_chain_args: int, per_device: int) -> Callable:
    """``fn`` of one chain as a function of a block of chains (leading axis), the last
    argument shared. One chain per block is written without ``vmap``: batching NUTS's
    nested loops costs more tracing and compiling than the chain's own program."""
    if per_device > 1:
        return jax.vmap(fn, in_axes=(0,) * n_chain_args + (None,))

    def single(*a):
        chain = jax.tree.map(lambda x: x[0], a[:n_chain_args])
        return jax.tree.map(lambda x: x[None], fn(*chain, a[-1]))

    return single


def _chain_devices(chains: int) -> int:
    """How many devices share the chains: the largest divisor of ``chains`` that the
    available CPU devices cover (see :func:`hierlm._jax.configure`); 1 on accelerators."""
    if jax.default_backend() != "cpu":
        return 1
    n = min(chains, jax.device_count())
    while chains % n:
        n -= 1
    return n


def _spread(fn: Callable, n_chain_args: int, mesh: Mesh | None) -> Callable:
    if mesh is None:
        return fn
    specs = (P("chain"),) * n_chain_args + (P(),)
    # check_vma=False: NumPyro's loops mix per-chain and shared values in ways the
    # replication checker rejects, though each device only ever sees its own chains.
    return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P("chain"), check_vma=False)


class NutsPrograms(NamedTuple):
    """The compiled programs of :func:`run_nuts` and the settings they were built for."""

    init: Program
    chunk: Program
    chains: int
    tune: int
    chunk_size: int
    shared: jax.sharding.Sharding | None


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
    """Compile (or load) the sampler's programs; they need only shapes.

    On CPU the chains are spread over the host devices, one program per device running
    its chains, so chains run in parallel and each takes its own tree depth (vectorised
    chains all wait for the deepest).
    """
    settings = (tune, target_accept, max_tree_depth, chunk)
    init_one, chunk_one = _one_chain_fns(layout, *settings)
    n_dev = _chain_devices(chains)
    per = chains // n_dev
    mesh = Mesh(np.array(jax.devices()[:n_dev]), ("chain",)) if n_dev > 1 else None
    init_fn = _spread(_per_block(init_one, 4, per), 4, mesh)
    chunk_fn = _spread(_per_block(chunk_one, 1, per), 1, mesh)

    def spec(shape, dtype, shared=False):
        sharding = None if mesh is None else NamedSharding(mesh, P() if shared else P("chain"))
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    d = layout.size
    f64 = jnp.float64
    start = (spec((chains, d), f64), spec((chains,), f64), spec((chains, d), f64))
    keys = spec((chains, 2), jnp.uint32)
    shared = (
        jax.tree.map(lambda a: spec(a.shape, a.dtype, True), args),
        spec((d,), f64, True),
        spec((d, d), f64, True),
    )
    key = (layout, *settings, n_dev)
    quick = args.small
    init = program("nuts_init", init_fn, (*start, keys, shared), key, quick)
    run_chunk = program("nuts_chunk", chunk_fn, (init.out_shapes, shared), key, quick)
    replicated = None if mesh is None else NamedSharding(mesh, P())
    return NutsPrograms(init, run_chunk, chains, tune, chunk, replicated)


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
    """Run the chains over ``u`` (see :func:`compile_nuts` for how they share devices);
    return θ draws.

    The iterations run in compiled chunks so a progress bar can update between them;
    warm-up and sampling share one compiled program. ``logp`` is the density's value and
    gradient program (:class:`hierlm.laplace.LogDensity`), used at the starting points.
    """
    chains, tune, chunk = programs.chains, programs.tune, programs.chunk_size
    mode = np.asarray(laplace.mode)
    C = np.asarray(laplace.root_cov)
    # Starting points and per-chain keys from NumPy: JAX's eager random ops would compile
    # small programs in every new process (half a second, measured).
    rng = np.random.default_rng(seed)
    u0 = rng.standard_normal((chains, mode.shape[0]))
    keys = rng.integers(0, 2**32, (chains, 2), dtype=np.uint32)
    values, grads = logp(mode + u0 @ C.T)
    pe, grad = -values, -(grads @ C)
    # Placed once where every chain's device sees them; otherwise each call copies them.
    model_args = jax.device_put((args, mode, C), programs.shared)
    state = programs.init(u0, pe, grad, keys, model_args)
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
        np.concatenate(parts, axis=1)[:, tune:total] for parts in zip(*outs, strict=True)
    )
    theta = mode + z @ C.T
    depth = np.ceil(np.log2(n_steps + 1.0)).astype(np.int64)
    return NutsDraws(
        theta, div.astype(bool), n_steps.astype(np.int64), depth, energy, -pe_draws, eps
    )
