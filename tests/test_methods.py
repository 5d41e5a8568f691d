"""Inference methods other than NUTS on the same Fit type: MAP + Laplace, ADVI and
random-walk Metropolis, each honest about what its uncertainty means."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hierlm as hl
from hierlm.errors import HierlmError

FORMULA = "log_radon ~ floor + (1 | county)"


@pytest.fixture(scope="module")
def radon():
    return hl.datasets.radon("MN")


def test_map_is_close_to_reml(radon):
    """The marginal mode keeps the county sd away from zero, near statsmodels' REML."""
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reml = smf.mixedlm("log_radon ~ floor", radon, groups=radon["county"]).fit(reml=True)
    sd_reml = float(np.sqrt(reml.cov_re.values[0, 0]))
    fit = hl.Model(FORMULA, radon).fit(method="map", seed=1)
    post = fit.idata.posterior
    # Laplace draws are normal in log sd, so their median is the mode.
    sd_map = float(np.median(post["sd_county"].values))
    assert sd_map > 0.2
    assert sd_map == pytest.approx(sd_reml, rel=0.1)
    assert float(np.median(post["sigma"].values)) == pytest.approx(np.sqrt(reml.scale), rel=0.03)
    beta = post["beta"].mean(("chain", "draw")).values
    np.testing.assert_allclose(beta, reml.fe_params.values, atol=0.02)
    assert fit.info.method == "map"
    assert any("Laplace" in n for n in fit.notes())
    assert fit.diagnose()[0].severity == "warning"
    assert "approximation" in fit.diagnose()[0].message


def test_map_needs_the_collapsed_engine(radon):
    model = hl.Model(FORMULA, radon, engine="full")
    with pytest.raises(HierlmError, match="puts every group sd at zero"):
        model.fit(method="map")
    with pytest.raises(HierlmError, match="method must be one of"):
        model.fit(method="gibbs")


@pytest.mark.slow
def test_metropolis_and_advi_finish_and_show_their_weaknesses(radon):
    model = hl.Model(FORMULA, radon, engine="full")
    nuts = model.fit(seed=2)
    rwm = model.fit(method="metropolis", seed=2)
    table = rwm.summary()
    assert table["r_hat"].max() > 1.01 or table["ess_bulk"].min() < 400
    assert any(f.severity != "ok" for f in rwm.diagnose())
    advi = model.fit(method="advi", seed=2, advi_steps=5000)
    sd_nuts = float(nuts.idata.posterior["sd_county"].std())
    sd_advi = float(advi.idata.posterior["sd_county"].std())
    assert sd_advi < 0.8 * sd_nuts  # mean-field: too narrow where sd and groups correlate
    assert "too narrow" in advi.notes()[0]
    collapsed_rwm = hl.Model(FORMULA, radon).fit(method="metropolis", seed=2)
    assert collapsed_rwm.info.method == "metropolis" and collapsed_rwm.info.engine == "collapsed"
