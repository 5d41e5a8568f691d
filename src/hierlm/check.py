"""Posterior and prior predictive checks: replicated data sets and test statistics.

Notes
-----
For a test statistic ``T`` the posterior predictive p-value is
``P(T(y_rep) > T(y) | y) + ½ P(T(y_rep) = T(y) | y)`` (ties count half, so discrete
statistics are not flagged for tying), estimated over the replicated data sets. Values near 0 or 1 mean
the model rarely produces data like the observed in that respect. The statistics are the
mean, sd, min and max of the response, and at each grouping level the sd of the group
means, which checks how much the model lets groups differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import HierlmError
from .group_tree import path_labels

if TYPE_CHECKING:
    from .fit import Fit

__all__ = ["PredictiveCheck", "predictive_check", "statistics_of"]

_MAX_ELEMENTS = 50_000_000


@dataclass(frozen=True)
class PredictiveCheck:
    """Replicated data sets and their test statistics.

    Attributes
    ----------
    observed
        The response as observed (n,).
    replicated
        Replicated responses, (draws, n).
    statistics
        One row per test statistic: ``observed``, the replicates' ``mean``, ``5%`` and ``95%``
        quantiles and ``p_value``,
        ``P(T(y_rep) > T(y)) + ½ P(T(y_rep) = T(y))``.
    source
        ``"posterior"`` or ``"prior"``.
    """

    observed: np.ndarray
    replicated: np.ndarray
    statistics: pd.DataFrame
    source: str

    def extreme(self, low: float = 0.025) -> list[str]:
        """Statistics whose p-value is below ``low`` or above ``1 - low``, in plain words."""
        out = []
        for name, row in self.statistics.iterrows():
            pv = float(row["p_value"])
            if pv < low or pv > 1 - low:
                side = "above" if pv < low else "below"
                out.append(
                    f"{name}: observed {row['observed']:.4g} lies {side} almost all "
                    f"{self.source} replicates (p = {pv:.3f})"
                )
        return out


def statistics_of(
    y: np.ndarray, frame: pd.DataFrame, group_levels: list[tuple[str, tuple[str, ...]]]
) -> dict[str, np.ndarray]:
    """Test statistics of one or many data sets ``y`` ((n,) or (S, n)).

    ``group_levels`` lists ``(level name, grouping columns of its path)``; each adds the sd
    of that level's group means.
    """
    y2 = np.atleast_2d(y)
    stats = {
        "mean": y2.mean(axis=1),
        "sd": y2.std(axis=1, ddof=1),
        "min": y2.min(axis=1),
        "max": y2.max(axis=1),
    }
    from scipy import sparse

    for name, columns in group_levels:
        codes, uniques = pd.factorize(path_labels(frame, columns).to_numpy())
        if len(uniques) < 2:
            continue
        n = len(codes)
        member = sparse.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, len(uniques)))
        counts = np.asarray(member.sum(axis=0)).ravel()
        means = np.asarray(member.T @ y2.T).T / counts
        stats[f"sd of {name} means"] = means.std(axis=1, ddof=1)
    return stats


def predictive_check(
    fit: Fit, frame: pd.DataFrame, draws: int | None, seed: int, source: str = "posterior"
) -> PredictiveCheck:
    """Replicate the response of ``frame``'s rows from ``fit``'s draws and compare."""
    from .predict import predict_draws

    spec = fit.spec
    if spec.response not in frame.columns:
        raise HierlmError(f"the data has no response column {spec.response!r} to check against")
    # Replicates × rows are held at once: fewer replicates for very many rows.
    cap = max(20, _MAX_ELEMENTS // max(len(frame), 1))
    draws = cap if draws is None else min(draws, cap)
    pred = predict_draws(fit, frame, "response", "sample", seed, draws)
    y = frame[spec.response].to_numpy(np.float64)
    levels = [
        (name, columns)
        for tree in fit.design.trees
        for name, columns in zip(tree.level_names, tree.paths, strict=True)
    ]
    obs = statistics_of(y, frame, levels)
    rep = statistics_of(pred.draws, frame, levels)
    rows = {}
    for name, value in obs.items():
        r = rep[name]
        rows[name] = {
            "observed": float(value[0]),
            "mean": float(r.mean()),
            "5%": float(np.quantile(r, 0.05)),
            "95%": float(np.quantile(r, 0.95)),
            # Ties count half (the mid p-value): a count or 0/1 response ties its min and
            # max in almost every replicate, which is no evidence either way.
            "p_value": float(np.mean(r > value[0]) + 0.5 * np.mean(r == value[0])),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    return PredictiveCheck(y, pred.draws, table, source)


def frame_for(fit: Fit, data: Any) -> pd.DataFrame:
    """The rows a check runs on: ``data`` when given, else the rows the fit kept."""
    from .fit import KEEP_DATA_ROWS
    from .table import to_pandas

    if data is not None:
        return to_pandas(data)
    if fit.data is None:
        raise HierlmError(
            f"this fit did not keep its {fit.info.n_rows:,} rows (it keeps at most "
            f"{KEEP_DATA_ROWS:,}); pass the data again, e.g. fit.ppc(data=df)"
        )
    return fit.data
