"""Refuse population coefficients that the data cannot tell apart.

A constant predictor next to an intercept, or predictors that are exact linear combinations
of each other, leave some direction of the coefficients fixed by the prior alone: the fit
would look confident about numbers the data say nothing about. The check uses the summed
``XᵀX`` the statistics already hold, so it costs nothing per row.
"""

from __future__ import annotations

import numpy as np

from .design import FixedEncoding, Scaling
from .errors import DataError
from .suffstats import RawStats

__all__ = ["check_identifiable"]

# A correlation-matrix eigenvalue below this is an exact dependence (rounding leaves ~1e-16);
# real, strongly correlated predictors (r = 0.99999) stay above 1e-5.
_SINGULAR = 1e-10
# scaling_from takes a column as constant below this relative sd; the check agrees with it.
_CONSTANT = 1e-12


def check_identifiable(raw: RawStats, scaling: Scaling, encoding: FixedEncoding) -> None:
    """Refuse constant or perfectly collinear population predictors, naming the columns.

    Parameters
    ----------
    raw
        The statistics on the original scale (their summed ``XᵀX``).
    scaling
        The column means of X.
    encoding
        The column names, which columns have a population coefficient, and the intercept.

    Raises
    ------
    DataError
        When a predictor is constant (with an intercept) or zero in every row, or when some
        predictors are an exact linear combination of others.
    """
    names = encoding.coef_names
    population = [j for j in range(encoding.p) if encoding.in_population[j]]
    icpt = encoding.intercept
    centred = icpt is not None and encoding.in_population[icpt]
    columns = [j for j in population if j != icpt] if centred else population
    if not columns:
        return
    n = raw.n_rows
    mean = scaling.x_mean[columns]
    second = np.einsum("gij->ij", raw.xtx)[np.ix_(columns, columns)] / n
    gram = second - np.outer(mean, mean) if centred else second
    spread = np.sqrt(np.maximum(np.diag(gram), 0.0))
    for k, j in enumerate(columns):
        if spread[k] <= _CONSTANT * max(abs(mean[k]), 1.0):
            raise _constant(names[j], float(mean[k]), n, centred)
    corr = gram / np.outer(spread, spread)
    values, vectors = np.linalg.eigh(corr)
    if values[0] >= _SINGULAR:
        return
    weights = np.abs(vectors[:, 0])
    involved = [names[columns[k]] for k in np.flatnonzero(weights > 0.05 * weights.max())]
    listed = ", ".join(repr(c) for c in involved)
    rows = f" ({len(columns) + centred} coefficients from {n} rows)" if n <= len(columns) else ""
    raise DataError(
        f"the predictors {listed} are perfectly collinear{rows}: one is an exact linear "
        "combination of the others (plus the intercept), so the data cannot tell their "
        "coefficients apart. Remove one of them from the formula, or combine them into one "
        "column"
    )


def _constant(name: str, value: float, n: int, centred: bool) -> DataError:
    if not centred:
        return DataError(
            f"predictor {name!r} is 0 in every one of the {n} rows the model uses, so the data "
            "say nothing about its coefficient; remove it from the formula"
        )
    return DataError(
        f"predictor {name!r} is constant ({value:g}) in the {n} rows the model uses, so its "
        "coefficient cannot be told apart from the intercept; remove it from the formula "
        "(or drop the intercept with 0 + ... if it is meant to be one)"
    )
