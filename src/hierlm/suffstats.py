"""Per-leaf sufficient statistics, accumulated in chunks, in float64.

For leaf g: ``n``, ``XᵀX``, ``Xᵀy`` and ``yᵀy``. Every later step sees only these, never the
rows, so the cost of inference does not grow with the number of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .design import Scaling

__all__ = [
    "RawStats",
    "SuffStats",
    "accumulate",
    "distinct_leaves",
    "scaling_from",
    "standardize",
    "weighted_stats",
]


@dataclass(frozen=True)
class RawStats:
    """Per-leaf sums on the original scale, with y shifted by ``y_ref`` against cancellation.

    Attributes
    ----------
    n
        Rows per leaf, shape (G,).
    sx
        Column sums of X per leaf, (G, p).
    xtx
        XᵀX per leaf, (G, p, p).
    xty
        Xᵀ(y - y_ref) per leaf, (G, p).
    sy
        Σ(y - y_ref) per leaf, (G,).
    yty
        Σ(y - y_ref)² per leaf, (G,).
    y_ref
        The shift: the mean of y in the first chunk.
    """

    n: np.ndarray
    sx: np.ndarray
    xtx: np.ndarray
    xty: np.ndarray
    sy: np.ndarray
    yty: np.ndarray
    y_ref: float

    @property
    def n_rows(self) -> int:
        """Total number of rows."""
        return int(self.n.sum())

    def __add__(self, other: RawStats) -> RawStats:
        d = other.y_ref - self.y_ref
        # Re-express other's y around self.y_ref: y - a = (y - b) + d.
        return RawStats(
            self.n + other.n,
            self.sx + other.sx,
            self.xtx + other.xtx,
            self.xty + other.xty + d * other.sx,
            self.sy + other.sy + d * other.n,
            self.yty + other.yty + 2 * d * other.sy + d * d * other.n,
            self.y_ref,
        )


@dataclass(frozen=True)
class SuffStats:
    """Standardised per-leaf statistics, the input of the collapsed likelihood.

    Attributes
    ----------
    n, xtx, xty, yty
        Shapes (G,), (G, p, p), (G, p), (G,) on the standardised scale.
    """

    n: np.ndarray
    xtx: np.ndarray
    xty: np.ndarray
    yty: np.ndarray

    @property
    def n_rows(self) -> int:
        """Total number of rows."""
        return int(self.n.sum())


def _chunk_stats(
    x: np.ndarray, y: np.ndarray, leaf: np.ndarray, n_leaves: int, y_ref: float
) -> RawStats:
    p = x.shape[1]
    yc = y - y_ref

    def sums(w: np.ndarray) -> np.ndarray:
        return np.bincount(leaf, weights=w, minlength=n_leaves)

    xtx = np.empty((n_leaves, p, p))
    for i in range(p):
        for j in range(i, p):
            xtx[:, i, j] = xtx[:, j, i] = sums(x[:, i] * x[:, j])
    return RawStats(
        n=np.bincount(leaf, minlength=n_leaves).astype(np.float64),
        sx=np.stack([sums(x[:, i]) for i in range(p)], axis=1),
        xtx=xtx,
        xty=np.stack([sums(x[:, i] * yc) for i in range(p)], axis=1),
        sy=sums(yc),
        yty=sums(yc * yc),
        y_ref=y_ref,
    )


def accumulate(
    chunks: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]],
    n_leaves: int,
    on_chunk: Callable[[int], None] | None = None,
) -> RawStats:
    """Sum per-leaf statistics over chunks of ``(X, y, leaf_id)``.

    Notes
    -----
    The first chunk's mean of y becomes the shift ``y_ref``; later chunks are summed around
    it, so ``yᵀy`` does not lose digits when y has a large mean.
    """
    total: RawStats | None = None
    for x, y, leaf in chunks:
        if total is None:
            ref = float(np.mean(y)) if len(y) else 0.0
            total = _chunk_stats(x, y, leaf, n_leaves, ref)
        else:
            total = total + _chunk_stats(x, y, leaf, n_leaves, total.y_ref)
        if on_chunk is not None:
            on_chunk(len(y))
    if total is None:
        raise ValueError("no rows to accumulate")
    return total


def scaling_from(raw: RawStats, center_y: bool) -> Scaling:
    """Column sds and means of X, and the mean and sd of y, from the leaf sums."""
    n = raw.n.sum()
    sx = raw.sx.sum(axis=0)
    x_mean = sx / n
    x_var = np.maximum(np.einsum("gii->i", raw.xtx) / n - x_mean**2, 0.0)
    x_sd = np.sqrt(x_var)
    spread = np.maximum(np.abs(x_mean), 1.0)
    x_scale = np.where(x_sd > 1e-12 * spread, x_sd, 1.0)
    dy = raw.sy.sum() / n
    y_var = max(raw.yty.sum() / n - dy * dy, 0.0)
    y_mean = raw.y_ref + dy
    y_scale = float(np.sqrt(y_var))
    return Scaling(
        y_mean=float(y_mean),
        y_shift=float(y_mean) if center_y else 0.0,
        y_scale=y_scale,
        x_mean=x_mean,
        x_scale=x_scale,
    )


def standardize(raw: RawStats, scaling: Scaling) -> SuffStats:
    """The statistics of ``y_std = (y - y_shift)/y_scale`` and ``X_std = X / x_scale``."""
    d = scaling.y_shift - raw.y_ref
    s = scaling.x_scale
    sy = scaling.y_scale
    return SuffStats(
        n=raw.n,
        xtx=raw.xtx / np.outer(s, s),
        xty=(raw.xty - d * raw.sx) / s / sy,
        yty=(raw.yty - 2 * d * raw.sy + d * d * raw.n) / sy**2,
    )


def weighted_stats(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, leaf: np.ndarray, n_leaves: int
) -> SuffStats:
    """Standardised statistics with known per-row precisions (``se()`` models).

    ``x`` and ``y`` are already standardised and ``weight`` is ``1/se²`` on that scale; the
    result is ``XᵀWX``, ``XᵀWy`` and ``yᵀWy`` per leaf (``n`` stays the row count). With
    σ fixed at 1 the collapsed likelihood of these is the exact one up to the data constant
    ``½ Σ log wᵢ``.
    """
    p = x.shape[1]

    def sums(v: np.ndarray) -> np.ndarray:
        return np.bincount(leaf, weights=v, minlength=n_leaves)

    xtx = np.empty((n_leaves, p, p))
    for i in range(p):
        for j in range(i, p):
            xtx[:, i, j] = xtx[:, j, i] = sums(weight * x[:, i] * x[:, j])
    return SuffStats(
        n=np.bincount(leaf, minlength=n_leaves).astype(np.float64),
        xtx=xtx,
        xty=np.stack([sums(weight * x[:, i] * y) for i in range(p)], axis=1),
        yty=sums(weight * y * y),
    )


def distinct_leaves(
    xtx: np.ndarray, xty: np.ndarray, j: int, max_share: float = 0.25
) -> np.ndarray | None:
    """The leaves grouped by their ``(XᵀX)_jj``, for a leaf level where only coefficient
    ``j`` varies (see :func:`hierlm.collapse.upward`).

    Returns (3, K): each distinct value of ``(XᵀX)_jj``, how many leaves have it, and their
    sum of ``(Xᵀy)_j²``; None when there are more than ``max_share`` times as many
    distinct values as leaves. For an intercept they are the row counts, which repeat a
    lot.
    """
    value, which = np.unique(xtx[:, j, j], return_inverse=True)
    if len(value) > max_share * len(xtx):
        return None
    count = np.bincount(which, minlength=len(value)).astype(np.float64)
    quad = np.bincount(which, weights=xty[:, j] ** 2, minlength=len(value))
    return np.stack([value, count, quad])
