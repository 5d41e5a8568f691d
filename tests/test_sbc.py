"""Simulation-based calibration of hierlm on a 3-level model (harness in tests/sbc.py).

The slow tests fit ``y ~ x + (1 + x || a/b/c)`` (tree 3 > 4 > 3, 90 rows, x fixed) to 100
data sets simulated from the prior, and require the ranks of sigma, every sd, both population
coefficients and six group coefficients at all three levels to be uniform (chi-square on 10
bins, Bonferroni over the 15 scalars at family-wise alpha 0.01). The same harness must flag a
sampler whose likelihood uses 1.3 σ in place of σ. The fast tests check the harness itself
with a prior "sampler", which SBC cannot tell from an exact one.
"""

from __future__ import annotations

import numpy as np
import pytest

from sbc import (
    FitSettings,
    SbcResult,
    bin_counts,
    calibrated,
    hierlm_sampler,
    make_design,
    prior_sampler,
    run_sbc,
    simulate,
    tracked_scalars,
    uniformity_pvalues,
)

N_SIMS = 100
N_SIMS_WRONG = 40  # the wrong sampler is flagged even with fewer data sets
SETTINGS = FitSettings(chains=2, draws=400, tune=300)
THIN = 8  # the slowest scalars (sds) have ESS ≳ 0.12 per draw: ~independent kept draws
ALPHA = 0.01
SEED = 1000


@pytest.fixture(scope="module")
def design():
    return make_design()


def report(title: str, pvalues: dict[str, float]) -> str:
    lines = [title] + [f"  {name:30s} p = {p:.3g}" for name, p in pvalues.items()]
    return "\n".join(lines)


# --- the harness itself (fast) ---------------------------------------------------------


def test_bin_counts_expect_exact_bin_probabilities() -> None:
    # L = 100: 101 rank values in 10 bins, the first of which holds 11 of them.
    observed, expected = bin_counts(np.arange(101), 100, 10)
    np.testing.assert_array_equal(observed, [11] + [10] * 9)
    np.testing.assert_allclose(expected, observed)
    assert calibrated(uniformity_pvalues(SbcResult({"r": np.arange(101)}, 100)), alpha=ALPHA) == (
        True,
        [],
    )


def test_simulation_matches_the_design(design) -> None:
    data, truth = simulate(design, 0)
    assert len(data) == 90
    assert data.groupby(["a", "b", "c"]).ngroups == 36
    assert set(truth) == set(tracked_scalars(design))
    assert truth["sigma"] > 0
    assert all(truth[f"sd_{lv}[{c}]"] > 0 for lv in "abc" for c in ("Intercept", "x"))
    # Same seed, same data set: the right and wrong samplers see identical data.
    again, truth_again = simulate(design, 0)
    assert again.equals(data)
    assert truth_again == truth


def test_harness_passes_prior_draws_and_flags_scaled_sigma(design) -> None:
    right = uniformity_pvalues(run_sbc(design, prior_sampler(design), 500, seed=SEED))
    ok, failing = calibrated(right, ALPHA)
    assert ok, report(f"prior sampler flagged: {failing}", right)
    wrong = uniformity_pvalues(
        run_sbc(design, prior_sampler(design, sigma_factor=1.5), 500, seed=SEED)
    )
    ok, failing = calibrated(wrong, ALPHA)
    assert not ok, report("scaled prior sampler not flagged", wrong)
    assert failing == ["sigma"]


# --- hierlm (slow) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def hierlm_sbc(design) -> SbcResult:
    sampler = hierlm_sampler(design, SETTINGS)
    return run_sbc(design, sampler, N_SIMS, seed=SEED, thin_every=THIN)


@pytest.mark.slow
def test_hierlm_is_calibrated(hierlm_sbc: SbcResult) -> None:
    assert hierlm_sbc.n_sims == N_SIMS
    assert hierlm_sbc.n_draws == SETTINGS.chains * SETTINGS.draws // THIN
    pvalues = uniformity_pvalues(hierlm_sbc)
    print(report("hierlm SBC p-values", pvalues))
    ok, failing = calibrated(pvalues, ALPHA)
    assert ok, report(f"miscalibrated: {failing}", pvalues)


@pytest.mark.slow
def test_harness_flags_a_sampler_with_the_wrong_sigma(design) -> None:
    sampler = hierlm_sampler(design, SETTINGS, likelihood_sigma_factor=1.3)
    result = run_sbc(design, sampler, N_SIMS_WRONG, seed=SEED, thin_every=THIN)
    pvalues = uniformity_pvalues(result)
    print(report("wrong-sigma sampler SBC p-values", pvalues))
    ok, failing = calibrated(pvalues, ALPHA)
    assert not ok, report("the wrong sampler passed", pvalues)
    assert "sigma" in failing
    # It reports too small a sigma, so the true value ranks high.
    assert np.median(result.ranks["sigma"]) > 0.75 * result.n_draws
