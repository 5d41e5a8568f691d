"""Reading through DuckDB: files, globs, databases with SQL, relations; streamed statistics
equal the in-memory ones; missing values and bad files get clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.source import open_source
from hierlm.stream import ingest_source
from same_stats import assert_matches_two_pass, assert_same_stats, large_offset_frame

FORMULA = "log_radon ~ floor + log_uranium + (1 + floor | state/county)"


def test_streamed_parquet_glob_equals_in_memory(radon_all, tmp_path, out_of_core):
    for i, rows in enumerate(np.array_split(np.arange(len(radon_all)), 3)):
        radon_all.iloc[rows].to_parquet(tmp_path / f"part{i}.parquet")
    streamed = hl.Model(FORMULA, str(tmp_path / "*.parquet"))
    assert streamed.data.frame is None  # streamed: no rows kept
    memory = hl.Model(FORMULA, radon_all)
    assert_same_stats(streamed.data, memory.data)
    assert streamed.data.n_rows == memory.data.n_rows
    # The same rows are dropped for missing values (R5 has no uranium), and counted.
    assert streamed.data.dropped_by_column == memory.data.dropped_by_column == {"log_uranium": 200}
    # Repeated county names are still separate groups, found by the distinct-path pass.
    assert {"MN/WASHINGTON", "PA/WASHINGTON"} <= set(streamed.data.design.tree.labels[1])


def test_small_batches_give_the_same_statistics(radon_all, tmp_path):
    path = tmp_path / "radon.parquet"
    radon_all.to_parquet(path)
    spec = hl.Model(FORMULA, radon_all).spec
    one = ingest_source(spec, open_source(str(path)), batch_rows=1_000_000)
    many = ingest_source(spec, open_source(str(path)), batch_rows=997)
    for name in ("n", "xtx", "xty", "yty"):
        np.testing.assert_allclose(getattr(one.stats, name), getattr(many.stats, name), rtol=1e-9)


def test_sql_with_where_equals_filtering_in_pandas(radon_all, tmp_path, out_of_core):
    import duckdb

    db = tmp_path / "survey.duckdb"
    with duckdb.connect(str(db)) as con:
        con.register("frame", radon_all)
        con.execute("CREATE TABLE homes AS SELECT * FROM frame")
    query = "select * from homes where state in ('MN', 'PA', 'IN') and floor = 0"
    streamed = hl.Model("log_radon ~ log_uranium + (1 | state/county)", hl.scan(str(db), sql=query))
    subset = radon_all[radon_all["state"].isin(["MN", "PA", "IN"]) & (radon_all["floor"] == 0)]
    memory = hl.Model("log_radon ~ log_uranium + (1 | state/county)", subset)
    assert_same_stats(streamed.data, memory.data)
    table = hl.Model("log_radon ~ floor + (1 | state/county)", hl.scan(str(db), table="homes"))
    assert table.data.n_rows == len(radon_all)


def test_a_duckdb_relation_is_a_source(radon_all, out_of_core):
    import duckdb

    con = duckdb.connect()
    relation = con.from_df(radon_all).filter("state = 'MN'")
    streamed = hl.Model("log_radon ~ floor + (1 | county)", relation)
    memory = hl.Model("log_radon ~ floor + (1 | county)", radon_all[radon_all["state"] == "MN"])
    assert_same_stats(streamed.data, memory.data)


def test_small_sources_are_read_into_memory_and_keep_their_rows(radon_all, tmp_path):
    path = tmp_path / "mn.csv"
    radon_all[radon_all["state"] == "MN"].to_csv(path, index=False)
    model = hl.Model("log_radon ~ floor + (1 | county)", str(path))
    assert model.data.frame is not None and len(model.data.frame) == 919


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "in-memory"])
@pytest.mark.parametrize("policy", ["drop", "error"])
def test_null_group_labels_follow_the_na_policy(radon_all, tmp_path, request, policy, streamed):
    # In memory, a small Parquet file is read without first counting its missing values.
    if streamed:
        request.getfixturevalue("out_of_core")
    frame = radon_all[radon_all["state"].isin(["MN", "IN"])].copy()
    frame.loc[frame.index[:7], "county"] = None
    frame.loc[frame.index[10:13], "floor"] = np.nan
    path = tmp_path / "holes.parquet"
    frame.to_parquet(path)
    if policy == "error":
        with pytest.raises(
            hl.DataError, match=r"10 rows have missing values \(column 'county': 7\)"
        ):
            hl.Model("log_radon ~ floor + (1 | state/county)", str(path), na="error")
        return
    model = hl.Model("log_radon ~ floor + (1 | state/county)", str(path))
    assert model.data.n_dropped == 10
    assert model.data.dropped_by_column == {"floor": 3, "county": 7}
    assert model.data.n_rows == len(frame) - 10


def test_a_column_that_changes_type_midway_is_refused(tmp_path, out_of_core):
    rng = np.random.default_rng(0)
    n = 40_000
    frame = pd.DataFrame(
        {
            "y": rng.normal(size=n).round(3).astype(str),
            "x": rng.normal(size=n),
            "g": rng.integers(0, 20, n).astype(str),
        }
    )
    frame.loc[n - 5, "y"] = "oops"  # past DuckDB's type sniffing sample
    path = tmp_path / "mixed.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(hl.DataError, match=r"cannot read .*mixed\.csv"):
        hl.Model("y ~ x + (1 | g)", str(path))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": "nope.parquet"}, "no data file at nope.parquet"),
        ({"data": "data.xlsx"}, "cannot tell the format"),
    ],
)
def test_bad_paths_are_named(kwargs, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(hl.DataError, match=message):
        hl.Model("y ~ x + (1 | g)", kwargs["data"])


def test_database_needs_a_table_or_a_query(tmp_path):
    import duckdb

    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    with pytest.raises(hl.DataError, match="name a table"):
        hl.scan(str(db))
    with pytest.raises(hl.DataError, match="cannot read"):
        hl.scan(str(db), table="missing")


def test_misspelled_column_suggests_the_closest(radon_all, tmp_path, out_of_core):
    path = tmp_path / "radon.parquet"
    radon_all.to_parquet(path)
    with pytest.raises(hl.DataError, match="did you mean 'log_radon'"):
        hl.Model("log_radn ~ floor + (1 | county)", str(path))


@pytest.mark.slow
def test_streamed_fit_equals_the_in_memory_fit(radon_all, tmp_path, out_of_core):
    path = tmp_path / "radon.parquet"
    radon_all.to_parquet(path)
    kw = {"chains": 2, "draws": 300, "tune": 300, "seed": 4}
    streamed = hl.Model(FORMULA, str(path)).fit(**kw).summary()
    memory = hl.Model(FORMULA, radon_all).fit(**kw).summary()
    # The statistics agree to rounding, so the draws agree to rounding too.
    np.testing.assert_allclose(streamed["mean"], memory["mean"], rtol=1e-6, atol=1e-8)


def test_large_offset_loses_no_accuracy_against_a_two_pass_reference(tmp_path, out_of_core):
    """y = 1e6 + noise, summed in small batches: the standardised statistics match a
    two-pass computation (centre first, then sum) to 1e-9."""
    frame = large_offset_frame(200_000)
    path = tmp_path / "offset.parquet"
    frame.to_parquet(path)
    spec = hl.Model("y ~ x + (1 | g)", frame).spec
    streamed = ingest_source(spec, open_source(str(path)), batch_rows=7_777)
    assert_matches_two_pass(streamed, frame)


def test_cli_fits_a_parquet_glob_and_a_database_query(radon_all, tmp_path):
    import duckdb
    from typer.testing import CliRunner

    from hierlm.cli import app

    for i, rows in enumerate(np.array_split(np.arange(len(radon_all)), 2)):
        radon_all.iloc[rows].to_parquet(tmp_path / f"part{i}.parquet")
    db = tmp_path / "survey.duckdb"
    with duckdb.connect(str(db)) as con:
        con.register("frame", radon_all)
        con.execute("CREATE TABLE homes AS SELECT * FROM frame")
    runner = CliRunner()
    common = ["--chains", "1", "--draws", "50", "--tune", "50", "--quiet"]
    glob = runner.invoke(
        app,
        [
            "fit",
            str(tmp_path / "*.parquet"),
            "log_radon ~ floor + (1 | state)",
            "-o",
            str(tmp_path / "a.hlm"),
            *common,
        ],
    )
    assert glob.exit_code == 0, glob.output
    assert hl.load(tmp_path / "a.hlm").info.n_rows == len(radon_all)
    query = "select * from homes where state = 'MN'"
    sql = runner.invoke(
        app,
        [
            "fit",
            str(db),
            "log_radon ~ floor + (1 | county)",
            "-o",
            str(tmp_path / "b.hlm"),
            "--sql",
            query,
            *common,
        ],
    )
    assert sql.exit_code == 0, sql.output
    assert hl.load(tmp_path / "b.hlm").info.n_rows == 919
    missing = runner.invoke(
        app, ["fit", str(db), "log_radon ~ floor + (1 | county)", "-o", str(tmp_path / "c.hlm")]
    )
    assert missing.exit_code == 2 and "name a table" in missing.output
