"""A fit as one self-contained HTML file: data and hierarchy, model and priors, diagnostics,
parameter tables, every plot (PNG embedded as data URIs), the predictive check, variance
decomposition and pooling, and the pooling comparison when one was computed.

The page is semantic HTML from a jinja2 template with inline CSS, no JavaScript and no
network access; it is written to a temporary file and moved into place.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import HierlmError
from .summary import posterior_table

if TYPE_CHECKING:
    from .compare import Comparison
    from .fit import Fit

__all__ = ["build_report", "write_report"]

_MAX_GROUP_ROWS = 50


@dataclass(frozen=True)
class _Figure:
    png: str
    caption: str
    width: int
    height: int


def _png(fig: Any, caption: str) -> _Figure:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    data = buffer.getvalue()
    # PNG header: width and height are big-endian at bytes 16-24.
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return _Figure(base64.b64encode(data).decode("ascii"), caption, width, height)


def _table(frame: pd.DataFrame, index: bool = True) -> str:
    formatters: dict[Any, Callable[[Any], str]] = {}
    for col in frame.columns:
        name = str(col)
        if name.startswith("ess"):
            formatters[col] = lambda x: "—" if x != x else f"{x:,.0f}"
        elif name == "r_hat":
            formatters[col] = lambda x: "—" if x != x else f"{x:.3f}"
    return frame.to_html(
        index=index,
        border=0,
        float_format=lambda x: f"{x:.3g}",
        formatters=formatters or None,
        na_rep="—",
        escape=True,
    )


def _levels(fit: Fit) -> list[dict[str, Any]]:
    """Per level of the primary chain: groups and rows per group."""
    tree = fit.design.tree
    out = []
    for k, name in enumerate(tree.level_names):
        rows = tree.level_totals(fit.stats.n, k).astype(int)
        out.append(
            {
                "name": name,
                "groups": tree.sizes[k],
                "min": int(rows.min()),
                "median": f"{np.median(rows):g}",
                "max": int(rows.max()),
            }
        )
    for crossed in fit.design.crossed:
        for k, name in enumerate(crossed.level_names):
            out.append(
                {
                    "name": f"{name} (crossed)",
                    "groups": crossed.sizes[k],
                    "min": "—",
                    "median": "—",
                    "max": "—",
                }
            )
    return out


def _group_tables(fit: Fit) -> list[dict[str, str]]:
    out = []
    post = fit.idata["posterior"]
    for level in fit.design.level_names:
        name = f"beta_{level}"
        labels = [str(g) for g in post[name].coords[level].values]
        shown = labels
        note = ""
        if len(labels) > _MAX_GROUP_ROWS:
            picks = np.unique(np.linspace(0, len(labels) - 1, _MAX_GROUP_ROWS).astype(int))
            shown = [labels[i] for i in picks]
            note = (
                f"Showing {len(shown)} of {len(labels):,} groups, evenly spaced in label "
                "order; fit.summary(groups=True) lists every one."
            )
        table = posterior_table(post[[name]].sel({level: shown}), [name])
        out.append({"title": f"Group coefficients: {level}", "note": note, "html": _table(table)})
    return out


def _plots(fit: Fit, check: Any) -> tuple[list[_Figure], list[str]]:
    """Every plot the fit supports; the ones that do not apply are listed with the reason."""
    from . import plots

    figures: list[_Figure] = []
    skipped: list[str] = []

    def add(caption: str, make: Callable[[], Any]) -> None:
        try:
            figures.append(_png(make(), caption))
        except HierlmError as exc:
            skipped.append(f"{caption}: not drawn ({exc}).")

    add(
        "Trace and rank plots of the variance parameters and population coefficients",
        lambda: plots.trace(fit),
    )
    if any(str(v).startswith(("sd_", "sigma")) for v in fit.idata["posterior"].data_vars):
        add(
            "Pair plot of the variance parameters (divergent draws marked)", lambda: plots.pair(fit)
        )
    levels = fit.design.level_names
    for level in levels:
        add(
            f"Group estimates at level {level}, sorted, with the parent's estimate marked",
            functools.partial(plots.forest, fit, level),
        )
    if fit.design.tree.n_levels and fit.data is not None:
        add(
            "Shrinkage: each group's own least-squares estimate moves to its partial-pooling estimate",
            lambda: plots.shrinkage(fit),
        )
        slope = _slope_column(fit)
        if slope is not None:
            add(
                f"Fitted lines over each chosen group's data ({slope})",
                lambda: plots.fitted_lines(fit, slope),
            )
    for level in levels:
        if f"sd_{level}" in fit.idata["posterior"]:
            add(
                f"Funnel check at level {level}: log sd against a group's deviation",
                functools.partial(plots.funnel, fit, level),
            )
    if check is not None:
        add(
            "Posterior predictive check: replicated data over the observed, and test statistics",
            lambda: plots.ppc(fit, check),
        )
    return figures, skipped


def _slope_column(fit: Fit) -> str | None:
    """A numeric predictor to draw fitted lines against: the first column of X that is a
    plain data column (not the intercept or an encoded category)."""
    frame = fit.data
    if frame is None:
        return None
    for name in fit.design.coef_names:
        if name in frame.columns and pd.api.types.is_numeric_dtype(frame[name]):
            return name
    return None


def build_report(fit: Fit, comparison: Comparison | None = None, seed: int = 0) -> str:
    """The report's HTML text."""
    import jinja2
    import matplotlib

    from . import __version__

    matplotlib.use("Agg", force=False)
    d, info, spec = fit.design, fit.info, fit.spec
    check = None
    ppc_missing = ""
    if fit.data is not None:
        check = fit.ppc(seed=seed)
    else:
        ppc_missing = (
            f"The fit did not keep its {info.n_rows:,} rows, so the check was not run; "
            "run fit.ppc(data=...) with them."
        )
    figures, skipped = _plots(fit, check)
    pooled = None
    if d.level_names:
        p = fit.pooling()
        summary = (
            p.groups.drop(columns=["group"])
            .groupby("level", sort=False)
            .agg(["median", "min", "max"])
            .round(3)
        )
        summary.columns = [f"{a} {b}" for a, b in summary.columns]
        pooled = {"levels": _table(p.levels, index=False), "groups": _table(summary)}
    sections = [
        ("data", "Data and hierarchy"),
        ("model", "Model and priors"),
        ("diagnostics", "Diagnostics"),
        ("parameters", "Parameters"),
        ("plots", "Plots"),
        ("ppc", "Posterior predictive check"),
        ("pooling", "Variance decomposition and pooling"),
    ]
    comp = None
    if comparison is not None:
        sections.append(("comparison", "Pooling comparison"))
        comp = {
            "level": comparison.level,
            "method": comparison.logo_method,
            "table": _table(comparison.table),
            "warnings": comparison.warnings,
        }
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hierlm", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2").render(
        formula=spec.formula,
        family=spec.family,
        pooling=spec.pooling,
        engine="collapsed (exact)" if info.engine == "collapsed" else "full latent",
        method=info.method,
        rows=info.n_rows,
        chains=info.chains,
        draws=info.draws,
        tune=info.tune,
        seed=info.seed,
        version=__version__,
        written=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        sections=sections,
        levels=_levels(fit),
        notes=fit.notes(),
        priors=info.priors,
        parameterization=[str(c) for c in info.parameterization],
        convergence=str(fit.convergence()),
        versions=", ".join(f"{name} {v}" for name, v in info.versions.items()),
        findings=[{"severity": f.severity, "text": str(f)} for f in fit.diagnose()],
        parameters=_table(fit.summary()),
        group_tables=_group_tables(fit),
        figures=figures,
        skipped=skipped,
        ppc=None
        if check is None
        else {
            "n": len(check.replicated),
            "table": _table(check.statistics),
            "extreme": check.extreme(),
        },
        ppc_missing=ppc_missing,
        variance=pooled,
        comparison=comp,
    )


def write_report(
    fit: Fit,
    path: str | os.PathLike[str],
    comparison: Comparison | None = None,
    overwrite: bool = True,
    seed: int = 0,
) -> Path:
    """Write the report to ``path`` through a temporary file and a rename."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise HierlmError(f"{path} exists; pass overwrite=True (--force) to replace it")
    html = build_report(fit, comparison, seed)
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
