"""Radon across all states: county nested in state.

``log_radon ~ floor + (1 + floor | state/county)`` on every state of the survey (8 states,
468 counties). County names repeat across states ("WASHINGTON" is a
county of 4 of them): hierlm keys a county by its whole path, so each is its own group,
and the summary says so. Each county shrinks toward its own state, and each state toward
the nation.

    python examples/radon_states.py [--fast] [--out DIR]

Writes ``radon_states.md`` and its figures to DIR (default: ``examples/``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import cli, save, settings, table

import hierlm as hl

FORMULA = "log_radon ~ floor + (1 + floor | state/county)"


def run(out: Path, fast: bool = False, seed: int = 1) -> dict:
    """Fit, draw, write the markdown; return the key numbers."""
    data = hl.datasets.radon()
    fit = hl.Model(FORMULA, data).fit(**settings(fast), seed=seed)
    pooled = fit.pooling()
    figures = {
        "states": save(fit.plot.forest("state"), out, "radon_states-states"),
        "counties": save(fit.plot.forest("county", max_groups=40), out, "radon_states-counties"),
        "shrinkage": save(fit.plot.shrinkage(level="county"), out, "radon_states-shrinkage"),
    }
    summary = fit.summary()
    numbers = {
        "groups": fit.design.tree.sizes,
        "repeated": [str(r) for r in fit.design.tree.repeated],
        "sd": {
            name: float(summary.loc[name, "mean"])
            for name in summary.index
            if name.startswith("sd_") or name == "sigma"
        },
        "share": pooled.levels.set_index(["level", "coef"])["share_of_variance"].to_dict(),
        "pooling": pooled.groups.groupby("level")["pool[Intercept]"].median().to_dict(),
        "max_rhat": float(summary["r_hat"].max()),
        "divergences": int(fit.idata.sample_stats["diverging"].sum()),
    }
    (out / "radon_states.md").write_text(_markdown(numbers, figures, fast))
    return numbers


def _markdown(n: dict, figures: dict, fast: bool) -> str:
    note = "\n*Fast run (few draws) for CI; numbers are rough.*\n" if fast else ""
    sds = table(["parameter", "posterior mean"], [(k, f"{v:.3f}") for k, v in n["sd"].items()])
    shares = table(
        ["level", "share of variance (intercept)", "median pooling factor (intercept)"],
        [
            (lv, f"{n['share'][(lv, 'Intercept')]:.3f}", f"{n['pooling'][lv]:.2f}")
            for lv in ("state", "county")
        ],
    )
    repeated = "\n".join(f"- {r}" for r in n["repeated"][:6])
    return f"""# Radon in every state: county nested in state
{note}
`{FORMULA}` on `hl.datasets.radon()`: {n["groups"][0]} states, {n["groups"][1]} counties.

County names repeat across states, and each is its own group (from the fit's summary):

{repeated}

## Variance by level

{sds}

{shares}

{_which_differs_more(n)} A state's estimate rests on hundreds of homes, so states are
barely pooled; most counties have a handful of homes and borrow strength from their state.

![states]({figures["states"]})

![counties]({figures["counties"]})

![shrinkage]({figures["shrinkage"]})

Max R-hat {n["max_rhat"]:.3f}, {n["divergences"]} divergences.
"""


def _which_differs_more(n: dict) -> str:
    state, county = n["share"][("state", "Intercept")], n["share"][("county", "Intercept")]
    if state > county:
        return "States differ more from each other than counties within a state do."
    return "Counties within a state differ more than the states do."


if __name__ == "__main__":
    args = cli(__doc__)
    print(run(args.out, fast=args.fast))
