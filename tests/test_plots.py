"""Plots: every function on real small fits, and the shrinkage numbers against least squares."""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import hierlm as hl
from hierlm import plots

pytestmark = pytest.mark.slow

SETTINGS = {"chains": 2, "draws": 200, "tune": 200, "seed": 3}


def simulate_three_level(seed: int = 0) -> pd.DataFrame:
    """y ~ x + (1 + x | a/b/c) on the log scale, 3 x 3 x 3 groups of 1 to 5 rows."""
    rng = np.random.default_rng(seed)
    rows = []
    u_a, u_b, u_c = (rng.normal(0, s, (n, 2)) for s, n in ((0.5, 3), (0.3, 9), (0.2, 27)))
    for ia in range(3):
        for ib in range(3):
            for ic in range(3):
                for _ in range(int(rng.integers(1, 6))):
                    x = rng.normal(1.0, 1.0)
                    u = u_a[ia] + u_b[3 * ia + ib] + u_c[9 * ia + 3 * ib + ic]
                    eta = 0.5 + u[0] + (0.3 + u[1]) * x + rng.normal(0, 0.3)
                    rows.append((f"a{ia}", f"b{ib}", f"c{ic}", x, np.exp(eta)))
    return pd.DataFrame(rows, columns=["a", "b", "c", "x", "y"])


@pytest.fixture(scope="module")
def radon_fit(radon_mn: pd.DataFrame) -> hl.Fit:
    return hl.Model("log_radon ~ floor + (1 + floor | county)", radon_mn).fit(**SETTINGS)


@pytest.fixture(scope="module")
def deep_fit() -> hl.Fit:
    data = simulate_three_level()
    return hl.Model("y ~ x + (1 + x | a/b/c)", data, family="lognormal").fit(**SETTINGS)


@pytest.fixture(scope="module")
def intercept_fit(radon_mn: pd.DataFrame) -> tuple[hl.Model, hl.Fit]:
    model = hl.Model("log_radon ~ floor + (1 | county)", radon_mn)
    return model, model.fit(**SETTINGS)


@pytest.fixture(params=["radon_fit", "deep_fit"])
def any_fit(request: pytest.FixtureRequest) -> hl.Fit:
    return request.getfixturevalue(request.param)


def saved(fig: Figure, tmp_path, name: str = "plot") -> None:
    """Write ``fig`` as PNG, check the file, and close it."""
    assert isinstance(fig, Figure)
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=50)
    assert path.stat().st_size > 0
    plt.close(fig)


def titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def test_trace_has_density_trace_and_rank_per_entry(any_fit: hl.Fit, tmp_path) -> None:
    fig = any_fit.plot.trace()
    entries = [i for i in any_fit.summary().index]  # constant entries already dropped
    assert len(fig.axes) == 3 * len(entries)
    rank_axes = fig.axes[2::3]
    assert all(ax.get_xlabel() == "Rank (all chains)" for ax in rank_axes)
    names = [t.replace("\n", "[", 1) + ("]" if "\n" in t else "") for t in titles(fig)[::3]]
    assert names == entries
    assert "Intercept, Intercept" not in " ".join(titles(fig))
    assert fig.get_suptitle().startswith("Trace and rank plots")
    saved(fig, tmp_path)


def test_forest_says_which_subset_it_shows(radon_fit: hl.Fit, tmp_path) -> None:
    fig = plots.forest(radon_fit, "county", max_groups=10)
    (ax,) = fig.axes
    assert "showing 10 of 85 groups" in ax.get_title()
    shown = [t.get_text() for t in ax.get_yticklabels()]
    assert len(shown) == 10
    means = (
        radon_fit.idata["posterior"]["beta_county"]
        .sel(coef="Intercept")
        .mean(("chain", "draw"))
        .to_series()
    )
    # The extremes are always shown, the highest at the top (last tick label).
    assert shown[-1] == means.idxmax() and shown[0] == means.idxmin()
    assert "population mean of beta[Intercept]" in [t.get_text() for t in ax.get_legend().texts]
    assert ax.get_xlabel().startswith("beta_county[·, Intercept]")
    saved(fig, tmp_path)


def test_forest_marks_each_groups_parent(deep_fit: hl.Fit, tmp_path) -> None:
    fig = deep_fit.plot.forest("b", coef="x")
    (ax,) = fig.axes
    assert "all 9 groups" in ax.get_title()
    (parents,) = [c for c in ax.collections if c.get_label().startswith("posterior mean of the")]
    assert parents.get_label() == "posterior mean of the parent a group"
    post = deep_fit.idata["posterior"]
    a_means = post["beta_a"].sel(coef="x").mean(("chain", "draw")).to_series()
    rows = {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)}
    for px, py in parents.get_offsets():
        (label,) = [lab for lab, y in rows.items() if y == py]
        assert px == pytest.approx(a_means[label.split("/")[0]], abs=1e-12)
    saved(fig, tmp_path)


@pytest.mark.parametrize(
    ("fixture", "level", "coef"),
    [
        ("radon_fit", None, "Intercept"),
        ("radon_fit", "county", "floor"),
        ("deep_fit", None, "x"),
        ("deep_fit", "a", "Intercept"),
    ],
)
def test_shrinkage_table_is_least_squares_and_the_posterior_mean(
    request: pytest.FixtureRequest, fixture: str, level: str | None, coef: str
) -> None:
    fit = request.getfixturevalue(fixture)
    table = plots.shrinkage_table(fit, level, coef)
    level = level or fit.design.level_names[-1]
    frame = fit.data
    x = fit.design.encoding.encode(frame)
    y = frame[fit.spec.response].to_numpy(float)
    z = np.log(y) if fit.spec.family == "lognormal" else y
    columns = fit.design.tree.paths[fit.design.level_names.index(level)]
    labels = frame[list(columns)].astype(str).agg("/".join, axis=1).to_numpy()
    j = list(fit.design.coef_names).index(coef)
    complete = np.linalg.lstsq(x, z, rcond=None)[0]
    np.testing.assert_allclose(table["complete"], complete[j], atol=1e-8)
    summary = fit.summary(groups=True)["mean"]
    assert len(table) == fit.design.tree.sizes[fit.design.level_names.index(level)]
    for row in table.itertuples():
        mine = labels == row.group
        assert row.n == mine.sum()
        sol, _, rank, _ = np.linalg.lstsq(x[mine], z[mine], rcond=None)
        if rank == x.shape[1]:
            assert row.method == "least squares"
            assert row.no_pooling == pytest.approx(sol[j], abs=1e-8)
        elif not x[mine, j].any():
            assert row.method == "none" and np.isnan(row.no_pooling)
        else:
            col = x[mine, j]
            assert row.method == "residuals"
            expected = complete[j] + col @ (z[mine] - x[mine] @ complete) / (col @ col)
            assert row.no_pooling == pytest.approx(expected, abs=1e-8)
        assert row.partial == pytest.approx(
            summary[f"beta_{level}[{row.group}, {coef}]"], abs=1e-12
        )
    assert (table["method"] == "least squares").any()
    if fixture == "deep_fit" and level == "c":
        assert (table["method"] == "residuals").any()  # groups of one row


def test_shrinkage_plot(any_fit: hl.Fit, tmp_path) -> None:
    fig = any_fit.plot.shrinkage()
    (ax,) = fig.axes
    leaf = any_fit.design.level_names[-1]
    assert ax.get_title().startswith("Shrinkage of Intercept across")
    assert ax.get_xlabel().startswith(f"rows in the {leaf} group")
    assert "Intercept" in ax.get_ylabel()
    legend = [t.get_text() for t in ax.get_legend().texts]
    assert "complete pooling: least squares on all rows" in legend
    assert "partial pooling: posterior mean" in legend
    table = any_fit.plot.shrinkage_table()
    (partial,) = [c for c in ax.collections if c.get_label() == "partial pooling: posterior mean"]
    np.testing.assert_allclose(np.sort(partial.get_offsets()[:, 1]), np.sort(table["partial"]))
    if any_fit.spec.family == "lognormal":
        assert "log scale of y" in ax.get_ylabel()
    saved(fig, tmp_path)


def test_fitted_lines_default_groups(radon_fit: hl.Fit, tmp_path) -> None:
    fig = radon_fit.plot.fitted_lines("floor", n_lines=20)
    assert len(fig.axes) == 6
    counts = radon_fit.data["county"].value_counts()
    for ax in fig.axes:
        group, n = ax.get_title().rsplit(" (n = ", 1)
        assert int(n.rstrip(")")) == counts[group]
        assert len(ax.lines) == 20 + 1
        (points,) = [c for c in ax.collections if c.get_label() == "data"]
        assert len(points.get_offsets()) == counts[group]
    assert counts.max() in [int(t.rsplit("= ", 1)[1][:-1]) for t in titles(fig)]
    assert fig.axes[0].get_ylabel() == "log_radon"
    assert fig.axes[-1].get_xlabel() == "floor"
    saved(fig, tmp_path)


def test_fitted_lines_chosen_groups_on_the_log_scale(deep_fit: hl.Fit, tmp_path) -> None:
    fig = plots.fitted_lines(deep_fit, "x", groups=["a0/b0/c0", "a2/b1/c2"], n_lines=10)
    assert [t.split(" (")[0] for t in titles(fig)] == ["a0/b0/c0", "a2/b1/c2"]
    assert fig.axes[0].get_ylabel() == "log(y)"
    ax = fig.axes[0]
    (mean_line,) = [ln for ln in ax.lines if ln.get_label() == "posterior mean"]
    xs, ys = mean_line.get_data()
    b = deep_fit.draws_of("beta_c")[:, 0].mean(axis=0)
    np.testing.assert_allclose(ys, b[0] + b[1] * np.asarray(xs), atol=1e-10)
    saved(fig, tmp_path)


def test_ppc_density_and_statistics(any_fit: hl.Fit, tmp_path) -> None:
    check = any_fit.ppc(draws=100)
    fig = plots.ppc(any_fit, check, n_lines=30)
    stats = list(check.statistics.index)
    assert len(fig.axes) == 1 + len(stats)
    assert [t.split(",")[0] for t in titles(fig)[1:]] == stats
    assert all(", p = " in t for t in titles(fig)[1:])
    label = "log(y)" if any_fit.spec.family == "lognormal" else "log_radon"
    assert fig.axes[0].get_xlabel() == label
    assert {"Observed", "Posterior predictive"} <= {
        t.get_text() for t in fig.axes[0].get_legend().texts
    }
    for ax, stat in zip(fig.axes[1:], stats, strict=True):
        (observed,) = [ln for ln in ax.lines if ln.get_label() == "observed"]
        assert observed.get_xdata()[0] == pytest.approx(check.statistics.loc[stat, "observed"])
    saved(fig, tmp_path)


def test_funnel(any_fit: hl.Fit, tmp_path) -> None:
    level = any_fit.design.level_names[0]
    fig = any_fit.plot.funnel(level, coef="Intercept")
    (ax,) = fig.axes
    assert ax.get_ylabel() == f"log sd_{level}[Intercept]"
    assert ax.get_xlabel().startswith(f"beta_{level}[")
    assert ax.get_xlabel().endswith("− beta[Intercept]")
    assert "divergent draws" in ax.get_title()
    saved(fig, tmp_path)


def test_funnel_of_a_lower_level_is_the_deviation_from_the_parent(
    deep_fit: hl.Fit, tmp_path
) -> None:
    fig = plots.funnel(deep_fit, "b", coef="x", group="a1/b2")
    (ax,) = fig.axes
    assert ax.get_xlabel() == "beta_b[a1/b2, x] − its a group's"
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    post = deep_fit.idata["posterior"]
    deviation = (
        post["beta_b"].sel(b="a1/b2", coef="x") - post["beta_a"].sel(a="a1", coef="x")
    ).values.ravel()
    log_sd = np.log(post["sd_b"].sel(coef_b="x").values.ravel())
    np.testing.assert_allclose(np.sort(points[:, 0])[-5:], np.sort(deviation)[-5:])
    np.testing.assert_allclose(np.sort(points[:, 1])[:5], np.sort(log_sd)[:5])
    saved(fig, tmp_path)


def test_pair_of_the_variance_parameters(any_fit: hl.Fit, tmp_path) -> None:
    fig = any_fit.plot.pair()
    n = 1 + 2 * len(any_fit.design.level_names)  # sigma and two sds per level
    assert len(fig.axes) == (n - 1) * n // 2
    assert "sigma" in [ax.get_xlabel() for ax in fig.axes]
    leaf, slope = any_fit.design.level_names[-1], any_fit.design.coef_names[-1]
    assert f"sd_{leaf}\n{slope}" in [ax.get_ylabel() for ax in fig.axes]
    assert fig.get_suptitle() == f"Variance parameters: {any_fit.spec.formula}"
    saved(fig, tmp_path)


def test_every_plot_with_one_varying_coefficient(intercept_fit, tmp_path) -> None:
    model, fit = intercept_fit
    fig = fit.plot.trace()
    assert len(fig.axes) == 3 * 4  # beta (2), sigma, sd_county[Intercept]
    saved(fig, tmp_path, "trace")
    fig = fit.plot.pair()
    (ax,) = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("sigma", "sd_county\nIntercept")
    saved(fig, tmp_path, "pair")
    fig = fit.plot.forest("county")
    assert "showing 40 of 85 groups" in fig.axes[0].get_title()
    saved(fig, tmp_path, "forest")
    fig = fit.plot.funnel("county", group="AITKIN")
    assert fig.axes[0].get_title().startswith("Funnel at level 'county': group 'AITKIN' (n = 4)")
    saved(fig, tmp_path, "funnel")
    saved(fit.plot.shrinkage(), tmp_path, "shrinkage")
    saved(fit.plot.fitted_lines("floor", groups="ANOKA"), tmp_path, "lines")
    fig = fit.plot.ppc(model.prior_predictive(draws=50))
    assert fig.get_suptitle() == "Prior predictive check of log_radon"
    assert "Prior predictive" in {t.get_text() for t in fig.axes[0].get_legend().texts}
    saved(fig, tmp_path, "prior")


def test_clear_errors(radon_fit: hl.Fit, deep_fit: hl.Fit) -> None:
    with pytest.raises(hl.HierlmError, match="no level 'state'"):
        plots.forest(radon_fit, "state")
    with pytest.raises(hl.HierlmError, match="no coefficient 'basement'"):
        plots.shrinkage_table(radon_fit, coef="basement")
    with pytest.raises(hl.HierlmError, match="not a predictor"):
        plots.fitted_lines(radon_fit, "uranium")
    with pytest.raises(hl.HierlmError, match="not a county group"):
        plots.fitted_lines(radon_fit, "floor", groups=["ATLANTIS"])
    with pytest.raises(hl.HierlmError, match="does not vary"):
        plots.funnel(deep_fit, "a", coef="z")
    with pytest.raises(hl.HierlmError, match="at least two"):
        plots.pair(radon_fit, ["sigma"])
    with pytest.raises(hl.HierlmError, match="no variable 'tau'"):
        plots.trace(radon_fit, ["tau"])
    # A logit-link model has no least-squares estimate to shrink from.
    spec = dataclasses.replace(radon_fit.spec, family="bernoulli")
    logit = dataclasses.replace(radon_fit, design=dataclasses.replace(radon_fit.design, spec=spec))
    with pytest.raises(hl.HierlmError, match="gaussian or lognormal"):
        plots.shrinkage(logit)
    no_rows = dataclasses.replace(radon_fit, data=None)
    with pytest.raises(hl.HierlmError, match="did not keep"):
        plots.shrinkage(no_rows)
    assert plots.shrinkage_table(no_rows, data=radon_fit.data).equals(
        plots.shrinkage_table(radon_fit)
    )


def test_shrinkage_draws_a_readable_subset_of_many_groups(radon_fit: hl.Fit) -> None:
    fig = radon_fit.plot.shrinkage(max_groups=20)
    ax = fig.axes[0]
    assert "showing 20 of 85 groups" in ax.get_title()
    # Twenty segments, smallest and largest county included.
    segments = ax.collections[0].get_segments()
    assert len(segments) == 20
    table = radon_fit.plot.shrinkage_table()
    sizes = sorted(round(s[0][0]) for s in segments)
    assert sizes[0] <= table["n"].min() * 1.2 and sizes[-1] >= table["n"].max() * 0.8
    plt.close(fig)
