"""hierlm's collapsed posterior against an independent full-latent NumPyro NUTS fit.

The issue's acceptance criterion: on the Minnesota radon subset with a varying intercept and
slope, every parameter -- beta (2), sigma, sd_county (2), the county correlation and all
85 x 2 county coefficients -- agrees with a plain NumPyro fit of the same model within
0.1 posterior sd in mean and 10% in sd.

The reference (``tests/reference_model.py``) samples every county coefficient as a latent
(non-centered) and shares nothing with hierlm but the data set.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import arviz as az
import numpy as np
import pytest

import hierlm as hl
from reference_model import reference_data, run_reference

MEAN_TOL = 0.1  # |mean_hierlm - mean_ref| <= MEAN_TOL * sd_ref
SD_TOL = 0.10  # |sd_hierlm / sd_ref - 1| <= SD_TOL
RHAT_MAX = 1.01
MAX_DIVERGENCES = 5

CHAINS = 4
HL_DRAWS, HL_TUNE = 2500, 1000
REF_DRAWS, REF_TUNE = 4000, 1000

FORMULA = "log_radon ~ floor + (1 + floor | county)"
PRIORS = hl.Priors(
    intercept=hl.Normal(1.5, 2.0),
    beta=hl.Normal(0, 2.0),
    sd=hl.HalfNormal(1.0),
    sigma=hl.HalfNormal(1.0),
    corr=hl.LKJ(2.0),
)
COEFS = ("Intercept", "floor")


@dataclass(frozen=True)
class Mismatch:
    """One scalar that fails the comparison."""

    name: str
    mean_dev: float  # (mean_hierlm - mean_ref) / sd_ref
    sd_ratio: float  # sd_hierlm / sd_ref

    def __str__(self) -> str:
        return f"{self.name}: mean off by {self.mean_dev:+.3f} sd, sd ratio {self.sd_ratio:.3f}"


def scalar_draws_hierlm(posterior, counties) -> dict[str, np.ndarray]:
    """Every compared scalar of a hierlm posterior as a (chain, draw) array, by name."""
    out: dict[str, np.ndarray] = {}
    for coef in COEFS:
        out[f"beta[{coef}]"] = posterior["beta"].sel(coef=coef).values
        out[f"sd_county[{coef}]"] = posterior["sd_county"].sel(coef_county=coef).values
    out["sigma"] = posterior["sigma"].values
    out["corr_county[Intercept,floor]"] = (
        posterior["corr_county"].sel(coef_county="Intercept", coef_county_="floor").values
    )
    bc = posterior["beta_county"]
    for county in counties:  # align by label, never by position
        for coef in COEFS:
            out[f"beta_county[{county},{coef}]"] = bc.sel(county=county, coef=coef).values
    return out


def scalar_draws_reference(ref: dict[str, np.ndarray], counties) -> dict[str, np.ndarray]:
    """Every compared scalar of the reference fit as a (chain, draw) array, by name."""
    out: dict[str, np.ndarray] = {}
    for k, coef in enumerate(COEFS):
        out[f"beta[{coef}]"] = ref["beta"][..., k]
        out[f"sd_county[{coef}]"] = ref["sd_county"][..., k]
    out["sigma"] = ref["sigma"]
    out["corr_county[Intercept,floor]"] = ref["corr"]
    for g, county in enumerate(counties):
        for k, coef in enumerate(COEFS):
            out[f"beta_county[{county},{coef}]"] = ref["beta_county"][..., g, k]
    return out


def deviations(
    candidate: dict[str, np.ndarray], reference: dict[str, np.ndarray]
) -> dict[str, tuple[float, float]]:
    """Per scalar: ((mean_c - mean_r) / sd_r, sd_c / sd_r)."""
    assert candidate.keys() == reference.keys()
    out = {}
    for name, ref in reference.items():
        cand = candidate[name]
        sd_ref = float(np.std(ref))
        out[name] = (
            (float(np.mean(cand)) - float(np.mean(ref))) / sd_ref,
            float(np.std(cand)) / sd_ref,
        )
    return out


def compare(
    candidate: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    mean_tol: float = MEAN_TOL,
    sd_tol: float = SD_TOL,
) -> list[Mismatch]:
    """The scalars whose mean or sd disagree with the reference beyond tolerance."""
    return [
        Mismatch(name, dev, ratio)
        for name, (dev, ratio) in deviations(candidate, reference).items()
        if not (abs(dev) <= mean_tol and abs(ratio - 1.0) <= sd_tol)
    ]


def _rhat(draws: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(az.rhat(np.ascontiguousarray(draws)))


@pytest.fixture(scope="module")
def fits():
    df = hl.datasets.radon("MN")
    model = hl.Model(FORMULA, df, priors=PRIORS)
    fit = model.fit(chains=CHAINS, draws=HL_DRAWS, tune=HL_TUNE, seed=20240611)

    data = reference_data(df)
    ref = run_reference(data, chains=CHAINS, draws=REF_DRAWS, tune=REF_TUNE, seed=7)

    counties = data.counties
    assert len(counties) == 85
    assert sorted(fit.idata.posterior["beta_county"].coords["county"].values) == list(counties)
    return (
        scalar_draws_hierlm(fit.idata.posterior, counties),
        scalar_draws_reference(ref, counties),
        ref,
    )


@pytest.mark.slow
def test_reference_fit_converged(fits) -> None:
    _, reference, ref = fits
    assert len(reference) == 2 + 1 + 2 + 1 + 85 * 2
    n_div = int(ref["diverging"].sum())
    assert n_div <= MAX_DIVERGENCES, f"reference NUTS had {n_div} divergences"
    rhats = {name: _rhat(d) for name, d in reference.items()}
    bad = {name: r for name, r in rhats.items() if not r < RHAT_MAX}
    assert not bad, f"reference R-hat >= {RHAT_MAX}: {bad}"


@pytest.mark.slow
def test_posterior_matches_full_latent_numpyro(fits) -> None:
    candidate, reference, _ = fits
    devs = deviations(candidate, reference)
    worst_mean = max(devs, key=lambda n: abs(devs[n][0]))
    worst_sd = max(devs, key=lambda n: abs(devs[n][1] - 1.0))
    print(
        f"worst mean deviation {devs[worst_mean][0]:+.4f} sd ({worst_mean}); "
        f"worst sd ratio {devs[worst_sd][1]:.4f} ({worst_sd})"
    )
    bad = compare(candidate, reference)
    assert not bad, "\n".join(map(str, bad))


def _fake_draws(rng: np.random.Generator, names: list[str]) -> dict[str, np.ndarray]:
    return {name: rng.normal(size=(CHAINS, 4000)) for name in names}


def test_harness_catches_wrong_answers() -> None:
    names = ["beta[Intercept]", "sigma", "beta_county[AITKIN,floor]"]
    rng = np.random.default_rng(0)
    reference = _fake_draws(rng, names)
    candidate = _fake_draws(rng, names)
    assert compare(candidate, reference) == []  # two samples of the same law agree

    shifted = dict(candidate)
    shifted["beta_county[AITKIN,floor]"] = candidate["beta_county[AITKIN,floor]"] + 0.2
    bad = compare(shifted, reference)
    assert [m.name for m in bad] == ["beta_county[AITKIN,floor]"]
    assert bad[0].mean_dev == pytest.approx(0.2, abs=0.05)

    widened = dict(candidate)
    widened["sigma"] = candidate["sigma"] * 1.15
    bad = compare(widened, reference)
    assert [m.name for m in bad] == ["sigma"]
    assert bad[0].sd_ratio == pytest.approx(1.15, abs=0.03)


@pytest.mark.slow
def test_harness_catches_perturbed_hierlm_posterior(fits) -> None:
    candidate, reference, _ = fits
    name = "beta_county[HENNEPIN,floor]"
    shifted = dict(candidate)
    shifted[name] = candidate[name] + 0.2 * np.std(reference[name])
    assert name in [m.name for m in compare(shifted, reference)]

    scaled = dict(candidate)
    scaled["sigma"] = candidate["sigma"] * 1.1  # shifts sigma's mean by ~4 posterior sds
    assert "sigma" in [m.name for m in compare(scaled, reference)]

    sd_wide = dict(candidate)
    mean = np.mean(candidate["beta[floor]"])
    sd_wide["beta[floor]"] = mean + 1.15 * (candidate["beta[floor]"] - mean)
    assert "beta[floor]" in [m.name for m in compare(sd_wide, reference)]
