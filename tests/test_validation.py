"""The validation layer: every kind of bad input gets a clear error at the boundary, or a
documented policy, before anything is compiled. Cases already pinned in test_bad_input.py
(missing column, text response, NaN drop and refusal, one group at a level, log of y <= 0,
constant response) are extended here, not repeated."""

from __future__ import annotations

import re
import time
import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.formula import parse_formula
from hierlm.ingest import ingest

MAP = {"method": "map", "chains": 2, "draws": 200, "seed": 0}


def test_a_doubtful_fit_warns_and_a_good_one_does_not(small_df):
    assert issubclass(hl.ConvergenceWarning, UserWarning)
    assert not issubclass(hl.ConvergenceWarning, hl.HierlmError)
    model = hl.Model("y ~ x + (1 | a)", small_df)
    with pytest.warns(hl.ConvergenceWarning, match=r"effective draws.*Fit.diagnose\(\)"):
        model.fit(chains=2, draws=40, tune=100, seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(chains=4, draws=500, tune=500, seed=1)
    assert not [w for w in caught if issubclass(w.category, hl.ConvergenceWarning)]


# -- columns --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "fragment"),
    [
        ("y ~ xx + (1 | a)", "column 'xx' is not in the data; did you mean 'x'?"),
        ("y ~ X + (1 | a)", "column 'X' is not in the data; did you mean 'x'?"),
        ("y ~ x + (1 | A/b)", "column 'A' is not in the data; did you mean 'a'?"),
        ("yy ~ x + (1 | a)", "column 'yy' is not in the data; did you mean 'y'?"),
        ("y ~ price + (1 | a)", "column 'price' is not in the data; the data has: y, x, a, b"),
    ],
)
def test_misspelled_column_suggests_the_closest(small_df, formula, fragment):
    with pytest.raises(hl.DataError, match=fragment.replace("?", r"\?").replace("(", r"\(")):
        hl.Model(formula, small_df)


def test_two_columns_with_one_name(small_df):
    df = pd.concat([small_df, small_df[["x"]]], axis=1)
    with pytest.raises(hl.DataError, match="the data has 2 columns named 'x'"):
        hl.Model("y ~ x + (1 | a)", df)


def test_boolean_response_is_not_numeric(small_df):
    with pytest.raises(
        hl.DataError, match="response 'flag' must be numeric, but it has dtype bool"
    ):
        hl.Model("flag ~ x + (1 | a)", small_df.assign(flag=small_df["x"] > 3))


@pytest.mark.parametrize("term", ["log(a)", "I(a * 2)"])
def test_text_predictor_inside_a_function(small_df, term):
    with pytest.raises(hl.DataError, match=r"predictor 'a' holds text, not numbers \(e.g. 'a0'\)"):
        hl.Model(f"y ~ {term} + (1 | b)", small_df)


# -- missing and infinite values ------------------------------------------------------


@pytest.mark.parametrize("na", ["drop", "error"])
def test_infinite_predictor_is_refused_under_either_policy(small_df, na):
    df = small_df.copy()
    df.loc[[4, 7], "x"] = [np.inf, -np.inf]
    with pytest.raises(hl.DataError, match=r"column 'x' has 2 infinite values \(e.g. row 4: inf\)"):
        hl.Model("y ~ x + (1 | a)", df, na=na)


def test_drop_counts_the_groups_that_lost_rows(small_df):
    df = small_df.copy()
    df.loc[[0, 1, 2], "x"] = np.nan  # a0/b0
    df.loc[20, "b"] = None  # a1, b unknown
    df.loc[40, "x"] = np.nan  # a2/b2
    model = hl.Model("y ~ x + (1 | a/b)", df)
    assert model.data.n_dropped == 5
    assert model.data.dropped_groups == {"a": 3, "b": 2}


@pytest.mark.slow
def test_drop_is_reported_in_the_fit_notes(small_df):
    df = small_df.copy()
    df.loc[[0, 1, 2], "x"] = np.nan
    notes = hl.Model("y ~ x + (1 | a/b)", df).fit(**MAP).notes()
    assert "3 rows with missing values were dropped (x: 3)." in notes
    assert "Groups that lost rows: 1 in a, 1 in b." in notes


def test_empty_table(small_df):
    with pytest.raises(hl.DataError, match="the data has no rows"):
        hl.Model("y ~ x + (1 | a)", small_df.iloc[:0])


def test_empty_after_a_filter(small_df):
    import duckdb

    relation = duckdb.connect().from_df(small_df).filter("y > 1e9")
    with pytest.raises(hl.DataError, match="the data has no rows; check the file, the query"):
        hl.Model("y ~ x + (1 | a)", relation)


def test_every_row_dropped(small_df):
    with pytest.raises(hl.DataError, match=r"no rows are left .* of the 60 rows .* \(x: 60\)"):
        hl.Model("y ~ x + (1 | a)", small_df.assign(x=np.nan))


def test_lognormal_family_refuses_non_positive_response(small_df):
    df = small_df.assign(y=small_df["y"] - small_df["y"].median())
    with pytest.raises(hl.DataError, match=r"has 30 values <= 0 .* family='lognormal'"):
        hl.Model("y ~ x + (1 | a)", df, family="lognormal")


# -- predictors the data cannot identify ----------------------------------------------


def test_constant_predictor(small_df):
    with pytest.raises(hl.DataError, match=r"predictor 'c' is constant \(5\) in the 60 rows"):
        hl.Model("y ~ x + c + (1 | a)", small_df.assign(c=5.0))


def test_constant_predictor_without_intercept_is_the_intercept(small_df):
    model = hl.Model("y ~ 0 + c + x + (1 | a)", small_df.assign(c=5.0))
    assert model.data.design.coef_names == ("Intercept", "c", "x")


def test_zero_predictor_without_intercept(small_df):
    with pytest.raises(hl.DataError, match="predictor 'z' is 0 in every one of the 60 rows"):
        hl.Model("y ~ 0 + z + x + (1 | a)", small_df.assign(z=0.0))


@pytest.mark.parametrize(
    ("extra", "formula", "named"),
    [
        ({"x2": lambda d: 2 * d["x"] - 1}, "y ~ x + x2 + (1 | a)", "'x', 'x2'"),
        ({"s": lambda d: d["x"] + d["w"]}, "y ~ x + w + s + (1 | a)", "'x', 'w', 's'"),
        ({}, "y ~ x + center(x) + (1 | a)", "'x', 'center(x)'"),
    ],
)
def test_collinear_predictors_are_named(small_df, extra, formula, named):
    df = small_df.assign(w=np.random.default_rng(1).normal(size=len(small_df)), **extra)
    with pytest.raises(hl.DataError, match=re.escape(f"the predictors {named} are perfectly")):
        hl.Model(formula, df)


def test_correlated_but_not_collinear_predictors_pass(small_df):
    noise = np.random.default_rng(2).normal(0, 1e-3, size=len(small_df))
    model = hl.Model("y ~ x + x2 + (1 | a)", small_df.assign(x2=small_df["x"] + noise))
    assert model.data.design.coef_names == ("Intercept", "x", "x2")


def test_more_coefficients_than_rows(small_df):
    df = small_df.iloc[::10].assign(
        **{f"w{i}": np.random.default_rng(i).normal(size=6) for i in range(6)}
    )
    terms = " + ".join(f"w{i}" for i in range(6))
    with pytest.raises(hl.DataError, match=r"perfectly collinear \(7 coefficients from 6 rows\)"):
        hl.Model(f"y ~ {terms} + (1 | a)", df)


# -- the formula ----------------------------------------------------------------------


def test_response_on_the_right_is_refused(small_df):
    with pytest.raises(hl.FormulaError, match="the response 'y' also appears on the right"):
        hl.Model("y ~ x + y + (1 | a)", small_df)


def test_a_term_named_twice_counts_once(small_df):
    """Like R's terms() (lme4) and formulaic: a repeated fixed term is one term."""
    twice = hl.Model("y ~ x + x + (1 | a)", small_df)
    once = hl.Model("y ~ x + (1 | a)", small_df)
    assert twice.data.design.coef_names == once.data.design.coef_names == ("Intercept", "x")
    np.testing.assert_array_equal(twice.data.stats.xtx, once.data.stats.xtx)


def test_a_varying_term_named_twice_is_refused():
    with pytest.raises(hl.FormulaError, match="'x' is listed twice in this group term"):
        parse_formula("y ~ x + (1 + x + x | g)")


# -- groups ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_group_with_one_row_fits(small_df):
    df = pd.concat([small_df, small_df.iloc[[0]].assign(a="lonely", b="b0", y=25.0)])
    fit = hl.Model("y ~ x + (1 + x | a/b)", df).fit(**MAP)
    assert fit.design.tree.labels[0][-1] == "lonely"
    table = fit.summary()
    assert np.isfinite(table[["mean", "sd"]].to_numpy()).all()
    lonely = fit.predict(df.iloc[[-1]], new_groups="error")
    assert np.isfinite(lonely["mean"]).all()


@pytest.mark.slow
def test_labels_with_unicode_spaces_and_the_separator_stay_distinct():
    """("a/b", "c") and ("a", "b/c") would both read "a/b/c" without escaping."""
    rng = np.random.default_rng(4)
    paths = [("a/b", "c"), ("a", "b/c"), ("São Paulo", "zona sul"), ("São Paulo", "a\\b")]
    effects = np.array([8.0, -8.0, 3.0, -3.0])
    rows = 12
    top = np.repeat([p[0] for p in paths], rows)
    sub = np.repeat([p[1] for p in paths], rows)
    x = rng.normal(size=len(top))
    y = 1.0 + 0.5 * x + np.repeat(effects, rows) + rng.normal(0, 0.3, size=len(top))
    df = pd.DataFrame({"y": y, "x": x, "top": top, "sub": sub})
    fit = hl.Model("y ~ x + (1 | top/sub)", df).fit(**MAP)
    assert fit.design.tree.sizes == (3, 4)
    assert set(fit.design.tree.labels[1]) == {
        "a\\/b/c",
        "a/b\\/c",
        "São Paulo/zona sul",
        "São Paulo/a\\\\b",
    }
    first = df.groupby(["top", "sub"], sort=False).head(1)
    pred = fit.predict(first, new_groups="error")
    # each path gets its own group's prediction back: the group means, in order
    np.testing.assert_allclose(
        np.asarray(pred["mean"]) - (1.0 + 0.5 * first["x"].to_numpy()), effects, atol=0.6
    )


def test_one_hundred_thousand_groups_validate_quickly():
    rng = np.random.default_rng(0)
    n_groups = 100_000
    g = rng.permutation(np.repeat(np.arange(n_groups), 2))
    df = pd.DataFrame(
        {
            "y": rng.normal(size=2 * n_groups),
            "x": rng.normal(size=2 * n_groups),
            "s": (g % 50).astype(str),
            "g": g.astype(str),
        }
    )
    start = time.perf_counter()
    data = ingest(parse_formula("y ~ x + (1 | s/g)"), df)
    elapsed = time.perf_counter() - start
    assert data.design.tree.sizes == (50, n_groups)
    assert data.stats.n.sum() == 2 * n_groups
    assert elapsed < 10.0


# -- extreme magnitudes ---------------------------------------------------------------


@pytest.mark.slow
def test_prices_of_1e9_and_areas_of_1e_6_match_least_squares():
    """Standardisation absorbs the scales: the slope is the fixed-effects OLS slope."""
    rng = np.random.default_rng(3)
    n_groups, per = 6, 40
    g = np.repeat(np.arange(n_groups), per)
    area = rng.uniform(1e-6, 5e-6, size=n_groups * per)
    price = 1e9 + 4e14 * area + rng.normal(0, 5e7, n_groups)[g] + rng.normal(0, 2e7, len(g))
    df = pd.DataFrame({"price": price, "area": area, "g": [f"g{i}" for i in g]})
    fit = hl.Model("price ~ area + (1 | g)", df).fit(chains=2, draws=200, tune=300, seed=0)
    table = fit.summary()
    assert np.isfinite(table[["mean", "sd"]].to_numpy()).all()
    dummies = (g[:, None] == np.arange(n_groups)).astype(float)
    ols = np.linalg.lstsq(np.column_stack([area, dummies]), price, rcond=None)[0][0]
    mean, sd = table.loc["beta[area]", ["mean", "sd"]]
    assert abs(mean - ols) < 0.2 * sd
    assert 5e11 < sd < 5e12
    assert table.loc["sigma", "mean"] == pytest.approx(2e7, rel=0.15)


# -- found by tests/test_fuzz.py ------------------------------------------------------


@pytest.mark.parametrize("term", ["scale(x)", "center(x)"])
def test_a_column_only_inside_a_stateful_transform_is_read(small_df, term):
    """formulaic's required_variables misses x in scale(x); the model read no x and failed."""
    model = hl.Model(f"y ~ {term} + (1 | a)", small_df)
    assert model.data.design.coef_names == ("Intercept", term)
    assert model.data.design.encoding.variables == ("x",)


def test_a_transform_undefined_in_some_rows(small_df):
    with pytest.raises(hl.DataError, match=r"the term 'log\(z\)' is undefined \(NaN\) in some"):
        hl.Model("y ~ log(z) + (1 | a)", small_df.assign(z=small_df["x"] - 3))


def test_a_transform_that_overflows(small_df):
    with pytest.raises(hl.DataError, match=r"column 'exp\(z\)' of the design is not finite in 1"):
        hl.Model("y ~ exp(z) + (1 | a)", small_df.assign(z=np.where(small_df.index == 7, 1e9, 0.5)))


def test_a_dotted_name_is_one_column(small_df):
    with pytest.raises(hl.DataError, match=r"column 'x.y' is not in the data; the data has: y, x"):
        hl.Model("y ~ x.y + (1 | a)", small_df)
    model = hl.Model("y ~ x.y + (1 | a)", small_df.rename(columns={"x": "x.y"}))
    assert model.data.design.coef_names == ("Intercept", "x.y")
