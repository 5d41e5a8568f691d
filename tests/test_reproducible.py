"""The same data, formula and seed give bit-identical draws in separate processes; another
seed gives other draws; every chain has its own random stream."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hierlm as hl

EXE = Path(sys.executable).with_name("hierlm")


def _fit_in_process(csv: Path, out: Path, seed: int, cache: Path) -> hl.Fit:
    argv = [str(EXE), "fit", str(csv), "y ~ x + (1 + x | a/b)", "-o", str(out), "--quiet"]
    argv += ["--chains", "2", "--draws", "100", "--tune", "100", "--seed", str(seed)]
    env = {**os.environ, "HIERLM_CACHE_DIR": str(cache)}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    return hl.load(out)


@pytest.mark.slow
def test_two_processes_same_seed_bit_identical(small_df, tmp_path):
    csv = tmp_path / "d.csv"
    small_df.to_csv(csv, index=False)
    cache = tmp_path / "cache"
    first = _fit_in_process(csv, tmp_path / "1.hlm", 11, cache)
    # The second process loads the sampler's saved programs but traces the density anew:
    # the two must agree bit for bit, and loading one (which imports NumPyro types) while
    # tracing the other (which imports NumPyro) once raced into an ImportError.
    density = list((cache / "programs").glob("logp-*.pkl"))
    assert density and list((cache / "programs").glob("nuts_init-*.pkl"))
    for path in density:
        path.unlink()
    second = _fit_in_process(csv, tmp_path / "2.hlm", 11, cache)
    other = _fit_in_process(csv, tmp_path / "3.hlm", 12, cache)
    names = list(first.idata.posterior.data_vars)
    assert {"beta", "sigma", "sd_a", "sd_b", "beta_a", "beta_b"} <= set(names)
    for name in names:
        a, b = first.idata.posterior[name].values, second.idata.posterior[name].values
        assert np.array_equal(a, b), name
        assert not np.array_equal(a, other.idata.posterior[name].values), name
    for name in ("lp", "diverging", "step_size", "n_steps"):
        a, b = first.idata.sample_stats[name].values, second.idata.sample_stats[name].values
        assert np.array_equal(a, b), name
    # Independent streams: no two chains share draws.
    for name in ("sigma", "sd_a", "beta_b"):
        draws = first.idata.posterior[name].values
        assert not np.array_equal(draws[0], draws[1]), name
        assert not np.isin(draws[0].ravel(), draws[1].ravel()).any(), name
    assert first.info.seed == 11 and first.info.versions == second.info.versions
