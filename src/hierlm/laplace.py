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

from .density import DensityArgs, Layout, log_density

__all__ = ["Laplace", "find_laplace"]

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


@functools.lru_cache(maxsize=16)
def _value_and_grad(layout: Layout):
    return jax.jit(jax.value_and_grad(functools.partial(log_density, layout=layout)))


def _hessian(grad, theta: np.ndarray, step: float = 1e-5) -> np.ndarray:
    d = theta.shape[0]
    H = np.empty((d, d))
    for j in range(d):
        e = np.zeros(d)
        e[j] = step
        H[:, j] = (grad(theta + e) - grad(theta - e)) / (2 * step)
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
    even where the log density is not concave, and halves the step until the log density
    rises. Curvature is measured on ``-log p``.
    """
    vg = _value_and_grad(layout)

    def value_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = vg(theta, args)
        return -float(v), -np.asarray(g, dtype=np.float64)

    def grad(theta: np.ndarray) -> np.ndarray:
        return value_grad(theta)[1]

    d = layout.size
    theta = np.zeros(d)
    f, g = value_grad(theta)
    if not (np.isfinite(f) and np.isfinite(g).all()):
        return Laplace(theta, np.eye(d), False, 0)
    converged = False
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        w, V = np.linalg.eigh(_hessian(grad, theta))
        scale = np.maximum(np.abs(w), 1e-8 * max(1.0, np.abs(w).max()))
        gv = V.T @ g
        if 0.5 * np.sum(gv * gv / scale) < tol:
            converged = True
            break
        step = -V @ (gv / scale)
        t = 1.0
        while t > 1e-10:
            f_new, g_new = value_grad(theta + t * step)
            if np.isfinite(f_new) and np.isfinite(g_new).all() and f_new <= f:
                break
            t *= 0.5
        else:
            break
        theta, f, g = theta + t * step, f_new, g_new
    w, V = np.linalg.eigh(_hessian(grad, theta))
    if not np.isfinite(w).all():
        return Laplace(theta, np.eye(d), False, iterations)
    C = V / np.sqrt(np.maximum(w, _MIN_CURVATURE))[None, :]
    return Laplace(theta, C, converged, iterations)
