"""King County house prices: log price on log living area, varying by zipcode.

``log(price) ~ log_sqft_living + (1 + log_sqft_living | zipcode)`` on the King County
(Seattle) sales of 2014-15. One zipcode is held out entirely, then predicted as a zipcode
the model never saw: its homes get the population's line plus a new zipcode's deviation,
and the intervals widen to say so.

    python examples/kc_house.py [--fast] [--out DIR]

Writes ``kc_house.md`` and its figures to DIR (default: ``examples/``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import cli, save, settings, table

import hierlm as hl

FORMULA = "log(price) ~ log_sqft_living + (1 + log_sqft_living | zipcode)"
HELD_OUT = "98115"


def run(out: Path, fast: bool = False, seed: int = 1) -> dict:
    """Fit without one zipcode, predict it, draw, write the markdown."""
    data = hl.datasets.kc_house()
    if fast:
        data = data.sample(4000, random_state=seed).reset_index(drop=True)
    train = data[data["zipcode"] != HELD_OUT]
    new = data[data["zipcode"] == HELD_OUT]
    fit = hl.Model(FORMULA, train).fit(**settings(fast), seed=seed)
    pred = fit.predict(new, kind="response")
    known = fit.predict(train.head(len(new)), kind="response")
    price = new["price"].to_numpy()
    covered = (price >= pred["hdi_5%"]) & (price <= pred["hdi_95%"])
    figures = {
        "forest": save(fit.plot.forest("zipcode", coef="log_sqft_living"), out, "kc_house-forest"),
        "lines": save(fit.plot.fitted_lines("log_sqft_living"), out, "kc_house-lines"),
        "new": save(_prediction_figure(new, pred), out, "kc_house-new-zipcode"),
    }
    summary = fit.summary()
    numbers = {
        "rows": len(train),
        "zipcodes": fit.design.tree.sizes[0],
        "held_out_rows": len(new),
        "coverage": float(covered.mean()),
        "known_level": sorted(set(pred["known_level"])),
        "width_new": float(np.median(np.log(pred["hdi_95%"] / pred["hdi_5%"]))),
        "width_known": float(np.median(np.log(known["hdi_95%"] / known["hdi_5%"]))),
        "elasticity": float(summary.loc["beta[log_sqft_living]", "mean"]),
        "sd_slope": float(summary.loc["sd_zipcode[log_sqft_living]", "mean"]),
        "max_rhat": float(summary["r_hat"].max()),
    }
    (out / "kc_house.md").write_text(_markdown(numbers, figures, fast))
    return numbers


def _prediction_figure(new, pred) -> object:
    from matplotlib.figure import Figure

    order = np.argsort(new["sqft_living"].to_numpy())
    x = new["sqft_living"].to_numpy()[order]
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    ax.fill_between(
        x,
        pred["hdi_5%"].to_numpy()[order],
        pred["hdi_95%"].to_numpy()[order],
        alpha=0.3,
        label="90% predictive interval",
    )
    ax.scatter(x, new["price"].to_numpy()[order], s=6, color="black", label="actual sales")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("living area (sq ft)")
    ax.set_ylabel("price (USD)")
    ax.set_title(f"Zipcode {HELD_OUT}, never seen by the model")
    ax.legend(fontsize=8)
    return fig


def _markdown(n: dict, figures: dict, fast: bool) -> str:
    note = (
        "\n*Fast run (a sample of 4,000 sales, few draws) for CI; numbers are rough.*\n"
        if fast
        else ""
    )
    rows = [
        ("price elasticity of living area (population)", f"{n['elasticity']:.3f}"),
        ("sd of the elasticity across zipcodes", f"{n['sd_slope']:.3f}"),
        ("coverage of 90% intervals, held-out zipcode", f"{n['coverage']:.3f}"),
        ("median interval width (log ratio), held-out zipcode", f"{n['width_new']:.2f}"),
        ("median interval width (log ratio), known zipcodes", f"{n['width_known']:.2f}"),
    ]
    return f"""# King County house prices by zipcode, and a zipcode the model never saw
{note}
`{FORMULA}` on {n["rows"]:,} sales in {n["zipcodes"]} zipcodes; all {n["held_out_rows"]} sales
of zipcode {HELD_OUT} held out.

{table(["quantity", "value"], rows)}

The held-out homes are predicted at known level {", ".join(n["known_level"])}: the model
starts from the population line and adds a new zipcode's deviation, one per posterior
draw (`fit.predict(new, kind="response")`).

![new zipcode]({figures["new"]})

![forest]({figures["forest"]})

![lines]({figures["lines"]})

Max R-hat {n["max_rhat"]:.3f}.
"""


if __name__ == "__main__":
    args = cli(__doc__)
    print(run(args.out, fast=args.fast))
