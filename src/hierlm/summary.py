"""Posterior summary tables from ArviZ's R-hat, ESS and HDI."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._arviz import quiet

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["posterior_table"]


def _labels(da: xr.DataArray) -> list[str]:
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    if not dims:
        return [str(da.name)]
    coords = [list(map(str, da.coords[d].values)) for d in dims]
    grids = np.meshgrid(*[np.arange(len(c)) for c in coords], indexing="ij")
    flat = [g.ravel() for g in grids]
    return [
        f"{da.name}[{', '.join(coords[k][i[k]] for k in range(len(dims)))}]"
        for i in zip(*flat, strict=True)
    ]


def posterior_table(
    posterior: xr.Dataset, var_names: list[str], hdi_prob: float = 0.9, stats: bool = True
) -> pd.DataFrame:
    """One row per scalar: mean, sd, HDI bounds, R-hat, bulk and tail ESS.

    Parameters
    ----------
    posterior
        The posterior group (dims ``chain``, ``draw``, ...).
    var_names
        Variables to include, in order.
    hdi_prob
        Mass of the highest-density interval.
    stats
        Include the location and interval columns; otherwise only the diagnostics.
    """
    import arviz as az

    ds = posterior[var_names]
    with warnings.catch_warnings():
        # Constant entries (a correlation's diagonal) have zero variance: NaN is the answer.
        warnings.simplefilter("ignore", RuntimeWarning)
        with quiet():
            rhat = az.rhat(ds)
            ess_bulk = az.ess(ds, method="bulk")
            ess_tail = az.ess(ds, method="tail")
            hdi = az.hdi(ds, hdi_prob=hdi_prob) if stats else None
    lo, hi = f"hdi_{100 * (1 - hdi_prob) / 2:g}%", f"hdi_{100 * (1 + hdi_prob) / 2:g}%"
    frames = []
    for name in var_names:
        da = ds[name]
        cols: dict[str, np.ndarray] = {}
        if stats and hdi is not None:
            cols["mean"] = da.mean(("chain", "draw")).values.ravel()
            cols["sd"] = da.std(("chain", "draw"), ddof=1).values.ravel()
            bounds = hdi[name]
            cols[lo] = bounds.sel(hdi="lower").values.ravel()
            cols[hi] = bounds.sel(hdi="higher").values.ravel()
        cols["r_hat"] = rhat[name].values.ravel()
        cols["ess_bulk"] = ess_bulk[name].values.ravel()
        cols["ess_tail"] = ess_tail[name].values.ravel()
        frames.append(pd.DataFrame(cols, index=_labels(da)))
    return pd.concat(frames)
