"""Real data sets shipped with hierlm, cleaned and ready to model.

The raw files are unmodified (gzipped) copies kept in ``hierlm/datasets/data``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from hierlm.datasets._radon import clean_radon
from hierlm.datasets._simulate import simulate_nested
from hierlm.errors import DataError

__all__ = ["kc_house", "radon", "simulate_nested"]


def _read_csv(name: str, **kwargs: Any) -> pd.DataFrame:
    """Read a gzipped CSV file from the package's ``data`` folder."""
    with resources.as_file(resources.files(__name__) / "data" / name) as path:
        return pd.read_csv(path, compression="gzip", **kwargs)


@cache
def _radon_all() -> pd.DataFrame:
    srrs2 = _read_csv("srrs2.dat.gz", skipinitialspace=True)
    cty = _read_csv("cty.dat.gz", skipinitialspace=True)
    return clean_radon(srrs2, cty)


def radon(state: str | None = None) -> pd.DataFrame:
    """Indoor radon in U.S. homes, with county-level soil uranium.

    The EPA national radon survey (``srrs2.dat``, 12,777 homes) joined to county uranium
    (``cty.dat``): the radon data of Gelman & Hill, *Data Analysis Using Regression and
    Multilevel/Hierarchical Models* (2006), as redistributed by the Stan posterior database
    (stan-dev/posteriordb, ``posterior_database/data/data-raw/radon/``).

    Parameters
    ----------
    state
        Two-letter code of the one state to return, e.g. ``"MN"`` (case-insensitive): one of
        AZ, IN, MA, MN, MO, ND, PA, R5. ``None`` (the default) returns all of them.

    Returns
    -------
    pandas.DataFrame
        One row per home, with a fresh ``RangeIndex`` and these columns:

        ``state`` (str)
            Survey state code, from the ``state`` column. ``"R5"`` is the EPA Region 5
            survey of tribal lands in Michigan, Minnesota and Wisconsin (``state2`` in the
            raw file); its ``county`` is the tribal nation, not a county.
        ``county`` (str)
            County name, upper case, e.g. ``"AITKIN"``. Names repeat across states (county is
            nested in state), so group by ``state`` and ``county`` together.
        ``county_fips`` (int)
            ``1000 * stfips + cntyfips``, e.g. 27001.
        ``floor`` (int)
            Floor of the measurement: 0 basement, 1 first floor.
        ``log_radon`` (float)
            ``log(activity + 0.1)``, activity in pCi/L.
        ``log_uranium`` (float)
            ``log(Uppm + 0.1)``, the county's soil uranium in ppm. NaN for the 200 R5
            homes whose FIPS code has no ``cty.dat`` row (mostly the placeholder county 999).

    Raises
    ------
    DataError
        If ``state`` is not one of the survey's states.

    Notes
    -----
    The cleaning follows the Stan radon case study: strip the padded fields and column
    names; ``fips = 1000 * stfips + cntyfips`` in both files; merge ``Uppm`` by fips (the
    first of ``cty.dat``'s duplicate fips rows, which agree); drop duplicated ``idnum``
    (none); drop missing ``activity`` (none). On top of that:

    - ``floor`` is kept only where it is 0 or 1, dropping 329 homes coded 2, 3 or 9
      (unknown) outside Minnesota; Minnesota's 919 homes are all 0 or 1, as the case study
      uses them.
    - 22 Pennsylvania homes (23 in the raw file, one on floor 9) have no county name; each
      is filled in from the other Pennsylvania homes with the same FIPS code, which all
      carry one name. No other state lacks a county name.

    That leaves 12,448 homes in 8 states and 468 state-county pairs; Minnesota has 919
    homes in 85 counties.

    Examples
    --------
    >>> from hierlm.datasets import radon
    >>> mn = radon("MN")
    >>> len(mn), mn["county"].nunique()
    (919, 85)
    """
    data = _radon_all()
    if state is None:
        return data.copy()
    code = state.strip().upper()
    known = sorted(data["state"].unique())
    if code not in known:
        raise DataError(f"Unknown radon state {state!r}: use one of {', '.join(known)}, or None.")
    return data[data["state"] == code].reset_index(drop=True)


@cache
def _kc_house() -> pd.DataFrame:
    data = _read_csv("kc_house_data.csv.gz", dtype={"zipcode": str, "price": np.float64})
    data["log_price"] = np.log(data["price"])
    data["log_sqft_living"] = np.log(data["sqft_living"])
    return data


def kc_house() -> pd.DataFrame:
    """House sales in King County (Seattle), Washington, 2014–2015.

    The public-domain King County sales data (21,613 sales in 70 zip codes), as used in the
    classic "predicting house prices" course example: price against ``sqft_living``,
    varying by ``zipcode``, with price modelled on the log scale.

    Returns
    -------
    pandas.DataFrame
        One row per sale, with a ``RangeIndex`` and the raw columns: ``price`` (float, USD),
        bedrooms, bathrooms, ``sqft_living``, sqft_lot, floors, waterfront, view,
        condition, grade, sqft_above, sqft_basement, yr_built, yr_renovated, ``zipcode``
        (str, e.g. ``"98178"``), lat, long, sqft_living15, sqft_lot15; plus
        ``log_price = log(price)`` and ``log_sqft_living = log(sqft_living)``. No value is
        missing.

    Examples
    --------
    >>> from hierlm.datasets import kc_house
    >>> houses = kc_house()
    >>> len(houses), houses["zipcode"].nunique()
    (21613, 70)
    """
    return _kc_house().copy()
