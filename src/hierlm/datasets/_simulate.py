"""Simulated nested data with known truth, for examples, tests and calibration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from hierlm.errors import DataError

__all__ = ["simulate_nested"]


def simulate_nested(
    levels: Mapping[str, int] | Sequence[tuple[str, int]] = (
        ("degree", 3),
        ("state", 8),
        ("county", 6),
    ),
    rows: int | tuple[int, int] = (5, 30),
    beta: tuple[float, float] = (40.0, 5.0),
    sd: Mapping[str, tuple[float, float]] | tuple[float, float] = (4.0, 1.0),
    corr: float = 0.3,
    sigma: float = 6.0,
    x: str = "x",
    y: str = "y",
    seed: int = 0,
) -> pd.DataFrame:
    """Rows from a nested model with a varying intercept and slope at every level.

    ``y = (β₀ + Σ_l u_l0) + (β₁ + Σ_l u_l1) x + ε`` with, for every group of every level,
    ``(u_l0, u_l1) ~ N(0, D R D)``, ``D = diag(sd_l)``, ``R`` the 2 × 2 correlation with
    ``corr``, ``x ~ N(0, 1)`` and ``ε ~ N(0, σ²)``. The defaults read as income (thousands)
    on years of experience, by degree > state > county.

    Parameters
    ----------
    levels
        Level names, top first, each with its number of groups *per parent* (so the default
        makes 3 degrees × 8 states × 6 counties = 144 leaf groups). Labels repeat under
        every parent (``state1`` exists under each degree), as real names do.
    rows
        Rows per leaf group: a number, or ``(low, high)`` for a uniform draw per group.
    beta
        Population intercept and slope.
    sd
        ``(sd of intercepts, sd of slopes)`` for every level, or a mapping per level.
    corr
        Correlation of a group's intercept and slope deviations, at every level.
    sigma
        Residual sd.
    x, y
        Names of the predictor and response columns.
    seed
        Random seed.

    Returns
    -------
    pandas.DataFrame
        One column per level (top first), then ``x`` and ``y``. ``frame.attrs["truth"]``
        holds the truth: ``beta``, ``sd`` and ``corr`` per level, ``sigma``, and per level a
        DataFrame of every group's full coefficients (population plus deviations down its
        path), indexed by path label (``"degree1/state3"``).

    Examples
    --------
    >>> import hierlm as hl
    >>> df = hl.datasets.simulate_nested(seed=1)
    >>> list(df.columns)
    ['degree', 'state', 'county', 'x', 'y']
    >>> df.attrs["truth"]["sigma"]
    6.0
    """
    spec = list(levels.items()) if isinstance(levels, Mapping) else list(levels)
    if not spec:
        raise DataError("simulate_nested needs at least one level")
    for name, count in spec:
        if not isinstance(count, int | np.integer) or count < 1:
            raise DataError(f"level {name!r} needs a whole number of groups >= 1, got {count!r}")
    if not -1 < corr < 1:
        raise DataError(f"corr must be in (-1, 1), got {corr!r}")
    low, high = (rows, rows) if isinstance(rows, int) else rows
    if low < 1 or high < low:
        raise DataError(f"rows must be >= 1 (or a range low <= high), got {rows!r}")
    rng = np.random.default_rng(seed)
    R = np.array([[1.0, corr], [corr, 1.0]])
    chol_R = np.linalg.cholesky(R)
    coefs = np.asarray(beta, dtype=np.float64)[None, :]
    labels: list[np.ndarray] = []  # per level, each node's own label
    paths = np.array([""], dtype=object)
    truth_levels: dict[str, pd.DataFrame] = {}
    sds: dict[str, tuple[float, float]] = {}
    for name, count in spec:
        level_sd = sd[name] if isinstance(sd, Mapping) else sd
        sds[name] = (float(level_sd[0]), float(level_sd[1]))
        parent = np.repeat(np.arange(len(coefs)), count)
        own = np.tile([f"{name}{i + 1}" for i in range(count)], len(coefs))
        z = rng.standard_normal((len(parent), 2))
        dev = (z @ chol_R.T) * np.asarray(sds[name])
        coefs = coefs[parent] + dev
        paths = np.array(
            [own[i] if not paths[p] else f"{paths[p]}/{own[i]}" for i, p in enumerate(parent)],
            dtype=object,
        )
        labels = [lab[parent] for lab in labels] + [own]
        truth_levels[name] = pd.DataFrame(coefs, index=paths, columns=["Intercept", x])
    n_leaf = len(coefs)
    sizes = rng.integers(low, high + 1, n_leaf)
    leaf = np.repeat(np.arange(n_leaf), sizes)
    xv = rng.standard_normal(len(leaf))
    yv = coefs[leaf, 0] + coefs[leaf, 1] * xv + sigma * rng.standard_normal(len(leaf))
    frame = pd.DataFrame({name: lab[leaf] for (name, _), lab in zip(spec, labels, strict=True)})
    frame[x] = xv
    frame[y] = yv
    frame.attrs["truth"] = {
        "beta": tuple(float(b) for b in beta),
        "sd": sds,
        "corr": float(corr),
        "sigma": float(sigma),
        "groups": truth_levels,
    }
    return frame
