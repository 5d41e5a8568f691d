"""Synthetic three-level data for model B: ``y ~ x + (1 + x | a/b/c)``.

2 groups at level a, 50 b in each a, 20 c in each b: 100 b groups and 2,000 leaf (c)
groups. The labels repeat under each parent (b runs 0..49 inside every a), so the nesting
is what tells the groups apart, as in real data. Intercept and slope vary, correlated, at
every level. Rows are assigned to leaves uniformly at random.

Rows are generated in chunks straight into preallocated arrays, so 1e7 rows cost about
200 MB: float64 ``y`` and ``x``, int8 group codes wrapped as pandas categoricals.

``python benchmarks/simulate.py 1e6`` prints a short description of a simulated table.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["N_A", "N_B", "N_C", "TRUTH", "Simulated", "simulate"]

N_A, N_B, N_C = 2, 50, 20  # groups per parent at levels a, b (per a) and c (per b)
N_LEAVES = N_A * N_B * N_C

TRUTH = {
    "beta": (1.0, 0.5),  # intercept, slope
    "sigma": 1.0,
    # (intercept sd, slope sd) per level, and the intercept-slope correlation.
    "sd": {"a": (0.5, 0.25), "b": (0.3, 0.15), "c": (0.2, 0.1)},
    "corr": 0.3,
}


@dataclass(frozen=True)
class Simulated:
    """The table, and each row's leaf group (global, 0-based)."""

    frame: pd.DataFrame
    leaf: np.ndarray  # (n,) int16, 0..1999

    @property
    def n_groups(self) -> dict[str, int]:
        return {"a": N_A, "b": N_A * N_B, "c": N_LEAVES}

    def level_index(self) -> dict[str, np.ndarray]:
        """Each row's global group index at levels a, b and c (computed on demand)."""
        leaf = self.leaf.astype(np.int64)
        return {"a": leaf // (N_B * N_C), "b": leaf // N_C, "c": leaf}

    def ancestors(self) -> dict[str, np.ndarray]:
        """For each leaf (0..1999), its global index at levels a, b and c."""
        leaf = np.arange(N_LEAVES)
        return {"a": leaf // (N_B * N_C), "b": leaf // N_C, "c": leaf}


def _effects(rng: np.random.Generator, n: int, sds: tuple[float, float], corr: float) -> np.ndarray:
    cov = np.array([[sds[0] ** 2, corr * sds[0] * sds[1]], [corr * sds[0] * sds[1], sds[1] ** 2]])
    return rng.multivariate_normal(np.zeros(2), cov, size=n)


def simulate(
    n_rows: int, seed: int = 20240601, chunk: int = 1_000_000, row_seed: int | None = None
) -> Simulated:
    """Simulate ``n_rows`` rows of model B with a fixed seed.

    The group effects depend only on ``seed``, not on ``n_rows``, so every size shares the
    same true coefficients; the rows come from ``row_seed`` (default ``seed + 1``).
    """
    rng = np.random.default_rng(seed)
    corr = TRUTH["corr"]
    u_a = _effects(rng, N_A, TRUTH["sd"]["a"], corr)
    u_b = _effects(rng, N_A * N_B, TRUTH["sd"]["b"], corr)
    u_c = _effects(rng, N_LEAVES, TRUTH["sd"]["c"], corr)
    leaf_ids = np.arange(N_LEAVES)
    coef = np.asarray(TRUTH["beta"]) + u_a[leaf_ids // (N_B * N_C)] + u_b[leaf_ids // N_C] + u_c

    y = np.empty(n_rows, dtype=np.float64)
    x = np.empty(n_rows, dtype=np.float64)
    leaf = np.empty(n_rows, dtype=np.int16)
    row_rng = np.random.default_rng(seed + 1 if row_seed is None else row_seed)
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        m = stop - start
        g = row_rng.integers(0, N_LEAVES, m)
        xc = row_rng.standard_normal(m)
        leaf[start:stop] = g
        x[start:stop] = xc
        y[start:stop] = coef[g, 0] + coef[g, 1] * xc + TRUTH["sigma"] * row_rng.standard_normal(m)

    a = (leaf // (N_B * N_C)).astype(np.int8)
    b = ((leaf // N_C) % N_B).astype(np.int8)
    c = (leaf % N_C).astype(np.int8)
    frame = pd.DataFrame(
        {
            "y": y,
            "x": x,
            "a": pd.Categorical.from_codes(a, categories=list(range(N_A))),
            "b": pd.Categorical.from_codes(b, categories=list(range(N_B))),
            "c": pd.Categorical.from_codes(c, categories=list(range(N_C))),
        },
        copy=False,
    )
    return Simulated(frame=frame, leaf=leaf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=float, help="number of rows, e.g. 1e6")
    args = parser.parse_args()
    sim = simulate(int(args.rows))
    print(sim.frame.head())
    print(sim.frame.dtypes)
    print(f"{len(sim.frame):,} rows, {sim.frame.memory_usage(deep=True).sum() / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
