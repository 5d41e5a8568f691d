"""Rows → Design and sufficient statistics from a Dask DataFrame, on the cluster's workers.

The whole-table questions (missing values by column, response checks, the distinct group
paths, the categories of text predictors) are Dask aggregations. The design is then fixed
on the client, and every partition is reduced on its worker to per-leaf sums
(:class:`hierlm.suffstats.RawStats`, each around its own mean of y), which are merged in a
tree. Only the sums travel: the rows never leave the workers.

The computations run on Dask's current scheduler: a ``distributed.Client`` when one is
active (``hierlm fit --dask ADDRESS`` connects one), threads otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .design import FixedEncoding, build_encoding
from .errors import DataError, HierlmError
from .group_tree import GroupTree, build_group_tree
from .ingest import Ingested, _needed_columns
from .source import require_columns
from .spec import ModelSpec
from .stream import encode_batch, ingested_from_sums
from .suffstats import RawStats, accumulate
from .table import NaPolicy, missing_values_error

__all__ = ["count_dask_rows", "ingest_dask", "is_dask"]

# Partial sums merged per task of the reduction tree.
_FAN_IN = 8
_CHUNK_ROWS = 250_000


def is_dask(data: Any) -> bool:
    """Whether ``data`` is a Dask DataFrame."""
    return type(data).__module__.startswith("dask") and hasattr(data, "to_delayed")


def count_dask_rows(frame: Any, spec: ModelSpec) -> tuple[int, int, dict[str, int]]:
    """Rows in all, rows with a missing needed value, and those per column."""
    columns = _needed_columns(spec)
    require_columns(columns, [str(c) for c in frame.columns], "the Dask DataFrame")
    needed = frame[columns]
    missing = needed.isna()
    total, per_column, dropped = _compute(
        needed.map_partitions(len).sum(), missing.sum(), missing.any(axis=1).sum()
    )
    by_column = {str(c): int(n) for c, n in per_column.items() if n}
    return int(total), int(dropped), by_column


def ingest_dask(
    spec: ModelSpec,
    frame: Any,
    na: NaPolicy = "drop",
    counts: tuple[int, int, dict[str, int]] | None = None,
) -> Ingested:
    """Validate the frame, build the design from Dask aggregations and reduce the
    statistics over its partitions (collapsible models without ``se()``).

    Parameters
    ----------
    spec
        The parsed model.
    frame
        A Dask DataFrame.
    na
        ``"drop"`` or ``"error"`` for rows with missing values.
    counts
        :func:`count_dask_rows`'s answer when the caller has it.

    Notes
    -----
    Each partition's sums are taken around its own mean of y and merged with
    :meth:`RawStats.__add__` (the parallel-variance update), so a response with a large
    offset loses no digits however the rows are split.
    """
    import dask

    columns = _needed_columns(spec)
    total, dropped, by_column = counts or count_dask_rows(frame, spec)
    if dropped and na == "error":
        raise missing_values_error(dropped, by_column)
    if total == 0:
        raise DataError("the Dask DataFrame has no rows; check the files or the filter")
    if total - dropped == 0:
        raise DataError("no rows are left after dropping rows with missing values")
    complete = frame[columns].dropna()
    y = complete[spec.response]
    if not (pd.api.types.is_numeric_dtype(y.dtype) and not pd.api.types.is_bool_dtype(y.dtype)):
        raise DataError(
            f"response {spec.response!r} must be numeric, but it has dtype {y.dtype}; "
            "convert it to numbers first"
        )
    groups = spec.levels[-1].path if spec.levels else ()
    text = [
        c
        for c in columns[1:]
        if c not in spec.all_group_columns
        and not pd.api.types.is_numeric_dtype(complete[c].dtype)
        and not pd.api.types.is_bool_dtype(complete[c].dtype)
    ]
    infinite, nonpositive, paths, *cats = _compute(
        y.map_partitions(lambda s: int(np.isinf(s.to_numpy(np.float64)).sum())).sum(),
        (y <= 0).sum(),
        complete[list(groups)].drop_duplicates() if groups else complete.head(1, compute=False),
        *(complete[c].astype(str).unique() for c in text),
    )
    if int(infinite):
        raise DataError(
            f"response {spec.response!r} has {int(infinite)} infinite values; remove those rows"
        )
    if spec.transform == "log" and int(nonpositive):
        raise DataError(
            f"response {spec.response!r} has {int(nonpositive)} values <= 0, so "
            f"log({spec.response}) is undefined; remove them, shift the response, or fit it "
            "without log"
        )
    tree, _ = build_group_tree(spec, paths)
    categories = {
        c: sorted(pd.Series(v).astype(str).unique()) for c, v in zip(text, cats, strict=True)
    }
    (head,) = _compute(complete.head(1_000, npartitions=-1, compute=False))
    first = _categorized(head, categories)
    encoding = build_encoding(spec, first)
    work = _Work(spec, tree, encoding, categories, tree.sizes[-1] if tree.sizes else 1)
    shared = dask.delayed(work, pure=True)
    sums = [dask.delayed(_partition_sums)(part, shared) for part in complete.to_delayed()]
    while len(sums) > 1:
        sums = [dask.delayed(_merge)(*sums[i : i + _FAN_IN]) for i in range(0, len(sums), _FAN_IN)]
    (reduced,) = _compute(sums[0])
    if reduced is None:
        raise DataError("no rows are left after dropping rows with missing values")
    raw, log_sum = reduced
    return ingested_from_sums(spec, encoding, tree, raw, dropped, by_column, log_sum)


def _compute(*collections: Any) -> tuple[Any, ...]:
    """``dask.compute``, with a failure while reading the rows (a value that does not fit
    its column's type, a file that changed, a lost worker) as a DataError."""
    import dask

    try:
        return dask.compute(*collections)
    except HierlmError:
        raise
    except Exception as exc:  # raised by the readers and workers, of many types
        # Dask's own messages name the column and the fix over several lines: keep them.
        text = str(exc).strip()[:1000] or type(exc).__name__
        raise DataError(f"cannot read the Dask DataFrame: {text}") from None


@dataclass(frozen=True)
class _Work:
    """What a worker needs to reduce a partition (sent once per worker)."""

    spec: ModelSpec
    tree: GroupTree
    encoding: FixedEncoding
    categories: dict[str, list[str]]
    n_leaves: int


def _categorized(frame: pd.DataFrame, categories: dict[str, list[str]]) -> pd.DataFrame:
    out = frame.copy()
    for col, cats in categories.items():
        out[col] = pd.Categorical(out[col].astype(str), categories=cats)
    return out


def _partition_sums(part: pd.DataFrame, work: _Work) -> tuple[RawStats, float] | None:
    """Per-leaf sums of one partition's complete rows (None when it has none)."""
    if not len(part):
        return None
    log_sum = 0.0

    def chunks():
        nonlocal log_sum
        for start in range(0, len(part), _CHUNK_ROWS):
            batch = _categorized(part.iloc[start : start + _CHUNK_ROWS], work.categories)
            x, y, leaf = encode_batch(batch, work.spec, work.tree, work.encoding, "a partition")
            if work.spec.transform == "log":
                log_sum += float(y.sum())
            yield x, y, leaf

    raw = accumulate(chunks(), work.n_leaves)
    return raw, log_sum


def _merge(*parts: tuple[RawStats, float] | None) -> tuple[RawStats, float] | None:
    present = [p for p in parts if p is not None]
    if not present:
        return None
    raw, log_sum = present[0]
    for other, other_log in present[1:]:
        raw = raw + other
        log_sum += other_log
    return raw, log_sum


def connect(address: str) -> Any:
    """A ``distributed.Client`` for the scheduler at ``address`` (it becomes Dask's current
    scheduler until closed)."""
    try:
        import distributed
    except ImportError:
        raise DataError(
            "--dask needs Dask's distributed scheduler; install it with pip install 'hierlm[dask]'"
        ) from None
    try:
        return distributed.Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise DataError(
            f"cannot connect to the Dask scheduler at {address} ({exc}); check the address, "
            "or start a cluster with `dask scheduler` and `dask worker`"
        ) from None


def read_dask(path: str) -> Any:
    """A CSV, TSV or Parquet path or glob as a Dask DataFrame (the workers read the files,
    so they must see the same paths)."""
    import dask.dataframe as dd

    suffix = path.lower()
    try:
        if suffix.endswith((".parquet", ".pq")) or suffix.endswith("/"):
            return dd.read_parquet(path)
        if suffix.endswith((".csv", ".csv.gz", ".txt")):
            return dd.read_csv(path)
        if suffix.endswith((".tsv", ".tsv.gz")):
            return dd.read_csv(path, sep="\t")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} with Dask: {exc}") from None
    raise DataError(f"cannot tell the format of {path}; use .csv, .tsv or .parquet files")
