"""Simulation-based calibration (SBC) harness for a 3-level hierlm model.

SBC (Talts et al., 2018): draw parameters from the prior, data from the model given them,
and run the sampler on the data. For an exact sampler, the rank of each true value among L
(roughly independent) posterior draws is uniform on {0, ..., L}, whatever the data. A
sampler that is wrong anywhere (likelihood, prior, downward draws, scaling back to the
original units) shifts or spreads the ranks, which a uniformity test picks up.

The pieces, in the order they run:

* :func:`make_design` fixes the tree (``a > b > c``, nested labels) and the predictor ``x``
  once, so ``mean(x)`` and the model layout (hence hierlm's compiled programs) stay the same
  across simulations;
* :func:`simulate` draws every parameter from exactly the priors of :data:`PRIORS` (the
  same semantics as hierlm's) and a response ``y``;
* a *sampler* maps a data set to posterior draws of the tracked scalars (:func:`hierlm_sampler`
  is the real one; wrong ones are built the same way);
* :func:`run_sbc` collects the ranks, :func:`uniformity_pvalues` tests them (chi-square on
  binned ranks, exact bin probabilities), and :func:`calibrated` applies a Bonferroni
  threshold over the tracked scalars.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

import hierlm as hl

FORMULA = "y ~ x + (1 + x || a/b/c)"
COEFS = ("Intercept", "x")
LEVELS = ("a", "b", "c")

# Prior scales of the simulation; PRIORS states the same priors to hierlm.
INTERCEPT_SCALE = 1.0  # intercept at mean(x): b0 + mean(x) * b1 ~ N(0, 1)
BETA_SCALE = 1.0  # b1 ~ N(0, 1)
SD_SCALE = 0.5  # every sd_<level>[coef] ~ HalfNormal(0.5)
SIGMA_SCALE = 1.0  # sigma ~ HalfNormal(1)

PRIORS = hl.Priors(
    intercept=hl.Normal(0.0, INTERCEPT_SCALE),
    beta=hl.Normal(0.0, BETA_SCALE),
    sd=hl.HalfNormal(SD_SCALE),
    sigma=hl.HalfNormal(SIGMA_SCALE),
)


@dataclass(frozen=True)
class Design:
    """The fixed part of every simulated data set: the tree, the rows and x.

    Attributes
    ----------
    frame
        One row per observation with columns ``a``, ``b``, ``c`` (nested labels; ``b`` and
        ``c`` labels repeat under different parents) and ``x``.
    paths
        Per level, the sorted path labels of its nodes (``"a0/b1/c2"``), as hierlm names them.
    parent
        Per level, each node's index in the level above (0 for the top level).
    leaf
        Each row's leaf (level ``c``) index.
    """

    frame: pd.DataFrame
    paths: tuple[tuple[str, ...], ...]
    parent: tuple[np.ndarray, ...]
    leaf: np.ndarray

    @property
    def x(self) -> np.ndarray:
        """The predictor."""
        return self.frame["x"].to_numpy()


def make_design(sizes: tuple[int, int, int] = (3, 4, 3), seed: int = 20240) -> Design:
    """A balanced tree with ``sizes`` children per node and 1 to 4 rows per leaf.

    Leaf ``k`` (in path order) holds ``1 + k % 4`` rows, so some leaves have a single row.
    """
    rng = np.random.default_rng(seed)
    n_a, n_b, n_c = sizes
    a_paths = [f"a{i}" for i in range(n_a)]
    b_paths = [f"{a}/b{j}" for a in a_paths for j in range(n_b)]
    c_paths = [f"{b}/c{k}" for b in b_paths for k in range(n_c)]
    parent = (
        np.zeros(n_a, dtype=np.int64),
        np.repeat(np.arange(n_a), n_b),
        np.repeat(np.arange(n_a * n_b), n_c),
    )
    counts = 1 + np.arange(len(c_paths)) % 4
    leaf = np.repeat(np.arange(len(c_paths)), counts)
    parts = [c_paths[g].split("/") for g in leaf]
    frame = pd.DataFrame(
        {
            "a": [p[0] for p in parts],
            "b": [p[1] for p in parts],
            "c": [p[2] for p in parts],
            "x": rng.normal(size=len(leaf)),
        }
    )
    # hierlm sorts labels; these zero-padding-free labels sort as built only for < 10 nodes.
    assert all(n <= 10 for n in sizes)
    return Design(frame, (tuple(a_paths), tuple(b_paths), tuple(c_paths)), parent, leaf)


def key(var: str, *index: str) -> str:
    """The name of a tracked scalar, e.g. ``key("sd_b", "x") == "sd_b[x]"``."""
    return f"{var}[{', '.join(index)}]" if index else var


def tracked_scalars(design: Design) -> tuple[str, ...]:
    """sigma, every sd, the population coefficients and a few group coefficients.

    The group coefficients: one top-level node, one middle node, and three leaves (one with
    a single row, one with four rows).
    """
    a, b, c = design.paths
    names = ["sigma"]
    names += [key(f"sd_{lv}", coef) for lv in LEVELS for coef in COEFS]
    names += [key("beta", coef) for coef in COEFS]
    names += [
        key("beta_a", a[-1], "Intercept"),
        key("beta_b", b[5], "Intercept"),
        key("beta_b", b[5], "x"),
        key("beta_c", c[0], "Intercept"),
        key("beta_c", c[3], "x"),
        key("beta_c", c[-1], "Intercept"),
    ]
    return tuple(names)


def draw_parameters(design: Design, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One draw of every parameter from the prior, on the original scale.

    Returns ``beta`` (2,), ``sigma`` (), ``sd_<level>`` (2,) and ``beta_<level>`` (G, 2).
    """
    x_mean = design.x.mean()
    b1 = rng.normal(0.0, BETA_SCALE)
    centred_intercept = rng.normal(0.0, INTERCEPT_SCALE)
    beta = np.array([centred_intercept - x_mean * b1, b1])
    out: dict[str, np.ndarray] = {"beta": beta, "sigma": np.abs(rng.normal(0.0, SIGMA_SCALE))}
    parent_values = beta[None, :]
    for lv, paths, parent in zip(LEVELS, design.paths, design.parent, strict=True):
        tau = np.abs(rng.normal(0.0, SD_SCALE, size=len(COEFS)))
        values = parent_values[parent] + tau * rng.normal(size=(len(paths), len(COEFS)))
        out[f"sd_{lv}"] = tau
        out[f"beta_{lv}"] = values
        parent_values = values
    return out


def simulate(design: Design, seed: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """A data set drawn from the prior predictive, and the true tracked scalars."""
    rng = np.random.default_rng(seed)
    params = draw_parameters(design, rng)
    leaf_beta = params["beta_c"][design.leaf]
    mean = leaf_beta[:, 0] + leaf_beta[:, 1] * design.x
    frame = design.frame.copy()
    frame["y"] = mean + params["sigma"] * rng.normal(size=len(frame))
    return frame, scalars_of(design, params)


def parse_key(name: str) -> tuple[str, list[str]]:
    """The inverse of :func:`key`: ``"beta_b[a1/b1, x]"`` -> ``("beta_b", ["a1/b1", "x"])``."""
    var, _, rest = name.partition("[")
    return var, rest.removesuffix("]").split(", ") if rest else []


def scalars_of(design: Design, params: dict[str, np.ndarray]) -> dict[str, float]:
    """The tracked scalars of one parameter draw (as :func:`draw_parameters` returns)."""
    out = {}
    for name in tracked_scalars(design):
        var, index = parse_key(name)
        value = params[var]
        if var.startswith("beta_"):
            level = LEVELS.index(var.removeprefix("beta_"))
            value = value[design.paths[level].index(index.pop(0))]
        if index:
            value = value[COEFS.index(index[0])]
        out[name] = float(value)
    return out


# A sampler maps (data set, seed) to draws of every tracked scalar, shape (chains, draws).
Sampler = Callable[[pd.DataFrame, int], dict[str, np.ndarray]]


@dataclass(frozen=True)
class FitSettings:
    """NUTS settings; tune + draws a multiple of hierlm's chunk of 100 wastes no work."""

    chains: int = 2
    draws: int = 400
    tune: int = 300


def posterior_scalars(post, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Draws (chains, draws) of the tracked scalars from an ``idata.posterior``."""
    out = {}
    for name in names:
        var, index = parse_key(name)
        da = post[var]
        if var == "beta":
            da = da.sel(coef=index[0])
        elif var.startswith("sd_"):
            da = da.sel({f"coef_{var.removeprefix('sd_')}": index[0]})
        elif var.startswith("beta_"):
            da = da.sel({var.removeprefix("beta_"): index[0], "coef": index[1]})
        out[name] = np.asarray(da.transpose("chain", "draw").values, dtype=np.float64)
    return out


def hierlm_sampler(
    design: Design,
    settings: FitSettings = FitSettings(),
    model_priors: hl.Priors = PRIORS,
    likelihood_sigma_factor: float = 1.0,
) -> Sampler:
    """hierlm's fit of the model, as a sampler.

    ``likelihood_sigma_factor = k != 1`` makes a deliberately *wrong* sampler: one whose
    likelihood uses ``k σ`` as the residual sd while it reports σ. It is built exactly from
    hierlm: with σ' = k σ, the wrong posterior is the model with prior σ' ~ HalfNormal(k s)
    (s the scale of sigma's prior), reported as σ = σ' / k; given σ', every other draw is
    what the wrong sampler would give.
    """
    names = tracked_scalars(design)
    k = likelihood_sigma_factor
    fit_priors = model_priors
    if k != 1.0:
        assert isinstance(model_priors.sigma, hl.HalfNormal)
        fit_priors = replace(model_priors, sigma=hl.HalfNormal(k * model_priors.sigma.scale))

    def sample(data: pd.DataFrame, seed: int) -> dict[str, np.ndarray]:
        model = hl.Model(FORMULA, data, priors=fit_priors)
        fit = model.fit(chains=settings.chains, draws=settings.draws, tune=settings.tune, seed=seed)
        draws = posterior_scalars(fit.idata.posterior, names)
        draws["sigma"] = draws["sigma"] / k
        return draws

    return sample


def prior_sampler(design: Design, draws: int = 100, sigma_factor: float = 1.0) -> Sampler:
    """A sampler that ignores the data and returns prior draws.

    SBC cannot tell it from an exact sampler (its ranks are uniform too), which makes it a
    cheap check of the harness itself; ``sigma_factor != 1`` scales its sigma draws, which
    SBC must flag.
    """

    def sample(data: pd.DataFrame, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([seed, 1])
        rows = [scalars_of(design, draw_parameters(design, rng)) for _ in range(draws)]
        out = {name: np.array([[r[name] for r in rows]]) for name in rows[0]}
        out["sigma"] = out["sigma"] * sigma_factor
        return out

    return sample


@dataclass(frozen=True)
class SbcResult:
    """Ranks of every tracked scalar over the simulations.

    Attributes
    ----------
    ranks
        Per scalar, the rank (number of kept draws below the true value) in each simulation.
    n_draws
        L, the number of kept posterior draws per simulation; ranks lie in 0..L.
    """

    ranks: dict[str, np.ndarray]
    n_draws: int

    @property
    def n_sims(self) -> int:
        """Number of simulated data sets."""
        return len(next(iter(self.ranks.values())))


def thin(draws: np.ndarray, every: int) -> np.ndarray:
    """Every ``every``-th draw of each chain, chains concatenated (1-D)."""
    return draws[:, every - 1 :: every].reshape(-1)


def run_sbc(
    design: Design, sampler: Sampler, n_sims: int, seed: int = 0, thin_every: int = 1
) -> SbcResult:
    """Simulate ``n_sims`` data sets, run the sampler on each and collect the ranks.

    Simulation ``i`` uses the seed ``seed + i`` for the data and the sampler, so two samplers
    run with the same ``seed`` see the same data sets.
    """
    names = tracked_scalars(design)
    ranks: dict[str, list[int]] = {name: [] for name in names}
    n_draws = None
    for i in range(n_sims):
        data, truth = simulate(design, seed + i)
        draws = sampler(data, seed + i)
        for name in names:
            kept = thin(draws[name], thin_every)
            if n_draws is None:
                n_draws = len(kept)
            assert len(kept) == n_draws
            ranks[name].append(int(np.sum(kept < truth[name])))
    assert n_draws is not None
    return SbcResult({k: np.array(v) for k, v in ranks.items()}, n_draws)


def bin_counts(ranks: np.ndarray, n_draws: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Observed counts of ranks in ``n_bins`` bins, and the counts uniform ranks expect.

    Rank r (0..L) goes to bin ``floor(r * n_bins / (L + 1))``; when L + 1 is not a multiple of
    ``n_bins`` the bins hold different numbers of rank values, which the expectation accounts
    for exactly.
    """
    values = np.arange(n_draws + 1)
    width = np.bincount(values * n_bins // (n_draws + 1), minlength=n_bins)
    observed = np.bincount(ranks * n_bins // (n_draws + 1), minlength=n_bins)
    return observed, len(ranks) * width / (n_draws + 1)


def uniformity_pvalues(result: SbcResult, n_bins: int = 10) -> dict[str, float]:
    """Per scalar, the chi-square p-value of its binned ranks against uniform ranks."""
    out = {}
    for name, ranks in result.ranks.items():
        observed, expected = bin_counts(ranks, result.n_draws, n_bins)
        out[name] = float(stats.chisquare(observed, expected).pvalue)
    return out


def calibrated(pvalues: dict[str, float], alpha: float = 0.01) -> tuple[bool, list[str]]:
    """Whether no scalar fails at the Bonferroni level ``alpha / len(pvalues)``.

    Returns the verdict and the failing scalars (an alpha family-wise error rate for an
    exact sampler).
    """
    level = alpha / len(pvalues)
    failing = [name for name, p in pvalues.items() if p < level]
    return not failing, failing
