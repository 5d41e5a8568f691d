"""Cleaning of the raw EPA radon survey files (``srrs2.dat``, ``cty.dat``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["clean_radon"]

COLUMNS = ["state", "county", "county_fips", "floor", "log_radon", "log_uranium"]


def _strip(frame: pd.DataFrame) -> pd.DataFrame:
    """Strip the padding from column names and from every text column."""
    frame = frame.rename(columns=str.strip)
    for name in frame.columns:
        if pd.api.types.is_string_dtype(frame[name]):
            frame[name] = frame[name].str.strip()
    return frame


def clean_radon(srrs2: pd.DataFrame, cty: pd.DataFrame) -> pd.DataFrame:
    """Clean the raw home-level and county-level radon tables.

    Parameters
    ----------
    srrs2
        ``srrs2.dat`` as read by :func:`pandas.read_csv`, padding and all.
    cty
        ``cty.dat`` as read by :func:`pandas.read_csv`.

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`COLUMNS`; see :func:`hierlm.datasets.radon` for the steps.
    """
    homes = _strip(srrs2)
    homes["county"] = homes["county"].str.upper()
    counties = _strip(cty)
    homes["county_fips"] = 1000 * homes["stfips"] + homes["cntyfips"]
    counties["county_fips"] = 1000 * counties["stfips"] + counties["ctfips"]
    uranium = counties.drop_duplicates("county_fips")[["county_fips", "Uppm"]]
    homes = homes.merge(uranium, on="county_fips", how="left", validate="many_to_one")
    homes = homes.drop_duplicates("idnum")
    homes = homes.dropna(subset=["activity"])
    homes = homes[homes["floor"].isin([0, 1])]
    # A missing county name is filled in only where the same state and FIPS code carry
    # exactly one name elsewhere in the file; rows still without a name are dropped.
    by_fips = homes.groupby(["state", "county_fips"])["county"]
    known = by_fips.transform("first").where(by_fips.transform("nunique") == 1)
    homes = homes.assign(county=homes["county"].fillna(known)).dropna(subset=["county"])
    out = pd.DataFrame(
        {
            "state": homes["state"].astype(str),
            "county": homes["county"].astype(str),
            "county_fips": homes["county_fips"].astype(np.int64),
            "floor": homes["floor"].astype(np.int64),
            "log_radon": np.log(homes["activity"].astype(np.float64) + 0.1),
            "log_uranium": np.log(homes["Uppm"].astype(np.float64) + 0.1),
        }
    )
    return out.reset_index(drop=True)
