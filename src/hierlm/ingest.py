"""Rows → Design and sufficient statistics, in chunks so memory stays bounded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from .design import Design, FixedEncoding, Scaling, build_encoding, level_coefs
from .errors import DataError, FormulaError
from .formula_guard import required_columns
from .group_tree import build_group_tree
from .identifiable import check_identifiable
from .spec import ModelSpec
from .suffstats import (
    RawStats,
    SuffStats,
    accumulate,
    scaling_from,
    standardize,
    weighted_stats,
)
from .table import NaPolicy, check_family, prepare_table

__all__ = ["Ingested", "Rows", "ingest"]


@dataclass(frozen=True)
class Rows:
    """Row-level data for the full-latent engine, on the model's scale.

    Attributes
    ----------
    x
        The design, columns divided by their sds (n, p).
    y
        The response: standardised for families with a residual sd, as observed otherwise.
    leaf
        Each row's leaf node.
    trials
        Binomial trials (ones for other families).
    offset
        Added to the linear predictor (zeros without an offset).
    se
        Known standard errors of y on the model's scale (zeros without ``se()``).
    crossed_leaf
        Each row's leaf node in every crossed chain.
    """

    x: np.ndarray
    y: np.ndarray
    leaf: np.ndarray
    trials: np.ndarray
    offset: np.ndarray
    se: np.ndarray
    crossed_leaf: tuple[np.ndarray, ...] = ()


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
    dropped_groups: dict[str, int] = field(default_factory=dict)
    """Per level, the number of groups that lost rows to missing values."""
    rows: Rows | None = None
    log_weight: float = 0.0
    frame: pd.DataFrame | None = None
    """The cleaned table (the columns the model reads), when small enough to keep."""


def _needed_columns(spec: ModelSpec) -> list[str]:
    variables: set[str] = set()
    for rhs in (spec.fixed, *spec.varying_terms):
        try:
            variables |= required_columns(rhs)
        except Exception as exc:  # formulaic raises several types for a term it cannot read
            raise FormulaError(f"cannot read the term {rhs!r}: {exc}", spec.formula) from None
    if spec.response in variables:
        raise FormulaError(
            f"the response {spec.response!r} also appears on the right of '~', where it would "
            "predict itself exactly; remove it from the terms",
            spec.formula,
        )
    extra = [c for c in (spec.trials, spec.offset, spec.se) if c is not None]
    groups = spec.all_group_columns
    predictors = sorted(variables - {spec.response} - set(extra) - set(groups))
    return [spec.response, *predictors, *extra, *groups]


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
    keep_rows: bool = False,
    keep_frame_rows: int = 1_000_000,
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
    keep_rows
        Also keep the rows themselves (:class:`Rows`), which the full-latent engine needs.
    keep_frame_rows
        Keep the cleaned table (``Ingested.frame``, for checks and refits) when it has at
        most this many rows.
    """
    columns = _needed_columns(spec)
    paths = tuple(level.path for level in spec.all_levels)
    table = prepare_table(data, columns, spec.response, spec.transform == "log", na, paths)
    check_family(table.frame, spec.family, spec.response, spec.trials, spec.offset, spec.se)
    extra = {spec.trials, spec.offset, spec.se, *spec.all_group_columns}
    frame = _categorical(table.frame, [c for c in columns[1:] if c not in extra])
    tree, leaf = build_group_tree(spec, frame)
    crossed = [build_group_tree(spec, frame, chain) for chain in spec.crossed]
    encoding = build_encoding(spec, frame.iloc[:chunk_rows])
    y_all = frame[spec.response].to_numpy(dtype=np.float64)
    if spec.transform == "log":
        y_all = np.log(y_all)
    n_leaves = tree.sizes[-1] if tree.sizes else 1

    kept: list[np.ndarray] = []

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for start in range(0, len(frame), chunk_rows):
            stop = start + chunk_rows
            x = encoding.encode(frame.iloc[start:stop])
            if keep_rows or spec.se is not None:
                kept.append(x)
            yield x, y_all[start:stop], leaf[start:stop]

    raw = accumulate(chunks(), n_leaves, on_rows)
    scaling = scaling_from(raw, center_y=_population_intercept(encoding))
    check_identifiable(raw, scaling, encoding)
    if spec.link_scale:
        scaling = _link_scaling(spec, frame, scaling)
    elif scaling.y_scale <= 0:
        raise DataError(
            f"response {spec.response!r} is constant ({y_all[0]:g}); there is nothing to model"
        )
    design = Design(
        spec,
        encoding,
        level_coefs(spec, encoding),
        tree,
        scaling,
        tuple(t for t, _ in crossed),
    )
    n = len(frame)
    x_std = np.concatenate(kept) / scaling.x_scale if kept else np.zeros((0, encoding.p))
    y_std = (y_all - scaling.y_shift) / scaling.y_scale
    if spec.se is None:
        se = np.zeros(n)
        stats = standardize(raw, scaling)
        log_weight = 0.0
    else:
        se = frame[spec.se].to_numpy(np.float64) / scaling.y_scale
        weight = 1.0 / se**2
        stats = weighted_stats(x_std, y_std, weight, leaf, n_leaves)
        log_weight = 0.5 * float(np.log(weight).sum())
    rows = None
    if keep_rows:
        rows = Rows(
            x=x_std,
            y=y_std,
            leaf=leaf.astype(np.int32),
            trials=frame[spec.trials].to_numpy(np.float64) if spec.trials else np.ones(n),
            offset=frame[spec.offset].to_numpy(np.float64) if spec.offset else np.zeros(n),
            se=se,
            crossed_leaf=tuple(ids.astype(np.int32) for _, ids in crossed),
        )
    return Ingested(
        design=design,
        stats=stats,
        raw=raw,
        n_rows=len(frame),
        n_dropped=table.n_dropped,
        dropped_by_column=table.dropped_by_column,
        dropped_groups=table.dropped_groups,
        sum_log_response=float(y_all.sum()) if spec.transform == "log" else 0.0,
        rows=rows,
        log_weight=log_weight,
        frame=table.frame if len(table.frame) <= keep_frame_rows else None,
    )


def _link_scaling(spec: ModelSpec, frame: pd.DataFrame, scaling: Scaling) -> Scaling:
    """Link-scale families keep y as observed; ``y_mean`` becomes the link of the mean
    response, the centre of the default intercept prior (clipped away from 0 and 1)."""
    y = frame[spec.response].to_numpy(np.float64)
    if spec.family == "poisson":
        rate = y.sum()
        if spec.offset is not None:
            rate = rate / np.exp(frame[spec.offset].to_numpy(np.float64)).sum()
        else:
            rate = rate / len(y)
        centre = float(np.log(max(rate, 0.5 / len(y))))
    else:
        n = frame[spec.trials].to_numpy(np.float64) if spec.trials else np.ones(len(y))
        share = float(np.clip(y.sum() / n.sum(), 0.5 / n.sum(), 1 - 0.5 / n.sum()))
        centre = float(np.log(share / (1 - share)))
    return replace(scaling, y_mean=centre, y_shift=0.0, y_scale=1.0)


def _population_intercept(encoding: FixedEncoding) -> bool:
    icpt = encoding.intercept
    return icpt is not None and encoding.in_population[icpt]
