"""The posterior mode of θ and the curvature there: the sampler's preconditioner.

θ is low-dimensional (a few variance parameters), so the mode is found by Newton's method
driven from the host: each step evaluates one small compiled program (log density and
gradient) a few times, and the Hessian comes from central differences of the gradient. That
program compiles in about a second, where an optimiser traced into one XLA program took
several, and the host loop can check convergence and fall back when it fails.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import numpy as np

from .compiled import program
from .density import DensityArgs, Layout, log_density

__all__ = ["Laplace", "LogDensity", "find_laplace", "logp_program"]

# Curvature below this (an sd above ~3 on the standardised scale) carries no information
# for the preconditioner; flooring it keeps a flat or boundary direction from a huge step.
_MIN_CURVATURE = 0.1


class Laplace(NamedTuple):
    """Mode of θ, a square root of the inverse Hessian there, and how the search ended.

    ``root_cov`` is ``C`` with ``C Cᵀ = H⁻¹`` (curvatures floored); ``converged`` is False
    when Newton's method stopped without meeting its tolerance, and ``iterations`` counts
    its steps.
    """

    mode: np.ndarray
    root_cov: np.ndarray
    converged: bool
    iterations: int


class LogDensity:
    """The compiled log density and gradient of θ, evaluated at a batch of points per call.

    One call costs about as much as one point (the points are vectorised), so the Hessian
    by central differences and a whole backtracking line search take one call each.
    """

    def __init__(self, layout: Layout, args: DensityArgs):
        self.dim = layout.size
        self.batch = 2 * self.dim + 1
        fn = jax.vmap(
            jax.value_and_grad(functools.partial(log_density, layout=layout)), in_axes=(0, None)
        )
        example = (np.zeros((self.batch, self.dim)), args)
        self._program = program("logp", fn, example, layout, quick=args.small)
        self._args = args

    def __call__(self, thetas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``log p`` (k,) and its gradient (k, d) at the rows of ``thetas`` (k, d)."""
        k = thetas.shape[0]
        values, grads = [], []
        for start in range(0, k, self.batch):
            part = thetas[start : start + self.batch]
            padded = np.concatenate([part, np.repeat(part[-1:], self.batch - len(part), 0)])
            v, g = self._program(padded, self._args)
            values.append(np.asarray(v)[: len(part)])
            grads.append(np.asarray(g)[: len(part)])
        return np.concatenate(values), np.concatenate(grads)


def logp_program(layout: Layout, args: DensityArgs) -> LogDensity:
    """The compiled log density of θ and its gradient (built once per layout and shapes)."""
    return LogDensity(layout, args)


def _hessian_points(theta: np.ndarray, step: float) -> np.ndarray:
    d = theta.shape[0]
    e = step * np.eye(d)
    return np.concatenate([theta[None], theta + e, theta - e])


def _hessian_from(grads: np.ndarray, step: float) -> np.ndarray:
    d = grads.shape[1]
    H = (grads[1 : d + 1] - grads[d + 1 :]).T / (2 * step)
    return 0.5 * (H + H.T)


def find_laplace(
    layout: Layout, args: DensityArgs, max_iter: int = 100, tol: float = 1e-9
) -> Laplace:
    """Maximise the log density of θ by damped Newton steps from θ = 0.

    Parameters
    ----------
    layout, args
        The density.
    max_iter
        Newton steps at most.
    tol
        Stop when half the squared Newton decrement, ``½ gᵀ|H|⁻¹g`` (the predicted gain in
        log density), falls below this.

    Notes
    -----
    Each step solves with ``|H|`` (eigenvalues by absolute value, floored), so it climbs
    even where the log density is not concave, and takes the longest of the steps
    ``2⁻ᵏ`` (k = 0, ..., 2d) that raises the log density, all evaluated in one call. ``H`` is
    the Hessian of ``-log p`` by central differences of the exact gradient.
    """
    logp = logp_program(layout, args)
    d = layout.size
    step = 1e-5
    theta = np.zeros(d)
    converged = False
    iterations = 0
    fractions = 0.5 ** np.arange(logp.batch)
    while True:
        values, grads = logp(_hessian_points(theta, step))
        f, g = -values[0], -grads[0]
        if not (np.isfinite(values).all() and np.isfinite(grads).all()):
            break
        w, V = np.linalg.eigh(_hessian_from(-grads, step))
        scale = np.maximum(np.abs(w), 1e-8 * max(1.0, np.abs(w).max()))
        gv = V.T @ g
        if 0.5 * np.sum(gv * gv / scale) < tol:
            converged = True
            break
        if iterations == max_iter:
            break
        iterations += 1
        direction = -V @ (gv / scale)
        trial_values, _ = logp(theta + fractions[:, None] * direction[None, :])
        better = np.flatnonzero(np.isfinite(trial_values) & (-trial_values <= f))
        if not len(better):
            break
        theta = theta + fractions[better[0]] * direction
    if not converged and iterations == 0:
        return Laplace(theta, np.eye(d), False, 0)
    w, V = np.linalg.eigh(_hessian_from(-logp(_hessian_points(theta, step))[1], step))
    if not np.isfinite(w).all():
        return Laplace(theta, np.eye(d), False, iterations)
    C = V / np.sqrt(np.maximum(w, _MIN_CURVATURE))[None, :]
    return Laplace(theta, C, converged, iterations)
