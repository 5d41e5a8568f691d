"""Bad input gets a clear error naming what is wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

import hierlm as hl


def test_missing_column(small_df):
    with pytest.raises(hl.DataError, match="column 'z' is not in the data"):
        hl.Model("y ~ z + (1 | a)", small_df)


def test_missing_group_column(small_df):
    with pytest.raises(hl.DataError, match="column 'county' is not in the data"):
        hl.Model("y ~ x + (1 | county)", small_df)


def test_non_numeric_response(small_df):
    with pytest.raises(hl.DataError, match="response 'a' must be numeric"):
        hl.Model("a ~ x + (1 | b)", small_df)


def test_nan_rows_are_dropped_and_counted(small_df):
    df = small_df.copy()
    df.loc[[0, 5, 9], "x"] = np.nan
    df.loc[3, "b"] = None
    model = hl.Model("y ~ x + (1 | a/b)", df)
    assert model.data.n_dropped == 4
    assert model.data.dropped_by_column == {"x": 3, "b": 1}
    assert model.data.n_rows == len(df) - 4


def test_nan_rows_refused_under_na_error(small_df):
    df = small_df.copy()
    df.loc[[0, 5], "y"] = np.nan
    with pytest.raises(hl.DataError, match=r"2 rows have missing values \(column 'y': 2\)"):
        hl.Model("y ~ x + (1 | a)", df, na="error")


def test_formula_syntax_error_points_at_token(small_df):
    with pytest.raises(hl.FormulaError) as info:
        hl.Model("y ~ x + (1 | a", small_df)
    assert "^" in str(info.value)


def test_level_with_one_group(small_df):
    df = small_df[small_df["a"] == "a0"]
    with pytest.raises(hl.DataError, match="level 'a' has only one group \\('a0'\\)"):
        hl.Model("y ~ x + (1 | a/b)", df)


def test_log_of_non_positive_response(small_df):
    with pytest.raises(hl.DataError, match=r"so log\(x\) is undefined"):
        hl.Model("log(x) ~ 1 + (1 | a)", small_df.assign(x=small_df["x"] - 100))


def test_constant_response(small_df):
    with pytest.raises(hl.DataError, match="response 'c' is constant"):
        hl.Model("c ~ x + (1 | a)", small_df.assign(c=1.0))


def test_crossed_groupings_go_to_the_full_engine(small_df):
    model = hl.Model("y ~ x + (1 | a) + (1 | b)", small_df)
    assert model.engine == "full"
    with pytest.raises(hl.HierlmError, match="crossed groupings; use engine='auto' or 'full'"):
        hl.Model("y ~ x + (1 | a) + (1 | b)", small_df, engine="collapsed")


def test_polars_input_matches_pandas(small_df):
    a = hl.Model("y ~ x + (1 | a/b)", small_df)
    b = hl.Model("y ~ x + (1 | a/b)", pl.from_pandas(small_df))
    np.testing.assert_array_equal(a.data.stats.xtx, b.data.stats.xtx)


def test_wrong_data_type():
    with pytest.raises(hl.DataError, match="data must be a pandas or polars DataFrame"):
        hl.Model("y ~ x", [1, 2, 3])


def test_bad_prior_statement():
    with pytest.raises(hl.PriorError, match="unknown distribution 'gauss'"):
        hl.Priors.from_strings(["sd(county) ~ gauss(1)"])


def test_prior_statements_parse():
    p = hl.Priors.from_strings(
        ["sd(county) ~ halfnormal(1)", "beta ~ normal(0, 10)", "sigma ~ exponential(2)"]
    )
    assert p.sd_for("county") == hl.HalfNormal(1.0)
    assert p.sd_for("state") is None
    assert p.beta_for("floor") == hl.Normal(0.0, 10.0)
    assert p.sigma == hl.Exponential(2.0)


def test_bad_fit_arguments(small_df):
    model = hl.Model("y ~ x + (1 | a)", small_df)
    with pytest.raises(hl.HierlmError, match="chains must be an integer >= 1"):
        model.fit(chains=0)


def test_unseen_category_in_encoding(small_df):
    df = small_df.assign(k=np.where(np.arange(len(small_df)) % 2, "u", "v"))
    model = hl.Model("y ~ k + (1 | a)", df)
    with pytest.raises(
        hl.DataError, match=r"column 'k' has the category 'w', which was not in the data"
    ):
        model.data.design.encoding.encode(
            pd.DataFrame({"k": pd.Categorical(["w"], categories=["w"])})
        )
