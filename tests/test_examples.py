"""The runnable examples in ``examples/`` do what their docs say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_centred_funnel_diverges_and_collapsed_does_not(tmp_path):
    example = _load("parameterizations")
    rows = {r["variant"]: r for r in example.compare(seed=1)}
    centred = rows["centred, full latent"]
    collapsed = rows["collapsed (hierlm default)"]
    assert centred["divergences"] > 0
    assert any("'county' looks like a funnel" in f for f in centred["funnel"])
    assert collapsed["divergences"] == 0
    assert collapsed["min_ess"] > centred["min_ess"]
    assert collapsed["max_rhat"] < 1.01
    text = example.markdown(list(rows.values()))
    assert "| collapsed (hierlm default) | 0 |" in text


@pytest.mark.slow
def test_radon_mn_example_fast(tmp_path):
    n = _load("radon_mn").run(tmp_path, fast=True)
    logo = n["logo"]
    assert logo["partial"] > logo["complete"] and logo["partial"] > logo["none"]
    # Uranium explains much of the county differences.
    assert n["sd_county_uranium"] < 0.7 * n["sd_county"] and n["beta_uranium"] > 0.4
    text = (tmp_path / "radon_mn.md").read_text()
    for name in ("shrinkage", "forest", "lines", "uranium"):
        assert (tmp_path / "figures" / f"radon_mn-{name}.png").stat().st_size > 0
        assert f"figures/radon_mn-{name}.png" in text


@pytest.mark.slow
def test_radon_states_example_fast(tmp_path):
    n = _load("radon_states").run(tmp_path, fast=True)
    assert n["groups"][0] == 8 and n["groups"][1] > 400
    assert "county: 'WASHINGTON' occurs under 4 states, treated as 4 groups" in n["repeated"]
    # A state rests on hundreds of homes, a county on a few: counties are pooled far more.
    assert n["pooling"]["county"] > 5 * n["pooling"]["state"]
    assert (tmp_path / "radon_states.md").read_text().count("![") == 3


@pytest.mark.slow
def test_kc_house_example_fast(tmp_path):
    n = _load("kc_house").run(tmp_path, fast=True)
    assert n["known_level"] == ["population"]
    assert 0.7 < n["coverage"] <= 1.0
    # A zipcode the model never saw gets wider intervals than known ones.
    assert n["width_new"] > n["width_known"]
    assert 0.5 < n["elasticity"] < 1.0


@pytest.mark.slow
def test_income_example_fast(tmp_path):
    n = _load("income").run(tmp_path, fast=True)
    params = {name: (true, lo, hi) for name, true, _, lo, hi in n["params"]}
    # The well-identified levels cover their truth (the degree level has 3 groups only).
    for name in ("sd_county[Intercept]", "sd_state[Intercept]", "sigma"):
        true, lo, hi = params[name]
        assert lo <= true <= hi, name
    assert n["cover"]["Intercept"] > 0.75 and n["divergences"] == 0


@pytest.mark.slow
def test_per_observation_slope_example_fast(tmp_path):
    rows = _load("per_observation_slope").run(tmp_path, fast=True)
    collapsed = rows["NUTS, collapsed (hierlm default)"]
    metropolis = rows["Metropolis, full latent"]
    assert collapsed["max_rhat"] < 1.05 and collapsed["divergences"] == 0
    assert collapsed["min_ess"] > 5 * metropolis["min_ess"]
    assert (tmp_path / "figures" / "per_observation_slope.png").stat().st_size > 0
