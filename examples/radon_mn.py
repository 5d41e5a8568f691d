"""Minnesota radon: complete, no and partial pooling; then a varying slope; then uranium.

Gelman & Hill's classic (919 homes in 85 counties): ``log_radon`` on ``floor`` (0 = basement),
homes grouped by county.

1. ``log_radon ~ floor + (1 | county)`` with pooling complete, none and partial, compared
   by leave-one-county-out (how well each predicts a county it has not seen);
2. the floor effect varying by county too: ``(1 + floor | county)``;
3. soil uranium, a county-level predictor: ``log_radon ~ floor + log_uranium + (1 | county)``.
   Uranium explains much of why counties differ, so the county sd shrinks.

    python examples/radon_mn.py [--fast] [--out DIR]

Writes ``radon_mn.md`` and its figures to DIR (default: ``examples/``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import cli, save, settings, table

import hierlm as hl

INTERCEPT = "log_radon ~ floor + (1 | county)"
SLOPE = "log_radon ~ floor + (1 + floor | county)"
URANIUM = "log_radon ~ floor + log_uranium + (1 | county)"


def run(out: Path, fast: bool = False, seed: int = 1) -> dict:
    """Fit the models, draw the figures, write the markdown; return the key numbers."""
    data = hl.datasets.radon("MN")
    kw = settings(fast) | {"seed": seed}
    partial = hl.Model(INTERCEPT, data).fit(**kw)
    comparison = partial.compare_pooling()
    slope = hl.Model(SLOPE, data).fit(**kw)
    uranium = hl.Model(URANIUM, data).fit(**kw)
    figures = {
        "shrinkage": save(partial.plot.shrinkage(), out, "radon_mn-shrinkage"),
        "forest": save(partial.plot.forest("county", max_groups=30), out, "radon_mn-forest"),
        "lines": save(slope.plot.fitted_lines("floor"), out, "radon_mn-lines"),
        "uranium": save(_uranium_figure(uranium, data), out, "radon_mn-uranium"),
    }
    s_int, s_ura = partial.summary(), uranium.summary()
    numbers = {
        "logo": comparison.table["elpd_logo"].to_dict(),
        "logo_se_diff": comparison.table["logo_se_diff"].to_dict(),
        "sd_county": float(s_int.loc["sd_county[Intercept]", "mean"]),
        "sd_county_uranium": float(s_ura.loc["sd_county[Intercept]", "mean"]),
        "beta_uranium": float(s_ura.loc["beta[log_uranium]", "mean"]),
        "sd_floor": float(slope.summary().loc["sd_county[floor]", "mean"]),
        "divergences": int(
            sum(f.idata.sample_stats["diverging"].sum() for f in (partial, slope, uranium))
        ),
    }
    (out / "radon_mn.md").write_text(_markdown(numbers, comparison, figures, fast))
    return numbers


def _uranium_figure(fit: hl.Fit, data) -> object:
    """Estimated county intercepts against soil uranium, with the population line."""
    from matplotlib.figure import Figure

    post = fit.idata.posterior
    counties = [str(c) for c in post["beta_county"].coords["county"].values]
    coef = fit.summary(groups=True)
    icpt = np.array([coef.loc[f"beta_county[{c}, Intercept]", "mean"] for c in counties])
    u_coef = coef.loc[[f"beta_county[{c}, log_uranium]" for c in counties], "mean"].to_numpy()
    uranium = data.groupby("county")["log_uranium"].first().loc[counties].to_numpy()
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.scatter(uranium, icpt + u_coef * uranium, s=12, label="county (basement) level")
    grid = np.linspace(uranium.min(), uranium.max(), 50)
    b = fit.summary().loc[["beta[Intercept]", "beta[log_uranium]"], "mean"].to_numpy()
    ax.plot(grid, b[0] + b[1] * grid, color="black", label="population: a + b·log uranium")
    ax.set_xlabel("county log uranium")
    ax.set_ylabel("expected log radon, basement")
    ax.set_title("A county-level predictor explains county differences")
    ax.legend(fontsize=8)
    return fig


def _markdown(n: dict, comparison, figures: dict, fast: bool) -> str:
    rows = [
        (mode, f"{n['logo'][mode]:.1f}", f"{n['logo_se_diff'][mode]:.1f}")
        for mode in ("partial", "complete", "none")
    ]
    note = "\n*Fast run (few draws) for CI; numbers are rough.*\n" if fast else ""
    return f"""# Minnesota radon: pooling, a varying slope, and a county-level predictor
{note}
Data: `hl.datasets.radon("MN")`, 919 homes in 85 counties.

## 1. Complete, no or partial pooling? `{INTERCEPT}`

Leave-one-county-out (`fit.compare_pooling()`; {comparison.logo_method}):

{table(["pooling", "elpd, leave one county out", "se of the difference to the best"], rows)}

Partial pooling predicts a county it has not seen best: no pooling has nothing to say
about a new county (only the wide prior), complete pooling ignores that counties differ.
County sd: {n["sd_county"]:.3f}.

![shrinkage]({figures["shrinkage"]})

Small counties move furthest toward the state mean: their own few homes say little.

![forest]({figures["forest"]})

## 2. The floor effect varying by county: `{SLOPE}`

The county sd of the floor effect is {n["sd_floor"]:.3f}: the data allow some variation
but cannot pin it down (its posterior reaches near zero).

![fitted lines]({figures["lines"]})

## 3. Soil uranium, a county-level predictor: `{URANIUM}`

Each unit of log uranium raises log radon by {n["beta_uranium"]:.2f}. With it, the county sd
falls from {n["sd_county"]:.3f} to {n["sd_county_uranium"]:.3f}: uranium explains much of
why counties differ.

![uranium]({figures["uranium"]})

Divergences over the three NUTS fits: {n["divergences"]}.
"""


if __name__ == "__main__":
    args = cli(__doc__)
    print(run(args.out, fast=args.fast))
