"""Simulated income by degree > state > county, intercept and slope varying at every level.

``hl.datasets.simulate_nested`` draws incomes (thousands) on years of experience (``x``,
standardised) with a varying intercept and slope at every level of degree > state > county,
and keeps the truth. The fit recovers the sds of every level and every county's line, and
the intervals cover the truth about as often as they claim.

    python examples/income.py [--fast] [--out DIR]

Writes ``income.md`` and its figures to DIR (default: ``examples/``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import cli, save, settings, table

import hierlm as hl

FORMULA = "y ~ x + (1 + x | degree/state/county)"


def run(out: Path, fast: bool = False, seed: int = 1) -> dict:
    """Simulate, fit, compare with the truth, draw, write the markdown."""
    levels = (
        {"degree": 3, "state": 6, "county": 5} if fast else {"degree": 4, "state": 10, "county": 8}
    )
    data = hl.datasets.simulate_nested(levels=levels, seed=seed)
    truth = data.attrs["truth"]
    fit = hl.Model(FORMULA, data).fit(**settings(fast), seed=seed)
    summary = fit.summary(groups=True)
    rows = []
    for level, (sd_icpt, sd_slope) in truth["sd"].items():
        for coef, true in (("Intercept", sd_icpt), ("x", sd_slope)):
            r = summary.loc[f"sd_{level}[{coef}]"]
            rows.append((f"sd_{level}[{coef}]", true, r["mean"], r["hdi_5%"], r["hdi_95%"]))
    r = summary.loc["sigma"]
    rows.append(("sigma", truth["sigma"], r["mean"], r["hdi_5%"], r["hdi_95%"]))
    counties = truth["groups"]["county"]
    est = {
        coef: np.array([summary.loc[f"beta_county[{g}, {coef}]", "mean"] for g in counties.index])
        for coef in ("Intercept", "x")
    }
    low = {
        coef: np.array([summary.loc[f"beta_county[{g}, {coef}]", "hdi_5%"] for g in counties.index])
        for coef in ("Intercept", "x")
    }
    high = {
        coef: np.array(
            [summary.loc[f"beta_county[{g}, {coef}]", "hdi_95%"] for g in counties.index]
        )
        for coef in ("Intercept", "x")
    }
    cover = {
        coef: float(np.mean((counties[coef] >= low[coef]) & (counties[coef] <= high[coef])))
        for coef in ("Intercept", "x")
    }
    figures = {
        "truth": save(_truth_figure(counties, est), out, "income-truth"),
        "forest": save(fit.plot.forest("state"), out, "income-states"),
    }
    numbers = {"rows": len(data), "sizes": fit.design.tree.sizes, "params": rows, "cover": cover}
    numbers["divergences"] = int(fit.idata.sample_stats["diverging"].sum())
    (out / "income.md").write_text(_markdown(numbers, figures, fast))
    return numbers


def _truth_figure(counties, est) -> object:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4))
    for i, coef in enumerate(("Intercept", "x")):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.scatter(counties[coef], est[coef], s=10)
        lim = [
            min(counties[coef].min(), est[coef].min()),
            max(counties[coef].max(), est[coef].max()),
        ]
        ax.plot(lim, lim, color="black", lw=1, label="estimate = truth")
        ax.set_xlabel(f"true county {coef}")
        ax.set_ylabel(f"posterior mean of county {coef}")
        ax.legend(fontsize=8)
    fig.suptitle("Every county's line, estimated against the truth")
    return fig


def _markdown(n: dict, figures: dict, fast: bool) -> str:
    note = "\n*Fast run (fewer groups, few draws) for CI; numbers are rough.*\n" if fast else ""
    rows = [
        (name, f"{true:g}", f"{mean:.2f}", f"[{lo:.2f}, {hi:.2f}]")
        for name, true, mean, lo, hi in n["params"]
    ]
    degree, state, county = n["sizes"]
    return f"""# Income by degree > state > county (simulated, truth known)
{note}
`{FORMULA}`: {n["rows"]:,} rows, {degree} degrees, {state} states, {county} counties
(`hl.datasets.simulate_nested`).

{table(["parameter", "truth", "posterior mean", "90% interval"], rows)}

With only {degree} degrees, the degree-level sds are barely identified: their intervals
are wide, as they should be. The county-level lines are well determined:

90% intervals of the county intercepts cover the truth {n["cover"]["Intercept"]:.0%} of the
time, of the county slopes {n["cover"]["x"]:.0%}.

![truth]({figures["truth"]})

![states]({figures["forest"]})

{n["divergences"]} divergences.
"""


if __name__ == "__main__":
    args = cli(__doc__)
    print(run(args.out, fast=args.fast))
