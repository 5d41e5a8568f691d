"""Dask DataFrames: statistics reduced on a real ``distributed.LocalCluster`` (worker
processes on loopback) equal the in-memory ones; the same posterior; missing values, bad
columns and bad responses get the same clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import hierlm as hl
from same_stats import assert_matches_two_pass, assert_same_stats, large_offset_frame

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

FORMULA = "log_radon ~ floor + log_uranium + (1 + floor | state/county)"


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def test_statistics_reduced_on_a_cluster_equal_the_in_memory_ones(radon_all, client, out_of_core):
    frame = radon_all.copy()
    frame["basement"] = np.random.default_rng(7).choice(["yes", "no", "partial"], len(frame))
    # Shuffled so every partition sees a different mix of states and text categories.
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    formula = "log_radon ~ floor + basement + log_uranium + (1 + floor | state/county)"
    ddf = dd.from_pandas(frame, npartitions=11)
    with distributed.get_task_stream(client) as tasks:
        reduced = hl.Model(formula, ddf)
    ran = [str(t["key"]) for t in tasks.data]
    # Every partition was reduced on the cluster's workers.
    assert sum("_partition_sums" in k for k in ran) == ddf.npartitions
    assert reduced.data.frame is None  # reduced on the workers: no rows kept
    memory = hl.Model(formula, frame)
    assert_same_stats(reduced.data, memory.data)
    assert reduced.data.n_rows == memory.data.n_rows
    assert reduced.data.dropped_by_column == memory.data.dropped_by_column == {"log_uranium": 200}
    assert {"MN/WASHINGTON", "PA/WASHINGTON"} <= set(reduced.data.design.tree.labels[1])
    sc_r, sc_m = reduced.data.design.scaling, memory.data.design.scaling
    assert sc_r.y_mean == pytest.approx(sc_m.y_mean, rel=1e-12)
    np.testing.assert_allclose(sc_r.x_scale, sc_m.x_scale, rtol=1e-12)


@pytest.mark.slow
def test_the_dask_path_gives_the_in_memory_posterior(radon_all, client, out_of_core):
    """The statistics agree to rounding, so everything computed from them does: the log
    density of θ and its mode to 1e-8. NUTS amplifies rounding (its warm-up adapts to each
    trajectory), so the draws of the two fits are not identical; their summaries agree
    within Monte Carlo error."""
    reduced = hl.Model(FORMULA, dd.from_pandas(radon_all, npartitions=5))
    memory = hl.Model(FORMULA, radon_all)
    theta = np.random.default_rng(0).normal(0.0, 0.5, (5, memory.problem.layout.size))
    for t in theta:
        assert float(reduced.log_density(t)) == pytest.approx(
            float(memory.log_density(t)), rel=1e-10
        )
    kw = {"chains": 2, "draws": 400, "tune": 400, "seed": 4}
    mode_r = reduced.fit(**kw, method="map").summary()
    mode_m = memory.fit(**kw, method="map").summary()
    np.testing.assert_allclose(mode_r["mean"], mode_m["mean"], rtol=1e-8, atol=1e-10)
    a, b = reduced.fit(**kw).summary(), memory.fit(**kw).summary()
    mcse = np.hypot(a["sd"] / np.sqrt(a["ess_bulk"]), b["sd"] / np.sqrt(b["ess_bulk"]))
    assert (np.abs(a["mean"] - b["mean"]) < 4 * mcse).all()
    assert (np.abs(a["sd"] / b["sd"] - 1) < 0.2).all()


def test_a_small_frame_is_computed_and_keeps_its_rows(radon_all, client):
    ddf = dd.from_pandas(radon_all, npartitions=3)
    model = hl.Model(FORMULA, ddf)
    assert model.data.frame is not None and len(model.data.frame) == len(radon_all) - 200
    assert_same_stats(model.data, hl.Model(FORMULA, radon_all).data, rtol=1e-12)


def test_large_offset_loses_no_accuracy_across_partitions(client, out_of_core):
    frame = large_offset_frame(100_000)
    reduced = hl.Model("y ~ x + (1 | g)", dd.from_pandas(frame, npartitions=13)).data
    assert_matches_two_pass(reduced, frame)


@pytest.mark.parametrize("policy", ["drop", "error"])
def test_null_group_labels_follow_the_na_policy(radon_all, client, out_of_core, policy):
    frame = radon_all.copy()
    frame.loc[[3, 50, 900], "county"] = None
    ddf = dd.from_pandas(frame, npartitions=4)
    if policy == "error":
        with pytest.raises(hl.DataError, match=r"rows have missing values \(column"):
            hl.Model(FORMULA, ddf, na="error")
        return
    model = hl.Model(FORMULA, ddf)
    assert model.data.dropped_by_column == {"county": 3, "log_uranium": 200}
    assert_same_stats(model.data, hl.Model(FORMULA, frame).data)


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        (
            "log_radon ~ flor + (1 | county)",
            "column 'flor' is not in the data.*did you mean 'floor'",
        ),
        ("log(county_fips) ~ floor + (1 | county)", None),
        ("state ~ floor + (1 | county)", "response 'state' must be numeric"),
    ],
)
def test_bad_input_is_named(radon_all, client, out_of_core, formula, message):
    frame = radon_all.copy()
    frame["county_fips"] = frame["county_fips"].astype(float) - 27001.0
    ddf = dd.from_pandas(frame, npartitions=3)
    with pytest.raises(hl.DataError, match=message or r"values <= 0, so log\(county_fips\)"):
        hl.Model(formula, ddf)


def test_a_csv_that_changes_type_midway_is_refused(tmp_path, client, out_of_core):
    rows = [f"{i % 3 + 0.5},{i % 5},g{i % 4}" for i in range(2_000)]
    rows[1_700] = "1.5,oops,g1"
    (tmp_path / "x.csv").write_text("y,x,g\n" + "\n".join(rows) + "\n")
    ddf = dd.read_csv(tmp_path / "x.csv", blocksize=4_000)
    assert ddf.npartitions > 2  # the bad row is in a later partition than the sampled one
    with pytest.raises(hl.DataError, match="cannot read the Dask DataFrame") as info:
        hl.Model("y ~ x + (1 | g)", ddf)
    assert "dtype={'x': 'str'}" in str(info.value)  # Dask names the column and the fix


def test_cli_fits_on_a_cluster_address(radon_all, tmp_path, client, out_of_core):
    from typer.testing import CliRunner

    from hierlm.cli import app

    path = tmp_path / "mn.parquet"
    radon_all[radon_all["state"] == "MN"].to_parquet(path)
    address = client.scheduler.address
    out = tmp_path / "mn.hlm"
    args = ["fit", str(path), "log_radon ~ floor + (1 | county)", "-o", str(out)]
    args += ["--dask", address, "--chains", "2", "--draws", "200", "--tune", "200"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    fit = hl.load(out)
    assert fit.data is None  # reduced on the cluster
    assert fit.info.n_rows == int((radon_all["state"] == "MN").sum())
    bad = CliRunner().invoke(app, [*args[:5], "--dask", "tcp://127.0.0.1:9", "--force"])
    assert bad.exit_code == 2
    assert "cannot connect to the Dask scheduler at tcp://127.0.0.1:9" in bad.output
