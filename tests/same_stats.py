"""The statistics of two ingests agree: what every out-of-core path is tested against."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

__all__ = ["assert_matches_two_pass", "assert_same_stats", "large_offset_frame"]


def assert_same_stats(a, b, rtol: float = 1e-9) -> None:
    """Standardised leaf statistics within ``rtol``; the same groups and coefficients."""
    for name in ("n", "xtx", "xty", "yty"):
        np.testing.assert_allclose(getattr(a.stats, name), getattr(b.stats, name), rtol=rtol)
    assert a.design.tree.labels == b.design.tree.labels
    assert a.design.coef_names == b.design.coef_names


def large_offset_frame(n: int) -> pd.DataFrame:
    """``y = 1e6 + 0.5 x + small noise`` over 50 groups: one-pass sums of y² lose digits."""
    rng = np.random.default_rng(3)
    g = rng.integers(0, 50, n)
    x = rng.normal(5.0, 2.0, n)
    y = 1e6 + 0.5 * x + rng.normal(0, 1e-2, n) + 0.1 * (g % 7)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})


def assert_matches_two_pass(ingested, frame: pd.DataFrame) -> None:
    """The standardised statistics of ``y ~ x + (1 | g)`` on ``frame`` equal a two-pass
    computation (centre first, then sum) to 1e-9."""
    y, x = frame["y"].to_numpy(), frame["x"].to_numpy()
    sc = ingested.design.scaling
    y_std = (y - y.mean()) / sc.y_scale
    X_std = np.column_stack([np.ones(len(y)), x]) / sc.x_scale
    leaf = pd.Index(ingested.design.tree.labels[0]).get_indexer(frame["g"])
    yty = np.bincount(leaf, weights=y_std**2)
    xty = np.stack([np.bincount(leaf, weights=X_std[:, j] * y_std) for j in range(2)], axis=1)
    assert sc.y_shift == pytest.approx(y.mean(), rel=1e-15)
    assert sc.y_scale == pytest.approx(y.std(), rel=1e-9)
    np.testing.assert_allclose(ingested.stats.yty, yty, rtol=1e-9)
    np.testing.assert_allclose(ingested.stats.xty, xty, rtol=1e-9, atol=1e-9 * np.abs(xty).max())
