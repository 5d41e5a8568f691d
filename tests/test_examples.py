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
