"""Render a fit as text for the terminal (rich). The only module that writes to a console."""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .fit import Fit

__all__ = ["render_check", "render_comparison", "render_sensitivity", "render_summary"]


def _fmt(x: float) -> str:
    if x != x:
        return "—"
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.3f}"
    return f"{x:.3g}"


def render_summary(fit: Fit, console: Console, groups: bool = False) -> None:
    """Print the model, data, priors, parameter table and diagnostics."""
    d = fit.design
    spec = d.spec
    info = fit.info
    console.print(f"[bold]hierlm fit[/bold]  {escape(spec.formula)}")
    family = spec.family + (
        " (log scale)" if spec.transform == "log" and spec.family == "gaussian" else ""
    )
    engine = "collapsed (exact)" if info.engine == "collapsed" else "full latent"
    console.print(
        f"family: {family}   pooling: {spec.pooling}   rows: {info.n_rows:,}   engine: {engine}"
    )
    if d.level_names:
        sizes = [len(labels) for labels in d.level_labels]
        levels = ", ".join(f"{n}: {g:,}" for n, g in zip(d.level_names, sizes, strict=True))
        crossed = (
            "   (crossed: " + ", ".join("/".join(t.level_names) for t in d.crossed) + ")"
            if d.crossed
            else ""
        )
        console.print(f"groups: {levels}{crossed}")
    sampling = (
        f"chains: {info.chains}   draws: {info.draws}   tune: {info.tune}   seed: {info.seed}"
    )
    if info.timings:
        sampling += f"   time: {sum(info.timings.values()):.1f} s"
    console.print(sampling)
    for choice in info.parameterization:
        console.print(f"parameterization: {escape(str(choice))}")
    for note in fit.notes():
        console.print(f"[yellow]note:[/yellow] {escape(note)}")

    priors = Table(title="Priors (original scale)", title_justify="left", show_edge=False)
    for col in ("parameter", "prior", "source"):
        priors.add_column(col)
    for p in info.priors:
        priors.add_row(escape(p.parameter), escape(p.prior), escape(p.source))
    console.print(priors)

    table = fit.summary(groups=groups)
    params = Table(title="Posterior", title_justify="left", show_edge=False)
    params.add_column("parameter", no_wrap=True)
    for col in table.columns:
        params.add_column(col, justify="right")
    for label, row in table.iterrows():
        cells = [
            _fmt(float(v))
            if not col.startswith("ess")
            else (f"{v:.0f}" if math.isfinite(v) else "—")
            for col, v in zip(table.columns, row.to_numpy(), strict=True)
        ]
        params.add_row(escape(str(label)), *cells)
    console.print(params)
    if not groups and d.level_names:
        n = sum(len(labels) for labels in d.level_labels) * len(d.coef_names)
        console.print(
            f"[dim]{n:,} group coefficients (beta_<level>) are in the fit; show them with --groups.[/dim]"
        )
    _render_pooling(fit, console)
    console.print("[bold]Diagnostics[/bold]")
    console.print(escape(str(fit.convergence())))
    for finding in fit.diagnose():
        style = {"ok": "green", "warning": "yellow", "error": "red"}[finding.severity]
        console.print(f"[{style}]{finding.severity}:[/{style}] {escape(str(finding))}")
    if info.versions:
        made = ", ".join(f"{name} {v}" for name, v in info.versions.items())
        console.print(f"[dim]fitted with {escape(made)}; seed {info.seed}[/dim]")


def _render_pooling(fit: Fit, console: Console) -> None:
    if not fit.design.level_names:
        return
    pooled = fit.pooling()
    table = Table(title="Variance by level", title_justify="left", show_edge=False)
    for col in ("level", "coef", "sd", "share of variance", "median pooling factor"):
        table.add_column(col, justify="left" if col in ("level", "coef") else "right")
    groups = pooled.groups
    for _, row in pooled.levels.iterrows():
        col = f"pool[{row['coef']}]"
        at = groups[groups["level"] == row["level"]]
        median = float(at[col].median()) if col in at and len(at) else float("nan")
        table.add_row(
            escape(str(row["level"])),
            escape(str(row["coef"])),
            _fmt(float(row["sd"])),
            _fmt(float(row["share_of_variance"])),
            _fmt(median),
        )
    console.print(table)
    console.print(
        "[dim]share of variance: the level's intercept variance over the total (ICC); "
        "pooling factor: 0 = a group's own data decide, 1 = pooled into its parent "
        "(per group: Fit.pooling()).[/dim]"
    )


def render_comparison(comparison, console: Console) -> None:
    """Print a pooling comparison: LOO and leave-one-group-out side by side."""
    table = Table(
        title=f"Pooling comparison (leave one {comparison.level} out: {comparison.logo_method})",
        title_justify="left",
        show_edge=False,
    )
    shown = {
        "elpd_loo": "elpd LOO",
        "se": "se",
        "elpd_diff": "diff",
        "se_diff": "se diff",
        "p_loo": "p_loo",
        "elpd_logo": f"elpd LO-{comparison.level}-O",
        "logo_diff": "diff",
        "logo_se_diff": "se diff",
        "pareto_k_rows": "k>0.7 rows",
        "pareto_k_groups": "k>0.7 groups",
    }
    table.add_column("pooling")
    for heading in shown.values():
        table.add_column(heading, justify="right")
    for name, row in comparison.table.iterrows():
        cells = [
            f"{int(row[col])}" if col.startswith("pareto") else f"{float(row[col]):.1f}"
            for col in shown
        ]
        table.add_row(escape(str(name)), *cells)
    console.print(table)
    best = comparison.table["elpd_logo"].idxmax()
    console.print(
        f"Best at predicting a new {comparison.level}: pooling={best} (higher elpd is better; "
        "a difference within about 2 of its se_diff is not clear)."
    )
    for note in comparison.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(note)}")


def render_check(check, console: Console) -> None:
    """Print a predictive check's test statistics and what stands out."""
    table = Table(
        title=f"{check.source.capitalize()} predictive check ({len(check.replicated)} replicated "
        "data sets)",
        title_justify="left",
        show_edge=False,
    )
    table.add_column("statistic")
    for col in check.statistics.columns:
        table.add_column(col, justify="right")
    for name, row in check.statistics.iterrows():
        table.add_row(escape(str(name)), *(_fmt(float(v)) for v in row.to_numpy()))
    console.print(table)
    console.print(
        "[dim]p_value = P(T(replicated) > T(observed)), ties counting half; near 0 or 1 means the model rarely "
        "reproduces that feature of the data.[/dim]"
    )
    extreme = check.extreme()
    for line in extreme:
        console.print(f"[yellow]warning:[/yellow] {escape(line)}")
    if not extreme:
        console.print("[green]ok:[/green] every statistic is typical of the replicates.")


def render_sensitivity(result, console: Console) -> None:
    """Print which parameters move when a prior class is widened or narrowed."""
    table = result.table
    if len(table):
        worst = table.assign(size=table["shift_sd"].abs()).sort_values("size", ascending=False)
        worst = worst.drop_duplicates("parameter").head(10)
        shown = Table(
            title="Prior sensitivity (largest shifts, in posterior sds)",
            title_justify="left",
            show_edge=False,
        )
        for col in ("parameter", "prior", "width", "shift"):
            shown.add_column(col, justify="left" if col in ("parameter", "prior") else "right")
        for _, row in worst.iterrows():
            shown.add_row(
                escape(str(row["parameter"])),
                escape(str(row["prior"])),
                f"{row['width']:g}x",
                f"{row['shift_sd']:+.2f}",
            )
        console.print(shown)
    for line in result.findings:
        console.print(f"[yellow]warning:[/yellow] {escape(line)}")
    if not result.findings:
        console.print(
            f"[green]ok:[/green] no posterior mean moves by more than {result.threshold:g} "
            "posterior sds when any prior class is made 2x wider or narrower."
        )
