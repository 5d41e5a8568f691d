"""Rows → Design and sufficient statistics, in chunks so memory stays bounded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .design import Design, FixedEncoding, build_encoding, level_coefs
from .errors import DataError
from .group_tree import build_group_tree
from .spec import ModelSpec
from .suffstats import RawStats, SuffStats, accumulate, scaling_from, standardize
from .table import NaPolicy, prepare_table

__all__ = ["Ingested", "ingest"]


@dataclass(frozen=True)
class Ingested:
    """The design, the statistics, and what happened to the rows."""

    design: Design
    stats: SuffStats
    raw: RawStats
    n_rows: int
    n_dropped: int
    dropped_by_column: dict[str, int]
    sum_log_response: float


def _needed_columns(spec: ModelSpec) -> list[str]:
    from formulaic import Formula

    variables: set[str] = set()
    for rhs in (spec.fixed, *spec.varying_terms):
        variables |= set(Formula(rhs).required_variables)
    return [spec.response, *sorted(variables - {spec.response}), *spec.group_columns]


def _categorical(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    # Full category sets up front, so formulaic encodes every chunk the same way.
    out = frame
    for col in columns:
        s = frame[col]
        if (
            isinstance(s.dtype, pd.CategoricalDtype)
            or pd.api.types.is_numeric_dtype(s)
            or pd.api.types.is_bool_dtype(s)
        ):
            continue
        if out is frame:
            out = frame.copy()
        out[col] = pd.Categorical(s.astype(str), categories=sorted(s.astype(str).unique()))
    return out


def ingest(
    spec: ModelSpec,
    data: Any,
    na: NaPolicy = "drop",
    chunk_rows: int = 250_000,
    on_rows: Callable[[int], None] | None = None,
) -> Ingested:
    """Validate the table, build the design and accumulate the statistics.

    Parameters
    ----------
    spec
        The parsed model.
    data
        pandas or polars table.
    na
        ``"drop"`` or ``"error"`` for rows with missing values.
    chunk_rows
        Rows encoded at a time.
    on_rows
        Called with the number of rows done after each chunk.
    """
    columns = _needed_columns(spec)
    table = prepare_table(data, columns, spec.response, spec.transform == "log", na)
    frame = _categorical(table.frame, [c for c in columns[1:] if c not in spec.group_columns])
    tree, leaf = build_group_tree(spec, frame)
    encoding = build_encoding(spec, frame.iloc[:chunk_rows])
    y_all = frame[spec.response].to_numpy(dtype=np.float64)
    if spec.transform == "log":
        y_all = np.log(y_all)
    n_leaves = tree.sizes[-1] if tree.sizes else 1

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for start in range(0, len(frame), chunk_rows):
            stop = start + chunk_rows
            yield encoding.encode(frame.iloc[start:stop]), y_all[start:stop], leaf[start:stop]

    raw = accumulate(chunks(), n_leaves, on_rows)
    scaling = scaling_from(raw, center_y=_population_intercept(encoding))
    if scaling.y_scale <= 0:
        raise DataError(
            f"response {spec.response!r} is constant ({y_all[0]!r}); there is nothing to model"
        )
    design = Design(spec, encoding, level_coefs(spec, encoding), tree, scaling)
    return Ingested(
        design=design,
        stats=standardize(raw, scaling),
        raw=raw,
        n_rows=len(frame),
        n_dropped=table.n_dropped,
        dropped_by_column=table.dropped_by_column,
        sum_log_response=float(y_all.sum()) if spec.transform == "log" else 0.0,
    )


def _population_intercept(encoding: FixedEncoding) -> bool:
    icpt = encoding.intercept
    return icpt is not None and encoding.in_population[icpt]
