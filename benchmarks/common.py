"""Shared helpers for the benchmark workers: convergence metrics and the JSON hand-off.

Every worker runs in its own process, writes one JSON file of metrics, and ``run.py``
collects them. Convergence is measured the same way for every tool: ArviZ rank-normalised
R-hat and bulk ESS over the same quantities (population coefficients, residual sd, group
sds, the off-diagonal correlations, and every group's full coefficient vector).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "convergence",
    "cpu_seconds",
    "lower_triangle",
    "peak_rss_mb",
    "write_json",
]


def cpu_seconds() -> float:
    """User + system CPU time of this process and its waited-for children so far."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def lower_triangle(corr: np.ndarray) -> np.ndarray:
    """The strict lower triangle of (..., k, k) correlation draws, as (..., k(k-1)/2)."""
    k = corr.shape[-1]
    rows, cols = np.tril_indices(k, -1)
    return corr[..., rows, cols]


def convergence(main: dict[str, np.ndarray], groups: dict[str, np.ndarray]) -> dict[str, Any]:
    """Min bulk ESS and max R-hat over ``main`` and ``groups`` (arrays shaped (chain, draw, ...)).

    Correlations must already be reduced to their free entries (see :func:`lower_triangle`):
    a constant entry has no ESS.
    """
    import arviz as az

    def stats(arrays: dict[str, np.ndarray]) -> tuple[float, float, str]:
        if not arrays:
            return float("nan"), float("nan"), ""
        ds = az.convert_to_dataset({k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})
        ess = az.ess(ds, method="bulk")
        rhat = az.rhat(ds)
        worst_name, worst = "", np.inf
        for name in ess.data_vars:
            vals = np.asarray(ess[name].values, dtype=np.float64).ravel()
            if vals.size and np.nanmin(vals) < worst:
                worst, worst_name = float(np.nanmin(vals)), str(name)
        max_rhat = max(float(np.nanmax(rhat[name].values)) for name in rhat.data_vars)
        return worst, max_rhat, worst_name

    ess_main, rhat_main, worst_main = stats(main)
    ess_groups, rhat_groups, worst_groups = stats(groups)
    n_groups = int(sum(np.prod(v.shape[2:]) for v in groups.values()))
    return {
        "ess_bulk_min_main": ess_main,
        "ess_bulk_min_main_var": worst_main,
        "ess_bulk_min_groups": ess_groups,
        "ess_bulk_min_groups_var": worst_groups,
        "ess_bulk_min_all": float(np.nanmin([ess_main, ess_groups])),
        "rhat_max_main": rhat_main,
        "rhat_max_all": float(np.nanmax([rhat_main, rhat_groups])),
        "n_group_coefficients": n_groups,
    }


def write_json(path: str | os.PathLike[str] | None, payload: dict[str, Any]) -> None:
    """Write the worker's metrics (or print them when no path is given)."""
    text = json.dumps(payload, indent=2, default=float)
    if path is None:
        print(text)
        return
    Path(path).write_text(text)


def stamp() -> dict[str, float]:
    """Wall clock (epoch) and CPU time now, for run.py to turn into process-relative times."""
    return {"epoch": time.time(), "cpu_s": cpu_seconds()}


def flush() -> None:
    """Flush stdout, so 'summary printed' really means printed."""
    sys.stdout.flush()
