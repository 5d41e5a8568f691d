"""The statistics of two ingests agree: what every out-of-core path is tested against."""

from __future__ import annotations

import numpy as np

__all__ = ["assert_same_stats"]


def assert_same_stats(a, b, rtol: float = 1e-9) -> None:
    """Standardised leaf statistics within ``rtol``; the same groups and coefficients."""
    for name in ("n", "xtx", "xty", "yty"):
        np.testing.assert_allclose(getattr(a.stats, name), getattr(b.stats, name), rtol=rtol)
    assert a.design.tree.labels == b.design.tree.labels
    assert a.design.coef_names == b.design.coef_names
