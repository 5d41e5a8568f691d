"""Prior sensitivity: refit with each prior class twice as wide and half as wide.

A conclusion that hinges on a prior moves when that prior changes. For every class of prior
the model has (population slopes, intercept, group sds, residual sd, correlations), the model
is refitted with every prior of the class, defaults included, made 2x wider and 2x narrower
(scales doubled or halved; an Exponential's rate and an LKJ's η the other way). A parameter
is sensitive when its posterior mean moves by more than ``threshold`` posterior sds of the
original fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .priors import Priors

if TYPE_CHECKING:
    from .fit import Fit

__all__ = ["Sensitivity", "sensitivity"]


@dataclass(frozen=True)
class Sensitivity:
    """``table``: per prior class, width factor and parameter, the shift of the posterior
    mean in units of the original posterior sd (``shift_sd``); ``findings``: the parameters
    that moved more than the threshold, in plain words."""

    table: pd.DataFrame
    findings: list[str] = field(default_factory=list)
    threshold: float = 0.25


def _classes(fit: Fit) -> list[str]:
    enc = fit.design.encoding
    post = fit.idata["posterior"]
    out = []
    if any(enc.in_population[j] and j != enc.intercept for j in range(enc.p)):
        out.append("beta")
    if enc.intercept is not None and enc.in_population[enc.intercept]:
        out.append("intercept")
    if any(str(v).startswith("sd_") for v in post.data_vars):
        out.append("sd")
    if "sigma" in post:
        out.append("sigma")
    if any(str(v).startswith("corr_") for v in post.data_vars):
        out.append("corr")
    return out


def sensitivity(
    fit: Fit,
    frame: pd.DataFrame,
    factors: tuple[float, ...] = (0.5, 2.0),
    threshold: float = 0.25,
    settings: dict[str, Any] | None = None,
) -> Sensitivity:
    """Refit with each prior class widened and narrowed; see :meth:`hierlm.Fit.sensitivity`."""
    from .model import Model

    base = fit.summary()
    options = dict(fit.info.options)
    priors = options.pop("priors", None) or Priors()
    run: dict[str, Any] = {
        "chains": fit.info.chains,
        "draws": fit.info.draws,
        "tune": fit.info.tune,
    }
    run |= {"seed": fit.info.seed} | (settings or {})
    rows = []
    for cls in _classes(fit):
        for factor in factors:
            model = Model(fit.spec.formula, frame, priors=priors.widened(cls, factor), **options)
            other = model.fit(**run).summary()
            shared = base.index.intersection(other.index)
            shift = (other.loc[shared, "mean"] - base.loc[shared, "mean"]) / base.loc[shared, "sd"]
            for name, value in shift.items():
                rows.append(
                    {
                        "prior": cls,
                        "width": factor,
                        "parameter": name,
                        "mean": float(base.loc[name, "mean"]),
                        "refit_mean": float(other.loc[name, "mean"]),
                        "shift_sd": float(value),
                    }
                )
    table = pd.DataFrame(rows)
    findings = []
    if len(table):
        moved = table[np.abs(table["shift_sd"]) > threshold]
        for (cls, param), group in moved.groupby(["prior", "parameter"], sort=False):
            worst = group.loc[group["shift_sd"].abs().idxmax()]
            way = "wider" if worst["width"] > 1 else "narrower"
            findings.append(
                f"{param} depends on the {cls} prior: with it {worst['width']:g}x "
                f"({way}), its posterior mean moves from {worst['mean']:.4g} to "
                f"{worst['refit_mean']:.4g}, {abs(worst['shift_sd']):.2f} posterior sds. "
                f"The data do not pin it down alone; state the {cls} prior you chose and why, "
                "or collect more data for it."
            )
    return Sensitivity(table, findings, threshold)
