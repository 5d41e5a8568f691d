"""Small dense linear algebra unrolled over static sizes, batched by broadcasting.

XLA on CPU runs batched Cholesky factorisations and triangular solves of tiny matrices as
one small kernel per matrix, which costs far more than the arithmetic. Written out entry by
entry, the same operations become a few fused elementwise kernels over the whole batch.
Every function takes arrays whose last two axes are the matrix, with any leading axes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["cholesky", "matmul", "solve_lower", "solve_upper_t"]

UNROLL_MAX = 6


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` over the last two axes, as broadcast multiply and sum."""
    if a.shape[-1] > UNROLL_MAX * 2:
        return a @ b
    return jnp.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)


def cholesky(m: jax.Array) -> jax.Array:
    """Lower Cholesky factor of symmetric positive definite ``m`` (..., q, q)."""
    q = m.shape[-1]
    if q > UNROLL_MAX:
        return jnp.linalg.cholesky(m)
    L: list[list[jax.Array | None]] = [[None] * q for _ in range(q)]
    for j in range(q):
        s = m[..., j, j]
        for k in range(j):
            s = s - L[j][k] * L[j][k]  # type: ignore[operator]
        d = jnp.sqrt(s)
        L[j][j] = d
        for i in range(j + 1, q):
            t = m[..., i, j]
            for k in range(j):
                t = t - L[i][k] * L[j][k]  # type: ignore[operator]
            L[i][j] = t / d
    zero = jnp.zeros_like(m[..., 0, 0])
    rows = [jnp.stack([L[i][j] if j <= i else zero for j in range(q)], axis=-1) for i in range(q)]  # type: ignore[misc]
    return jnp.stack(rows, axis=-2)


def solve_lower(L: jax.Array, b: jax.Array) -> jax.Array:
    """Solve ``L x = b`` for lower-triangular ``L`` (..., q, q) and ``b`` (..., q, k)."""
    q = L.shape[-1]
    if q > UNROLL_MAX:
        return jax.scipy.linalg.solve_triangular(L, b, lower=True)
    x: list[jax.Array] = []
    for i in range(q):
        t = b[..., i, :]
        for k in range(i):
            t = t - L[..., i, k, None] * x[k]
        x.append(t / L[..., i, i, None])
    return jnp.stack(x, axis=-2)


def solve_upper_t(L: jax.Array, b: jax.Array) -> jax.Array:
    """Solve ``Lᵀ x = b`` for lower-triangular ``L`` (..., q, q) and ``b`` (..., q, k)."""
    q = L.shape[-1]
    if q > UNROLL_MAX:
        return jax.scipy.linalg.solve_triangular(jnp.swapaxes(L, -1, -2), b, lower=False)
    x: list[jax.Array | None] = [None] * q
    for i in range(q - 1, -1, -1):
        t = b[..., i, :]
        for k in range(i + 1, q):
            t = t - L[..., k, i, None] * x[k]  # type: ignore[operator]
        x[i] = t / L[..., i, i, None]
    return jnp.stack(x, axis=-2)  # type: ignore[arg-type]
