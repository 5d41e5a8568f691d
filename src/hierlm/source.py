"""Tables that are not in memory: CSV and Parquet paths and globs, DuckDB databases with a
table or SQL query, and DuckDB relations, read through DuckDB.

A :class:`DuckSource` answers the questions the model asks of the whole table with SQL
(which columns, how many rows, which are missing, the distinct group paths and categories)
and hands the rows over in Arrow record batches, so memory stays bounded by the batch size
and the number of groups, not by the rows.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import DataError

__all__ = ["DuckSource", "is_source", "open_source", "require_columns"]

_DB_SUFFIXES = (".duckdb", ".db", ".ddb")


@dataclass
class DuckSource:
    """A DuckDB relation and the connection that owns it.

    Attributes
    ----------
    relation
        The rows (a table, a file scan or a query).
    description
        What the rows are, for messages (a path, or the SQL).
    counted
        Whether the row count is in the files' metadata (Parquet), so counting reads no rows.
    """

    relation: Any
    connection: Any
    description: str
    counted: bool = False

    @property
    def columns(self) -> list[str]:
        """Column names."""
        return [str(c) for c in self.relation.columns]

    def types(self) -> dict[str, str]:
        """DuckDB type of each column, e.g. ``{"price": "DOUBLE"}``."""
        return {
            str(c): str(t) for c, t in zip(self.relation.columns, self.relation.types, strict=True)
        }

    def check_columns(self, needed: list[str]) -> None:
        """Refuse a missing column by name, with the closest existing names."""
        require_columns(needed, self.columns, self.description)

    def query(self, sql: str) -> pd.DataFrame:
        """Run ``sql`` against the rows, which it names ``rows``."""
        try:
            return self.relation.query("rows", sql).df()
        except Exception as exc:  # DuckDB raises many types; each is a problem with the data
            raise DataError(f"cannot read {self.description}: {_first_line(exc)}") from None

    def row_count(self) -> int:
        """Number of rows (a scan unless :attr:`counted`)."""
        return int(self.query("SELECT count(*) AS n FROM rows")["n"].to_numpy()[0])

    def batches(self, columns: list[str], where: str, batch_rows: int) -> Iterator[pd.DataFrame]:
        """The rows that satisfy ``where``, ``columns`` only, ``batch_rows`` at a time."""
        select = ", ".join(quote(c) for c in columns)
        try:
            reader = self.relation.query(
                "rows", f"SELECT {select} FROM rows WHERE {where}"
            ).to_arrow_reader(batch_rows)
            for batch in reader:
                yield batch.to_pandas()
        except Exception as exc:  # a value that does not fit the column's type, mid-file
            raise DataError(f"cannot read {self.description}: {_first_line(exc)}") from None


def require_columns(needed: list[str], have: list[str], description: str) -> None:
    """Refuse the first of ``needed`` missing from ``have`` by name, with the closest
    existing names."""
    for col in needed:
        if col not in have:
            close = difflib.get_close_matches(col, have, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise DataError(
                f"column {col!r} is not in the data ({description}; it has: "
                f"{', '.join(have[:20])}){hint}"
            )


def quote(name: str) -> str:
    """A column name quoted for SQL."""
    return '"' + name.replace('"', '""') + '"'


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def is_source(data: Any) -> bool:
    """Whether ``data`` is read through DuckDB (a path, a glob or a relation)."""
    if isinstance(data, str | Path):
        return True
    return type(data).__module__.startswith("duckdb") or type(data).__name__ == "DuckDBPyRelation"


def open_source(data: Any, sql: str | None = None, table: str | None = None) -> DuckSource:
    """Open a path, glob, DuckDB database (with ``sql`` or ``table``) or relation."""
    import duckdb

    if not isinstance(data, str | Path):
        return DuckSource(data, None, "the DuckDB relation")
    text = str(data)
    suffix = "".join(Path(text).suffixes).lower()
    counted = False
    try:
        if suffix.endswith(_DB_SUFFIXES):
            if not Path(text).exists():
                raise DataError(f"no DuckDB database at {text}")
            if (sql is None) == (table is None):
                raise DataError(
                    f"{text} is a DuckDB database: name a table (--table NAME) or give a "
                    'query (--sql "select ... from ..."), one of the two'
                )
            connection = duckdb.connect(text, read_only=True)
            relation = connection.sql(sql) if sql is not None else connection.table(str(table))
            what = (
                f"the query {sql!r} on {text}" if sql is not None else f"table {table!r} of {text}"
            )
        else:
            if sql is not None or table is not None:
                raise DataError("--sql and --table apply to a DuckDB database file")
            if not any(ch in text for ch in "*?[") and not Path(text).exists():
                raise DataError(f"no data file at {text}")
            connection = duckdb.connect()
            if suffix.endswith((".parquet", ".pq")):
                relation = connection.read_parquet(text)
                counted = True
            elif suffix.endswith((".csv", ".csv.gz", ".txt", ".tsv", ".tsv.gz")):
                relation = connection.read_csv(
                    text,
                    na_values=["", "NA", "N/A", "NaN", "nan", "NULL", "null"],
                    sep="\t" if ".tsv" in suffix else None,
                )
            else:
                raise DataError(
                    f"cannot tell the format of {text}; use .csv, .tsv, .parquet (globs such as "
                    "data/*.parquet work) or a DuckDB database (.duckdb) with a table or query"
                )
            what = text
        relation.columns  # noqa: B018 -- opens the file now, so a bad path fails here
    except DataError:
        raise
    except Exception as exc:  # missing files, bad globs, SQL errors
        raise DataError(f"cannot read {text}: {_first_line(exc)}") from None
    return DuckSource(relation, connection, what, counted=counted)
