"""Tests of the bundled data sets (hierlm.datasets)."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import pytest

from hierlm.datasets import kc_house, radon, simulate_nested
from hierlm.datasets._radon import clean_radon
from hierlm.errors import DataError

RADON_COLUMNS = ["state", "county", "county_fips", "floor", "log_radon", "log_uranium"]


def test_raw_files_ship_with_the_package() -> None:
    data = resources.files("hierlm.datasets") / "data"
    for name in ["srrs2.dat.gz", "cty.dat.gz", "kc_house_data.csv.gz"]:
        assert (data / name).is_file(), name


def test_radon_columns_dtypes_and_index() -> None:
    df = radon()
    assert list(df.columns) == RADON_COLUMNS
    assert pd.api.types.is_string_dtype(df["state"])
    assert pd.api.types.is_string_dtype(df["county"])
    assert df["county_fips"].dtype == np.int64
    assert df["floor"].dtype == np.int64
    assert df["log_radon"].dtype == np.float64
    assert df["log_uranium"].dtype == np.float64
    assert isinstance(df.index, pd.RangeIndex)
    assert df.index.equals(pd.RangeIndex(len(df)))


def test_radon_minnesota_has_919_homes_in_85_counties() -> None:
    mn = radon(state="MN")
    assert len(mn) == 919
    assert mn["county"].nunique() == 85
    assert mn["county_fips"].nunique() == 85
    assert set(mn["state"]) == {"MN"}
    assert (mn["county_fips"] // 1000 == 27).all()
    assert mn.index.equals(pd.RangeIndex(919))
    assert mn["log_uranium"].notna().all()
    # Gelman & Hill: 153 first-floor measurements; St. Louis is the largest county.
    assert int(mn["floor"].sum()) == 153
    assert mn["county"].value_counts().idxmax() == "ST LOUIS"
    assert mn.equals(radon("mn"))


def test_radon_first_minnesota_home_matches_the_case_study() -> None:
    first = radon("MN").iloc[0]
    assert first["county"] == "AITKIN"
    assert first["county_fips"] == 27001
    assert first["floor"] == 1
    assert first["log_radon"] == pytest.approx(np.log(2.2 + 0.1))
    assert first["log_uranium"] == pytest.approx(np.log(0.502054 + 0.1))


def test_radon_all_states() -> None:
    df = radon()
    counts = df["state"].value_counts().to_dict()
    assert counts == {
        "AZ": 1400,
        "IN": 1851,
        "MA": 1548,
        "MN": 919,
        "MO": 1842,
        "ND": 1594,
        "PA": 2369,
        "R5": 925,
    }
    assert df.groupby(["state", "county"]).ngroups == 468
    subsets = pd.concat([radon(s) for s in sorted(counts)], ignore_index=True)
    assert len(subsets) == len(df)


def test_radon_values_are_clean() -> None:
    df = radon()
    assert np.isfinite(df["log_radon"]).all()
    assert set(df["floor"].unique()) == {0, 1}
    assert df["county"].notna().all()
    assert df["state"].notna().all()
    assert (df["county"] == df["county"].str.strip().str.upper()).all()
    assert (df["county"] != "").all()
    assert (df["state"].str.len() == 2).all()
    # log(activity + 0.1) with activity >= 0
    assert (df["log_radon"] >= np.log(0.1) - 1e-12).all()


def test_radon_uranium_missing_only_for_region5_tribal_lands() -> None:
    df = radon()
    missing = df[df["log_uranium"].isna()]
    assert len(missing) == 200
    assert set(missing["state"]) == {"R5"}
    assert np.isfinite(df.loc[df["state"] != "R5", "log_uranium"]).all()


def test_radon_county_names_repeat_across_states() -> None:
    df = radon()
    washington = set(df.loc[df["county"] == "WASHINGTON", "state"])
    assert len(washington) >= 3
    assert {"IN", "MN", "MO", "PA"} <= washington
    assert df.groupby(["state", "county"]).ngroups > df["county"].nunique()


def test_radon_pennsylvania_missing_county_names_are_filled() -> None:
    pa = radon("PA")
    assert pa["county"].notna().all()
    # Each Pennsylvania FIPS code carries exactly one county name.
    assert (pa.groupby("county_fips")["county"].nunique() == 1).all()
    assert len(pa) == 2369


def test_radon_unknown_state_raises() -> None:
    with pytest.raises(DataError, match="XX"):
        radon("XX")
    with pytest.raises(ValueError, match="MN"):
        radon("Minnesota")


def test_radon_returns_a_fresh_copy() -> None:
    df = radon()
    df.loc[0, "log_radon"] = 1e9
    del df["county"]
    again = radon()
    assert list(again.columns) == RADON_COLUMNS
    assert again.loc[0, "log_radon"] != 1e9


def test_clean_radon_rules_on_a_small_table() -> None:
    srrs2 = pd.DataFrame(
        {
            " idnum": [1, 2, 2, 3, 4, 5, 6],
            " state": ["MN ", "MN", "MN", "MN", "MN", "PA", "PA"],
            " stfips": [27, 27, 27, 27, 27, 42, 42],
            " floor": [0, 1, 0, 9, 1, 0, 1],
            " activity": [1.0, 2.0, 3.0, 4.0, np.nan, 5.0, 6.0],
            " cntyfips": [1, 1, 1, 1, 1, 3, 3],
            " county": ["aitkin   ", "AITKIN", "AITKIN", "AITKIN", "AITKIN", "ALLEGHENY", None],
        }
    )
    cty = pd.DataFrame(
        {
            "stfips": [27, 27, 42],
            "ctfips": [1, 1, 3],
            "Uppm": [0.5, 9.0, 1.0],
        }
    )
    out = clean_radon(srrs2, cty)
    assert list(out.columns) == RADON_COLUMNS
    # idnum 2 duplicated (first kept), idnum 3 floor 9 and idnum 4 missing activity dropped.
    assert out["log_radon"].tolist() == pytest.approx(np.log([1.1, 2.1, 5.1, 6.1]).tolist())
    assert out["state"].tolist() == ["MN", "MN", "PA", "PA"]
    assert out["county"].tolist() == ["AITKIN", "AITKIN", "ALLEGHENY", "ALLEGHENY"]
    assert out["county_fips"].tolist() == [27001, 27001, 42003, 42003]
    assert out["floor"].tolist() == [0, 1, 0, 1]
    # The first of cty's duplicate fips rows is used.
    assert out["log_uranium"].tolist() == pytest.approx(np.log([0.6, 0.6, 1.1, 1.1]).tolist())
    assert out.index.equals(pd.RangeIndex(4))


def test_kc_house() -> None:
    df = kc_house()
    assert len(df) == 21613
    assert df["zipcode"].nunique() == 70
    assert pd.api.types.is_string_dtype(df["zipcode"])
    assert (df["zipcode"].str.fullmatch(r"98\d{3}")).all()
    assert df.loc[0, "zipcode"] == "98178"
    assert df["price"].dtype == np.float64
    assert df.loc[0, "price"] == 221900.0
    assert df[["price", "sqft_living"]].notna().all().all()
    assert (df["price"] > 0).all()
    assert np.allclose(df["log_price"], np.log(df["price"]))
    assert np.allclose(df["log_sqft_living"], np.log(df["sqft_living"]))
    assert list(df.columns[-2:]) == ["log_price", "log_sqft_living"]
    assert isinstance(df.index, pd.RangeIndex)


def test_kc_house_returns_a_fresh_copy() -> None:
    df = kc_house()
    df["zipcode"] = "x"
    assert kc_house().loc[0, "zipcode"] == "98178"


def test_simulate_nested_matches_its_truth():
    df = simulate_nested(
        levels={"g1": 2, "g2": 3}, rows=40, beta=(1.0, -2.0), sd=(0.5, 0.2), sigma=0.3, seed=4
    )
    truth = df.attrs["truth"]
    assert list(df.columns) == ["g1", "g2", "x", "y"]
    assert len(df) == 2 * 3 * 40
    # Labels repeat under every parent, as real names do; the truth is keyed by path.
    assert set(df["g2"]) == {"g21", "g22", "g23"}
    leaves = truth["groups"]["g2"]
    assert list(leaves.index[:3]) == ["g11/g21", "g11/g22", "g11/g23"]
    coef = leaves.loc[df["g1"] + "/" + df["g2"]].to_numpy()
    resid = df["y"].to_numpy() - coef[:, 0] - coef[:, 1] * df["x"].to_numpy()
    assert resid.std() == pytest.approx(0.3, rel=0.1)
    # Every child's coefficients are its parent's plus a deviation of the level's sd.
    parents = truth["groups"]["g1"].loc[[p.split("/")[0] for p in leaves.index]].to_numpy()
    dev = leaves.to_numpy() - parents
    assert np.abs(dev[:, 0]).max() < 5 * 0.5 and np.abs(dev[:, 1]).max() < 5 * 0.2
    with pytest.raises(DataError, match="corr"):
        simulate_nested(corr=1.0)
