"""Rows → Design and sufficient statistics from a DuckDB source, batch by batch.

The whole-table questions are SQL: which rows miss a value (the NA policy), whether the
response is usable, the distinct group paths (so node ids are fixed before any row is
read) and the categories of text predictors. The rows then flow in record batches through
the same encoding as in memory into the summed statistics; memory is bounded by the batch
size and the number of groups.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from .design import Design, FixedEncoding, build_encoding, level_coefs
from .errors import DataError
from .group_tree import GroupTree, build_group_tree
from .identifiable import check_identifiable
from .ingest import Ingested, _needed_columns, _population_intercept
from .source import DuckSource, quote
from .spec import ModelSpec
from .suffstats import RawStats, accumulate, scaling_from, standardize
from .table import NaPolicy, missing_values_error

__all__ = ["count_rows", "encode_batch", "ingest_source", "ingested_from_sums"]

_NUMERIC = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
)


def _is_numeric(duck_type: str) -> bool:
    return duck_type.upper().startswith(_NUMERIC)


def _missing(column: str, duck_type: str) -> str:
    """SQL for "this row's value is missing": NULL, or NaN in a floating column."""
    q = quote(column)
    if duck_type.upper() in ("FLOAT", "DOUBLE"):
        return f"({q} IS NULL OR isnan({q}))"
    return f"({q} IS NULL)"


def count_rows(source: DuckSource, spec: ModelSpec) -> tuple[int, int, dict[str, int], str]:
    """Rows in all, rows with a missing needed value, those per column, and the SQL
    condition of the complete rows."""
    columns = _needed_columns(spec)
    source.check_columns(columns)
    types = source.types()
    conds = {c: _missing(c, types[c]) for c in columns}
    parts = ", ".join(f"count(*) FILTER (WHERE {m}) AS m{i}" for i, m in enumerate(conds.values()))
    anyone = " OR ".join(conds.values())
    row = source.query(
        f"SELECT count(*) AS n, count(*) FILTER (WHERE {anyone}) AS dropped, {parts} FROM rows"
    ).iloc[0]
    by_column = {c: int(row[f"m{i}"]) for i, c in enumerate(conds) if int(row[f"m{i}"])}
    complete = " AND ".join(f"NOT {m}" for m in conds.values())
    return int(row["n"]), int(row["dropped"]), by_column, complete


def ingest_source(
    spec: ModelSpec,
    source: DuckSource,
    na: NaPolicy = "drop",
    batch_rows: int = 500_000,
    counts: tuple[int, int, dict[str, int], str] | None = None,
) -> Ingested:
    """Validate the source, build the design from SQL summaries and accumulate the
    statistics over record batches (collapsible models without ``se()``). ``counts`` is
    :func:`count_rows`'s answer when the caller has it (a full scan of the source)."""
    columns = _needed_columns(spec)
    total, dropped, by_column, complete = counts or count_rows(source, spec)
    if dropped and na == "error":
        raise missing_values_error(dropped, by_column)
    if total == 0:
        raise DataError(
            f"{source.description} has no rows; check the file, the query or the filter"
        )
    if total - dropped == 0:
        raise DataError("no rows are left after dropping rows with missing values")
    types = source.types()
    _check_response(source, spec, types[spec.response], complete)
    tree, _ = build_group_tree(spec, _distinct(source, spec.levels[-1].path, complete))
    text = [
        c
        for c in columns[1:]
        if c not in spec.all_group_columns and not _is_numeric(types[c]) and types[c] != "BOOLEAN"
    ]
    categories = {c: _categories(source, c, complete) for c in text}

    def batches() -> Iterator[pd.DataFrame]:
        for batch in source.batches(columns, complete, batch_rows):
            for col, cats in categories.items():
                batch[col] = pd.Categorical(batch[col].astype(str), categories=cats)
            yield batch

    stream = batches()
    first = next(stream)
    encoding = build_encoding(spec, first)
    log_sum = [0.0]

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for batch in _chain(first, stream):
            x, y, leaf = encode_batch(batch, spec, tree, encoding, source.description)
            if spec.transform == "log":
                log_sum[0] += float(y.sum())
            yield x, y, leaf

    n_leaves = tree.sizes[-1] if tree.sizes else 1
    raw = accumulate(chunks(), n_leaves)
    return ingested_from_sums(spec, encoding, tree, raw, dropped, by_column, log_sum[0])


def ingested_from_sums(
    spec: ModelSpec,
    encoding: FixedEncoding,
    tree: GroupTree,
    raw: RawStats,
    n_dropped: int,
    dropped_by_column: dict[str, int],
    sum_log_response: float,
) -> Ingested:
    """The design and standardised statistics from per-leaf sums accumulated out of core
    (DuckDB batches, Dask partitions), after the checks that need the whole table."""
    scaling = scaling_from(raw, center_y=_population_intercept(encoding))
    check_identifiable(raw, scaling, encoding)
    if scaling.y_scale <= 0:
        raise DataError(f"response {spec.response!r} is constant; there is nothing to model")
    design = Design(spec, encoding, level_coefs(spec, encoding), tree, scaling, ())
    return Ingested(
        design=design,
        stats=standardize(raw, scaling),
        raw=raw,
        n_rows=int(raw.n.sum()),
        n_dropped=n_dropped,
        dropped_by_column=dropped_by_column,
        sum_log_response=sum_log_response,
    )


def encode_batch(
    batch: pd.DataFrame, spec: ModelSpec, tree: GroupTree, encoding: FixedEncoding, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch of complete rows (text predictors already categorical with every
    category) as ``(X, y, leaf)``, y on the model's scale (logged for ``log(y)``)."""
    leaf = tree.leaf_ids(batch)
    if (leaf < 0).any():
        raise DataError(
            f"{int((leaf < 0).sum())} rows of {what} have a group path that the distinct-path "
            "pass did not see; the source changed while it was read"
        )
    y = batch[spec.response].to_numpy(dtype=np.float64)
    if spec.transform == "log":
        y = np.log(y)
    return encoding.encode(batch), y, leaf


def _chain(first: pd.DataFrame, rest: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    yield first
    yield from rest


def _check_response(source: DuckSource, spec: ModelSpec, duck_type: str, complete: str) -> None:
    y = quote(spec.response)
    if not _is_numeric(duck_type):
        raise DataError(
            f"response {spec.response!r} must be numeric, but {source.description} stores it "
            f"as {duck_type}; convert it to numbers first"
        )
    checks = [f"count(*) FILTER (WHERE isinf({y}::DOUBLE)) AS inf"]
    checks.append(f"count(*) FILTER (WHERE {y} <= 0) AS nonpositive")
    row = source.query(f"SELECT {', '.join(checks)} FROM rows WHERE {complete}").iloc[0]
    if int(row["inf"]):
        raise DataError(
            f"response {spec.response!r} has {int(row['inf'])} infinite values; remove those rows"
        )
    if spec.transform == "log" and int(row["nonpositive"]):
        raise DataError(
            f"response {spec.response!r} has {int(row['nonpositive'])} values <= 0, so "
            f"log({spec.response}) is undefined; remove them, shift the response, or fit it "
            "without log"
        )


def _distinct(source: DuckSource, columns: tuple[str, ...], complete: str) -> pd.DataFrame:
    select = ", ".join(quote(c) for c in columns)
    return source.query(f"SELECT DISTINCT {select} FROM rows WHERE {complete}")


def _categories(source: DuckSource, column: str, complete: str) -> list[str]:
    values = source.query(f"SELECT DISTINCT {quote(column)} AS v FROM rows WHERE {complete}")
    return sorted(values["v"].astype(str).unique())
