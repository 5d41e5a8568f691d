"""NUTS over a log density given as a pure JAX function; on CPU, chains in parallel.

A :class:`Target` is the function ``log p(x, data)`` of a flat unconstrained vector, the
arrays it reads and a static key naming it. The collapsed engine's target is θ
preconditioned by its Laplace approximation (:func:`collapsed_target`); the full-latent
engine's is the joint density of θ and every group coefficient.

With many rows the posterior of θ is very narrow in some directions (the sd of log σ shrinks
like 1/sqrt(2N)), below what NUTS's mass-matrix adaptation can represent, and the step size
collapses. Sampling ``u`` with ``θ = mode + C u``, where ``C Cᵀ`` is the inverse Hessian at
the mode, keeps the geometry near the identity at every data size.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._numpyro import ensure_imported
from .compiled import Program, program
from .density import DensityArgs, Layout, log_density
from .devices import host_blocks
from .laplace import Laplace

__all__ = [
    "NutsDraws",
    "NutsPrograms",
    "Target",
    "check_start",
    "collapsed_start",
    "collapsed_target",
    "compile_nuts",
    "plain_draws",
    "run_nuts",
    "theta_draws",
]

Progress = Callable[[int, int, str], None]


class Target(NamedTuple):
    """A log density for NUTS.

    Attributes
    ----------
    name
        Program name prefix (``nuts`` for the collapsed engine).
    key
        Everything static ``log_density`` closes over; its ``repr`` must identify it.
    log_density
        ``log p(x, data)`` for a flat vector ``x`` of length ``dim``, pure JAX.
    data
        The arrays it reads (a pytree), shared by every chain.
    dim
        Length of ``x``.
    small
        Prefer quick compilation (see :func:`hierlm.compiled.program`).
    dense_mass
        Adapt a dense mass matrix (for targets with strong linear correlations, such as an
        intercept against every group's deviation); diagonal otherwise.
    """

    name: str
    key: Hashable
    log_density: Callable[[jax.Array, Any], jax.Array]
    data: Any
    dim: int
    small: bool
    dense_mass: bool = False


def collapsed_target(layout: Layout, args: DensityArgs, laplace: Laplace | None) -> Target:
    """θ through its preconditioner: ``x = u`` with ``θ = mode + C u`` (``data`` holds the
    density's arrays, the mode and C; ``laplace`` may be None when only shapes matter)."""

    def logp(u, data):
        args, mode, root_cov = data
        return log_density(mode + root_cov @ u, args, layout)

    d = layout.size
    if laplace is None:
        mode, root_cov = np.zeros(d), np.eye(d)
    else:
        mode, root_cov = np.asarray(laplace.mode), np.asarray(laplace.root_cov)
    return Target("nuts", layout, logp, (args, mode, root_cov), d, args.small)


class NutsDraws(NamedTuple):
    """Draws of ``x`` and per-draw sampler statistics, shapes (chains, draws, ...)."""

    x: np.ndarray
    diverging: np.ndarray
    n_steps: np.ndarray
    tree_depth: np.ndarray
    energy: np.ndarray
    lp: np.ndarray
    step_size: np.ndarray


def plain_draws(
    x: np.ndarray, lp: np.ndarray, n_steps: int = 0, step_size: np.ndarray | None = None
) -> NutsDraws:
    """Draws from a method without NUTS's trajectories, in :class:`NutsDraws` form:
    never diverging, tree depth 0, ``energy`` the negative log density."""
    zeros = np.zeros(lp.shape, dtype=np.int64)
    return NutsDraws(
        x=x,
        diverging=np.zeros(lp.shape, dtype=bool),
        n_steps=zeros + n_steps,
        tree_depth=zeros,
        energy=-lp,
        lp=lp,
        step_size=np.zeros(lp.shape) if step_size is None else step_size,
    )


def _one_chain_fns(
    log_p: Callable,
    dim: int,
    tune: int,
    target_accept: float,
    max_tree_depth: int,
    chunk: int,
    dense_mass: bool = False,
):
    """Initialise one chain, and run one chain for ``chunk`` iterations.

    The chain's state passes between the programs as a flat list of arrays, not NumPyro's
    state classes: a warm process loads both programs from the cache and, with no NumPyro
    type in their output, never imports NumPyro (0.2 s it otherwise spent before sampling).
    """

    def potential_gen(data):
        return lambda x: -log_p(x, data)

    made: list = []

    def kernels():
        # One pair for both programs, made only when a program is traced.
        if not made:
            ensure_imported()
            from numpyro.infer.hmc import hmc

            made.extend(hmc(potential_fn_gen=potential_gen, algo="NUTS"))
        return made

    def init_state(z, pe, grad, key, data):
        ensure_imported()
        from numpyro.infer.util import ParamInfo

        # The potential and its gradient at the start come from the host: this program then
        # holds no copy of the density, and compiles in a fraction of the time.
        return kernels()[0](
            ParamInfo(z, pe, grad),
            tune,
            target_accept_prob=target_accept,
            max_tree_depth=max_tree_depth,
            dense_mass=dense_mass,
            model_args=(data,),
            rng_key=key,
        )

    structure: list = []

    def init(z, pe, grad, key, data):
        leaves, tree = jax.tree.flatten(init_state(z, pe, grad, key, data))
        structure[:] = [tree]
        return leaves

    def run_chunk(leaves, data):
        if not structure:
            # The init program came from the cache: tracing its kernel gives the state's
            # structure and sets the settings the sample kernel reads.
            z = jax.ShapeDtypeStruct((dim,), jnp.float64)
            key = jax.ShapeDtypeStruct((2,), jnp.uint32)
            pe = jax.ShapeDtypeStruct((), jnp.float64)
            jax.eval_shape(init, z, pe, z, key, data)
        tree = structure[0]
        sample_kernel = kernels()[1]

        def body(s, _):
            s = sample_kernel(s, model_args=(data,))
            stats = (s.z, s.diverging, s.num_steps, s.energy, s.potential_energy)
            return s, (*stats, s.adapt_state.step_size)

        state, out = jax.lax.scan(body, jax.tree.unflatten(tree, leaves), None, length=chunk)
        return jax.tree.leaves(state), out

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


class NutsPrograms(NamedTuple):
    """The compiled programs of :func:`run_nuts` and the settings they were built for."""

    init: Program
    chunk: Program
    chains: int
    tune: int
    chunk_size: int
    shared: jax.sharding.Sharding | None


def compile_nuts(
    target: Target,
    *,
    chains: int,
    tune: int,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    chunk: int = 100,
) -> NutsPrograms:
    """Compile (or load) the sampler's programs; they need only the target's shapes.

    On CPU the chains are spread over the host devices, one program per device running
    its chains, so chains run in parallel and each takes its own tree depth (vectorised
    chains all wait for the deepest).
    """
    settings = (tune, target_accept, max_tree_depth, chunk, target.dense_mass)
    init_one, chunk_one = _one_chain_fns(target.log_density, target.dim, *settings)
    n_dev = _chain_devices(chains)
    per = chains // n_dev
    blocks = host_blocks(n_dev)
    init_fn = blocks.spread(_per_block(init_one, 4, per), 4)
    chunk_fn = blocks.spread(_per_block(chunk_one, 1, per), 1)
    spec = blocks.spec
    d = target.dim
    f64 = jnp.float64
    start = (spec((chains, d), f64), spec((chains,), f64), spec((chains, d), f64))
    keys = spec((chains, 2), jnp.uint32)
    shared = blocks.shared(target.data)
    key = (target.key, *settings, n_dev)
    quick = target.small
    init = program(f"{target.name}_init", init_fn, (*start, keys, shared), key, quick)
    run_chunk = program(f"{target.name}_chunk", chunk_fn, (init.out_shapes, shared), key, quick)
    return NutsPrograms(init, run_chunk, chains, tune, chunk, blocks.replicated)


def run_nuts(
    programs: NutsPrograms,
    data: Any,
    start: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    draws: int,
    seed: int,
    progress: Progress | None = None,
) -> NutsDraws:
    """Run the chains (see :func:`compile_nuts` for how they share devices).

    The iterations run in compiled chunks so a progress bar can update between them;
    warm-up and sampling share one compiled program.

    Parameters
    ----------
    programs
        From :func:`compile_nuts`.
    data
        The target's arrays (values for the shapes the programs were built for).
    start
        Per chain: the starting point (chains, d), its log density (chains,) and the
        gradient there (chains, d).
    draws, seed
        Kept draws per chain; the seed of the chains' random streams.
    progress
        Called as ``(done, total, phase)`` after each chunk.
    """
    chains, tune, chunk = programs.chains, programs.tune, programs.chunk_size
    x0, logp0, grad0 = start
    # Per-chain keys from NumPy: JAX's eager random ops would compile small programs in
    # every new process (half a second, measured).
    keys = np.random.default_rng(seed).integers(0, 2**32, (chains, 2), dtype=np.uint32)
    # Placed once where every chain's device sees them; otherwise each call copies them.
    data = jax.device_put(data, programs.shared)
    state = programs.init(x0, -logp0, -grad0, keys, data)
    total = tune + draws
    outs = []
    done = 0
    if progress is not None:
        progress(0, total, "warmup")
    while done < total:
        state, out = programs.chunk(state, data)
        outs.append(jax.device_get(out))
        done = min(done + chunk, total)
        if progress is not None:
            progress(done, total, "warmup" if done <= tune else "sampling")
    z, div, n_steps, energy, pe_draws, eps = (
        np.concatenate(parts, axis=1)[:, tune:total] for parts in zip(*outs, strict=True)
    )
    depth = np.ceil(np.log2(n_steps + 1.0)).astype(np.int64)
    return NutsDraws(z, div.astype(bool), n_steps.astype(np.int64), depth, energy, -pe_draws, eps)


def collapsed_start(
    laplace: Laplace,
    logp: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    chains: int,
    seed: int,
    labels: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Starting points of the collapsed target: ``u ~ N(0, I)``, i.e. θ drawn from the
    Laplace approximation, with the log density and gradient from ``logp`` (of θ).

    Raises :class:`hierlm.HierlmError` naming the entries of θ (``labels``) where the
    log density or its gradient is not finite at a start (see :func:`check_start`).
    """
    mode = np.asarray(laplace.mode)
    C = np.asarray(laplace.root_cov)
    # A stream apart from the chains' own (run_nuts seeds those with ``seed``).
    u0 = np.random.default_rng([seed, 1]).standard_normal((chains, mode.shape[0]))
    theta0 = mode + u0 @ C.T
    values, grads = logp(theta0)
    check_start(theta0, values, grads, labels)
    return u0, values, grads @ C


def check_start(
    theta: np.ndarray, values: np.ndarray, grads: np.ndarray, labels: list[str] | None = None
) -> None:
    """Refuse starting points (chains, d) where the log density (chains,) or its gradient
    (chains, d) is not finite, naming the parameters and their values there."""
    bad_value = ~np.isfinite(values)
    bad_grad = ~np.isfinite(grads)
    if not (bad_value.any() or bad_grad.any()):
        return
    from .errors import HierlmError

    names = labels or [f"theta[{i}]" for i in range(theta.shape[1])]
    chain = int(np.argmax(bad_value | bad_grad.any(axis=1)))
    where = np.flatnonzero(bad_grad[chain])
    if where.size == 0:
        # A non-finite density with a finite gradient: show the whole starting point.
        where = np.arange(theta.shape[1])
    entries = ", ".join(f"{names[i]} = {theta[chain, i]:.3g}" for i in where)
    what = (
        f"the log density is {values[chain]} there"
        if bad_value[chain]
        else "the log density is finite there but its gradient is not"
    )
    raise HierlmError(
        f"the sampler cannot start: at chain {chain + 1}'s starting point ({entries}; "
        f"unconstrained, standardised scale) {what}, for {', '.join(names[i] for i in where)}. "
        "Check the response and predictors for extreme or degenerate values (rescale them, "
        "or drop a constant column), or give those parameters tighter priors."
    )


def theta_draws(draws: NutsDraws, laplace: Laplace) -> np.ndarray:
    """θ from the collapsed target's draws of ``u``."""
    return np.asarray(laplace.mode) + draws.x @ np.asarray(laplace.root_cov).T
