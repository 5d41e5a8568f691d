"""Input tables: accept pandas or polars, check columns, drop or refuse missing rows."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from .errors import DataError

__all__ = [
    "CleanTable",
    "NaPolicy",
    "check_family",
    "missing_values_error",
    "prepare_table",
    "to_pandas",
]

NaPolicy = Literal["drop", "error"]


@dataclass(frozen=True)
class CleanTable:
    """The rows a model uses, with how many were dropped for missing values."""

    frame: pd.DataFrame
    n_dropped: int
    dropped_by_column: dict[str, int]
    dropped_groups: dict[str, int]
    """Per level, the number of groups that lost rows."""


def to_pandas(data: Any) -> pd.DataFrame:
    """A pandas view of a pandas or polars table (a dict of columns also works)."""
    if isinstance(data, pd.DataFrame):
        return data
    module = type(data).__module__
    if module.startswith("polars"):
        return data.to_pandas()
    if isinstance(data, dict):
        return pd.DataFrame(data)
    raise DataError(
        f"data must be a pandas or polars DataFrame, got {type(data).__name__}; "
        "read files with pandas.read_csv / polars.read_parquet first, or pass a path to the CLI"
    )


def missing_values_error(n_rows: int, by_column: dict[str, int]) -> DataError:
    """The refusal of rows with missing values under ``na="error"``, naming the column
    with the most."""
    worst = max(by_column, key=lambda c: by_column[c])
    return DataError(
        f"{n_rows} rows have missing values (column {worst!r}: {by_column[worst]}); "
        "drop or impute them, or use na='drop' (--na drop) to drop them"
    )


def prepare_table(
    data: Any,
    columns: list[str],
    response: str,
    log_response: bool,
    na: NaPolicy = "drop",
    levels: tuple[tuple[str, ...], ...] = (),
) -> CleanTable:
    """Select the needed columns, validate them, and handle missing values.

    Parameters
    ----------
    data
        pandas or polars table.
    columns
        Every column the model reads (response, predictors, grouping columns).
    response
        The response column; it must be numeric and finite, and positive when logged.
    log_response
        Whether the model uses ``log(response)``.
    na
        ``"drop"`` drops rows with a missing value in a needed column and counts them, per
        column and per level (the groups that lost rows); ``"error"`` refuses them.
        Infinite values are not missing values: they are refused under either policy.
    levels
        The grouping columns of every level (each level's path), for counting the groups
        that lost rows.
    """
    frame = to_pandas(data)
    for column in columns:
        if column not in frame.columns:
            raise _missing_column(column, frame)
    needed = list(dict.fromkeys(columns))
    twice = [c for c in needed if int((frame.columns == c).sum()) > 1]
    if twice:
        raise DataError(
            f"the data has {int((frame.columns == twice[0]).sum())} columns named {twice[0]!r}, "
            "so the formula cannot say which one it means; rename or drop the copies"
        )
    if len(frame) == 0:
        raise DataError("the data has no rows; check the file, the query or the filter")
    frame = frame.loc[:, needed]
    y = frame[response]
    if not (pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)):
        example = y.dropna().iloc[0] if y.notna().any() else None
        raise DataError(
            f"response {response!r} must be numeric, but it has dtype {y.dtype} (e.g. {example!r}); "
            "convert it to numbers first"
        )
    na_mask = frame.isna()
    by_column = {str(c): int(n) for c, n in na_mask.sum().items() if n}
    rows = na_mask.any(axis=1).to_numpy()
    n_dropped = int(rows.sum())
    dropped_groups: dict[str, int] = {}
    if n_dropped:
        if na == "error":
            raise missing_values_error(n_dropped, by_column)
        dropped_groups = _groups_losing_rows(frame.loc[rows], levels)
        frame = frame.loc[~rows]
    if len(frame) == 0:
        counts = ", ".join(f"{c}: {n}" for c, n in by_column.items())
        raise DataError(
            f"no rows are left after dropping rows with missing values: every one of the "
            f"{n_dropped} rows misses a value the model reads ({counts}); fill them in, or "
            "drop the columns with the most missing values from the formula"
        )
    _refuse_infinite(frame, response)
    yv = frame[response].to_numpy(dtype=np.float64)
    if log_response and (yv <= 0).any():
        n_bad = int((yv <= 0).sum())
        raise DataError(
            f"response {response!r} has {n_bad} values <= 0 (e.g. {yv[yv <= 0][0]:g}), so log({response}) "
            "is undefined (both log(y) ~ ... and family='lognormal' take it); remove them, shift "
            "the response, or fit it without log"
        )
    return CleanTable(frame.reset_index(drop=True), n_dropped, by_column, dropped_groups)


def _missing_column(name: str, frame: pd.DataFrame) -> DataError:
    """The error for a column the data lacks, with the closest name it has."""
    have = [str(c) for c in frame.columns]
    same_case = [c for c in have if c.lower() == name.lower()]
    close = same_case or difflib.get_close_matches(name, have, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    listing = ", ".join(have[:20]) + (f", ... ({len(have)} columns)" if len(have) > 20 else "")
    return DataError(f"column {name!r} is not in the data{hint} the data has: {listing}")


def _groups_losing_rows(rows: pd.DataFrame, levels: tuple[tuple[str, ...], ...]) -> dict[str, int]:
    """Per level, how many groups the dropped ``rows`` belonged to (where their path is known)."""
    from .group_tree import path_labels

    out = {}
    for path in levels:
        known = rows.loc[:, list(path)].dropna()
        if len(known):
            out[path[-1]] = int(path_labels(known, path).nunique())
    return out


def _refuse_infinite(frame: pd.DataFrame, response: str) -> None:
    """Refuse infinite values in any numeric column, naming the column and a row."""
    for column in frame.columns:
        s = frame[column]
        if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            continue
        values = s.to_numpy(dtype=np.float64)
        bad = np.isinf(values)
        if bad.any():
            role = "response" if column == response else "column"
            raise DataError(
                f"{role} {column!r} has {int(bad.sum())} infinite values (e.g. row "
                f"{frame.index[int(np.argmax(bad))]}: {float(values[bad][0])}); infinite values are not missing "
                "values, so they are not dropped: remove those rows, or set them to NaN to "
                "have them dropped"
            )


def _numeric(frame: pd.DataFrame, column: str, role: str) -> np.ndarray:
    s = frame[column]
    if not (pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)):
        raise DataError(
            f"{role} {column!r} must be numeric, but it has dtype {s.dtype}; convert it first"
        )
    values = s.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{role} {column!r} has infinite values; remove those rows")
    return values


def _first_bad(values: np.ndarray, bad: np.ndarray) -> str:
    return f"{int(bad.sum())} rows (e.g. row {int(np.argmax(bad))}: {values[bad][0]!r})"


def check_family(
    frame: pd.DataFrame,
    family: str,
    response: str,
    trials: str | None = None,
    offset: str | None = None,
    se: str | None = None,
) -> None:
    """Refuse responses a family cannot model, naming the column, rows and the fix.

    Bernoulli needs 0/1; binomial whole numbers between 0 and the row's trials (whole
    numbers >= 1); Poisson whole numbers >= 0. An offset must be finite, and known standard
    errors finite and > 0.
    """
    y = frame[response].to_numpy(dtype=np.float64)
    whole = np.floor(y) == y
    if family == "bernoulli":
        bad = (y != 0) & (y != 1)
        if bad.any():
            raise DataError(
                f"response {response!r} must be 0 or 1 for family='bernoulli', but "
                f"{_first_bad(y, bad)} are not; recode it (e.g. y > threshold), or use "
                "family='binomial' with trials for counts"
            )
    elif family == "binomial":
        assert trials is not None
        n = _numeric(frame, trials, "trials column")
        bad_n = (n < 1) | (np.floor(n) != n)
        if bad_n.any():
            raise DataError(
                f"trials column {trials!r} must hold whole numbers >= 1, but "
                f"{_first_bad(n, bad_n)} do not; remove those rows"
            )
        bad = (y < 0) | ~whole
        if bad.any():
            raise DataError(
                f"response {response!r} must be a whole number of successes >= 0 for "
                f"family='binomial', but {_first_bad(y, bad)} are not"
            )
        over = y > n
        if over.any():
            i = int(np.argmax(over))
            raise DataError(
                f"response {response!r} exceeds its trials {trials!r} in {int(over.sum())} rows "
                f"(e.g. row {i}: {y[i]:g} successes of {n[i]:g} trials); the successes "
                "cannot exceed the trials, so check the two columns"
            )
    elif family == "poisson":
        bad = (y < 0) | ~whole
        if bad.any():
            raise DataError(
                f"response {response!r} must be a count (a whole number >= 0) for "
                f"family='poisson', but {_first_bad(y, bad)} are not; for a continuous "
                "positive response use family='lognormal'"
            )
    if offset is not None:
        _numeric(frame, offset, "offset column")
    if se is not None:
        values = _numeric(frame, se, "standard-error column")
        bad = values <= 0
        if bad.any():
            raise DataError(
                f"standard-error column {se!r} must be > 0, but {_first_bad(values, bad)} are not; "
                "a known standard error of 0 would make that row exact. Remove those rows or "
                "correct the values"
            )
