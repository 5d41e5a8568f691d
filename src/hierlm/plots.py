"""Plots of a fit: convergence, group estimates, shrinkage, fitted lines and checks.

Every function takes a :class:`hierlm.Fit` and returns a :class:`matplotlib.figure.Figure`.
Figures are made without pyplot, so nothing is registered with or shown by a GUI backend:
a notebook displays the returned figure, and ``fig.savefig(path)`` writes it anywhere.
ArviZ draws wherever it has a plot for the job (trace, rank, forest, pair, predictive
densities). The same functions are reachable as ``fit.plot.<name>(...)``.

Every coefficient is on the model's scale: the original scale of the response for Gaussian
models, ``log(y)`` for lognormal models and ``log(y)`` formulas, and the link scale for
logit- and log-link families.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import HierlmError
from .group_tree import GroupTree, path_labels

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

    from .check import PredictiveCheck
    from .fit import Fit

__all__ = [
    "FitPlots",
    "fitted_lines",
    "forest",
    "funnel",
    "pair",
    "ppc",
    "shrinkage",
    "shrinkage_table",
    "trace",
]

_LINK_FAMILIES = ("bernoulli", "binomial", "poisson")


# --- the plots -------------------------------------------------------------------------


def trace(fit: Fit, var_names: list[str] | None = None) -> Figure:
    """Trace, density and rank plots of the population and variance parameters.

    One row per parameter entry: ArviZ's per-chain density and trace (divergent draws
    marked under the trace), and its rank plot, where every chain's histogram of ranks is
    flat when the chains mix.

    Parameters
    ----------
    fit
        The fit.
    var_names
        Posterior variables to plot; default :meth:`hierlm.Fit.main_vars` (``beta``,
        ``sigma``, ``sd_<level>``, ``corr_<level>``). Entries that are constant by
        construction (a correlation's diagonal, a coefficient fixed at 0) are left out,
        and a correlation shows each pair once, as :meth:`hierlm.Fit.summary` does.

    Returns
    -------
    matplotlib.figure.Figure
        Rows of three axes: density, trace, rank.
    """
    import arviz as az

    ds = _entries(fit, var_names)
    n = _n_entries(ds)
    fig = _figure(figsize=(12, max(3.0, 2.1 * n)))
    axes = fig.subplots(n, 3, squeeze=False)
    idata = az.InferenceData(posterior=ds, sample_stats=fit.idata["sample_stats"])
    with _arviz_drawing():
        az.plot_trace(idata, axes=axes[:, :2], compact=False)
        az.plot_rank(idata, ax=axes[:, 2])
    fig.suptitle(f"Trace and rank plots: {fit.spec.formula}")
    return fig


def forest(
    fit: Fit, level: str, coef: str | None = None, max_groups: int = 40, hdi_prob: float = 0.9
) -> Figure:
    """Caterpillar plot of one coefficient across a level's groups, sorted by posterior mean.

    Each row is a group's ``beta_<level>`` for ``coef`` (ArviZ's forest plot: posterior
    mean, interquartile range and HDI). The parent's estimate is marked: the population
    coefficient's posterior mean as a line at the top level (and for a crossed grouping),
    and below it each group's parent group's posterior mean as a marker on the row.

    Parameters
    ----------
    fit
        The fit.
    level
        A grouping level of the model.
    coef
        The coefficient; default the first that varies at ``level``.
    max_groups
        At most this many rows. A level with more groups shows a subset evenly spaced by
        rank, the highest and lowest included, and the title says so.
    hdi_prob
        Mass of the highest-density interval.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; its title says how many groups are shown.
    """
    import arviz as az

    _, k = _level_position(fit, level)
    coef = _level_coef(fit, level, coef)
    if max_groups < 2:
        raise HierlmError(f"max_groups must be at least 2, got {max_groups}")
    name = f"beta_{level}"
    values = fit.idata["posterior"][name].sel(coef=coef)
    labels = _group_labels(fit, level)
    means = values.mean(("chain", "draw")).to_numpy()
    order = np.argsort(-means, kind="stable")  # highest first: ArviZ draws the first on top
    n_groups = len(labels)
    if n_groups > max_groups:
        order = order[_spread(n_groups, max_groups)]
        shown = f"showing {len(order)} of {n_groups:,} groups, evenly spaced by rank (extremes included)"
    else:
        shown = f"all {n_groups:,} groups"
    picked = [labels[i] for i in order]
    ds = values.sel({level: picked}).to_dataset(name=name)
    fig = _figure(figsize=(7.5, 2.4 + 0.3 * len(picked)))
    ax = fig.subplots()
    with _arviz_drawing():
        az.plot_forest(
            az.InferenceData(posterior=ds),
            combined=True,
            hdi_prob=hdi_prob,
            labeller=az.labels.NoVarLabeller(),
            ax=ax,
        )
    parent_draws, parent_name = _parent_draws(fit, level, coef)
    if k == 0:
        ax.axvline(
            float(parent_draws.mean()),
            color="C3",
            linestyle="--",
            label=f"population mean of beta[{coef}]",
        )
    else:
        parent_means = parent_draws.mean(axis=0)
        rows = {
            t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks(), strict=False)
        }
        ys = [rows[lab] for lab in picked]
        ax.scatter(
            parent_means[order],
            ys,
            marker="D",
            s=22,
            color="C3",
            zorder=4,
            label=f"posterior mean of the parent {parent_name} group",
        )
    ax.legend(fontsize="small")
    ax.set_xlabel(f"beta_{level}[·, {coef}] (mean, 50% and {hdi_prob:.0%} HDI)")
    ax.set_title(f"{coef} by {level}, sorted by posterior mean: {shown}", fontsize="medium")
    return fig


def shrinkage_table(
    fit: Fit, level: str | None = None, coef: str = "Intercept", data: Any = None
) -> pd.DataFrame:
    """Per group, one coefficient under no, partial and complete pooling.

    Parameters
    ----------
    fit
        A Gaussian or lognormal fit with one nesting chain.
    level
        A level of the chain; default the deepest.
    coef
        The coefficient (a column of the design, e.g. ``"Intercept"`` or ``"floor"``).
    data
        The rows; default the rows the fit kept.

    Returns
    -------
    DataFrame
        One row per group of ``level``, in the posterior's order: ``group``, ``n`` (its
        rows), ``no_pooling`` (the group's own estimate), ``partial`` (the posterior mean
        of ``beta_<level>[group, coef]``), ``complete`` (the least-squares estimate from
        all rows, ignoring the groups), ``parent`` (the posterior mean of the parent's
        coefficient: the population's at the top level), and ``method``: how
        ``no_pooling`` was found (``"least squares"``, ``"residuals"`` or ``"none"``).

    Raises
    ------
    HierlmError
        For link-scale or Student-t families and crossed groupings, where least squares
        is not the model's own-data estimate, and for an unknown level or coefficient.

    Notes
    -----
    Everything is on the model's scale: ``z = y``, or ``z = log y`` for lognormal models.
    With ``X`` the full design (every predictor), a group's rows ``g`` give

    .. math::

        \\hat β_g = \\arg\\min_β \\lVert W_g^{1/2} (z_g - X_g β) \\rVert^2 ,

    ``W = I``, or ``diag(1/s_i²)`` with known standard errors ``y | se(s)``; ``complete``
    is the same over all rows. When ``X_gᵀ W_g X_g`` is singular (fewer rows than
    coefficients, or a predictor constant within the group) the coefficient alone is fitted
    to the group's residuals from the complete-pooling fit ``\\hat β^c`` (``method =
    "residuals"``):

    .. math::

        \\hat β_{gj} = \\hat β^c_j + \\frac{x_{gj}ᵀ W_g (z_g - X_g \\hat β^c)}
        {x_{gj}ᵀ W_g x_{gj}} ,

    which for the intercept is ``\\hat β^c_0`` plus the group's mean residual. A group
    whose rows leave the coefficient's column all zero gets NaN (``method = "none"``),
    and so does a group without rows in ``data``.
    """
    from .check import frame_for

    spec = fit.spec
    if spec.family not in ("gaussian", "lognormal"):
        raise HierlmError(
            f"a shrinkage plot compares each group's least-squares fit with its partial-pooling "
            f"estimate, and least squares is not a {spec.family} model's own-data estimate; it "
            "needs a gaussian or lognormal model. Use forest() to see the group estimates."
        )
    if spec.crossed:
        raise HierlmError(
            "a shrinkage plot needs one nesting chain: in a crossed model a row's prediction "
            "also carries the other grouping's deviation, so a group's own least-squares fit "
            "is not comparable with its coefficients. Use forest() for each grouping."
        )
    tree = fit.design.tree
    if not tree.n_levels:
        raise HierlmError("the model has no grouping levels, so there is nothing to shrink")
    level = tree.level_names[-1] if level is None else level
    _, k = _level_position(fit, level)
    names = list(fit.design.coef_names)
    if coef not in names:
        raise HierlmError(f"the model has no coefficient {coef!r}; its coefficients: {names}")
    j = names.index(coef)
    frame = _rows(fit, frame_for(fit, data), tree.paths[k])
    x = fit.design.encoding.encode(frame)
    z = _model_scale_response(fit, frame)
    if spec.se is not None:
        root_w = 1.0 / frame[spec.se].to_numpy(np.float64)
        x, z = x * root_w[:, None], z * root_w
    complete = np.linalg.lstsq(x, z, rcond=None)[0]
    labels = _group_labels(fit, level)
    codes = pd.Index(labels).get_indexer(pd.Index(path_labels(frame, tree.paths[k])))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(labels) + 1))
    n = np.diff(bounds)
    own = np.full(len(labels), np.nan)
    method = np.full(len(labels), "none", dtype=object)
    p = x.shape[1]
    for g in range(len(labels)):
        rows = order[bounds[g] : bounds[g + 1]]
        if not len(rows):
            continue
        xg, zg = x[rows], z[rows]
        sol, _, rank, _ = np.linalg.lstsq(xg, zg, rcond=None)
        if rank == p:
            own[g], method[g] = sol[j], "least squares"
            continue
        col = xg[:, j]
        scale = float(col @ col)
        if scale > 0:
            own[g] = complete[j] + float(col @ (zg - xg @ complete)) / scale
            method[g] = "residuals"
    partial = fit.idata["posterior"][f"beta_{level}"].sel(coef=coef).mean(("chain", "draw"))
    parent_draws, _ = _parent_draws(fit, level, coef)
    return pd.DataFrame(
        {
            "group": labels,
            "n": n,
            "no_pooling": own,
            "partial": partial.to_numpy(),
            "complete": complete[j],
            "parent": parent_draws.mean(axis=0),
            "method": method,
        }
    )


def shrinkage(
    fit: Fit,
    level: str | None = None,
    coef: str = "Intercept",
    data: Any = None,
    max_groups: int = 300,
) -> Figure:
    """Shrinkage plot: each group's own estimate pulled toward the others.

    Per group of ``level`` (default the deepest), a segment runs from the no-pooling
    estimate (hollow: least squares on the group's own rows) to the partial-pooling one
    (filled: the posterior mean), at the group's number of rows; point size grows with it.
    A dashed line marks complete pooling, least squares on all rows ignoring the groups.
    Partial pooling pulls a group toward its parent: at the top level the population
    coefficient, whose posterior mean is the dotted line; below it, a grey tick marks each
    group's parent's posterior mean. The numbers are :func:`shrinkage_table`'s.

    Parameters
    ----------
    fit
        A Gaussian or lognormal fit with one nesting chain.
    level
        A level of the chain; default the deepest.
    coef
        The coefficient.
    data
        The rows; default the rows the fit kept.
    max_groups
        Above this many groups, draw this many, evenly spaced in their number of rows
        (both ends included), and say so in the title.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; rows per group on the x axis (a log scale when they span a factor of
        10 or more).
    """
    from matplotlib.collections import LineCollection

    table = shrinkage_table(fit, level, coef, data)
    level = fit.design.tree.level_names[-1] if level is None else level
    _, k = _level_position(fit, level)
    shown = table[table["method"] != "none"]
    drawn = len(shown)
    if drawn > max_groups:
        by_size = shown.sort_values("n", kind="stable")
        shown = by_size.iloc[_spread(drawn, max_groups)]
    rng = np.random.default_rng(0)
    # Many groups share a row count; a little multiplicative jitter keeps them apart.
    xs = shown["n"].to_numpy(np.float64) * np.exp(rng.uniform(-0.12, 0.12, len(shown)))
    own, partial = shown["no_pooling"].to_numpy(), shown["partial"].to_numpy()
    n_max = max(float(shown["n"].max()), 1.0) if len(shown) else 1.0
    size = 12 + 100 * np.sqrt(shown["n"].to_numpy() / n_max)
    fig = _figure(figsize=(9, 6))
    ax = fig.subplots()
    ax.add_collection(
        LineCollection(
            [((a, b), (a, c)) for a, b, c in zip(xs, own, partial, strict=True)],
            colors="0.55",
            linewidths=0.8,
        )
    )
    exact = (shown["method"] == "least squares").to_numpy()
    ax.scatter(
        xs[exact],
        own[exact],
        s=size[exact],
        facecolors="none",
        edgecolors="C0",
        label="no pooling: the group's own least squares",
    )
    if (~exact).any():
        ax.scatter(
            xs[~exact],
            own[~exact],
            s=size[~exact],
            marker="s",
            facecolors="none",
            edgecolors="C2",
            label="no pooling, XᵀX singular: fitted to the residuals of complete pooling",
        )
    ax.scatter(xs, partial, s=size, color="C1", zorder=3, label="partial pooling: posterior mean")
    if k > 0:
        ax.scatter(
            xs,
            shown["parent"],
            marker="_",
            s=60,
            color="0.3",
            label="the parent group's posterior mean",
        )
    ax.axhline(
        float(table["complete"].iloc[0]),
        color="k",
        linestyle="--",
        label="complete pooling: least squares on all rows",
    )
    if k == 0:
        ax.axhline(
            float(table["parent"].iloc[0]),
            color="C3",
            linestyle=":",
            label=f"population beta[{coef}]: posterior mean",
        )
    sizes = shown["n"].to_numpy(np.float64)
    if len(sizes) and sizes.max() >= 10 * sizes.min():
        ax.set_xscale("log")
        ax.set_xlabel(f"rows in the {level} group (log scale)")
    else:
        ax.set_xlabel(f"rows in the {level} group")
    ax.set_ylabel(f"{coef} ({_scale_label(fit)})")
    ax.legend(fontsize="small")
    title = (
        f"Shrinkage of {coef} across {len(table):,} {level} groups: no pooling → partial pooling"
    )
    if len(shown) < drawn:
        title += f"\nshowing {len(shown)} of {drawn:,} groups, evenly spaced by rows"
    skipped = len(table) - drawn
    if skipped:
        title += f"\n{skipped} groups left out: their rows do not identify {coef}"
    ax.set_title(title, fontsize="medium")
    return fig


def fitted_lines(
    fit: Fit,
    x: str,
    groups: list[str] | str | None = None,
    level: str | None = None,
    n_lines: int = 50,
    data: Any = None,
    seed: int = 0,
) -> Figure:
    """Posterior lines per group over its data: one panel per group.

    Each panel shows the group's rows (``x`` against the response on the model's scale)
    with ``n_lines`` lines from random posterior draws of the group's coefficients
    ``beta_<level>`` and the line of their posterior mean. ``x`` runs over its observed
    range; every other predictor is held at its mean (numeric) or its first category, as
    the figure says. For logit and log links the lines are the mean response (inverse
    link), over ``y`` (bernoulli, poisson) or ``y / trials`` (binomial). In a crossed
    model the lines leave out the other groupings' deviations.

    Parameters
    ----------
    fit
        The fit.
    x
        A numeric predictor column.
    groups
        Group labels of ``level`` (``"MN/AITKIN"``); default six spread over the range of
        group sizes.
    level
        The level of ``groups``; default the deepest of the primary chain.
    n_lines
        Posterior draws drawn as lines in each panel.
    data
        The rows; default the rows the fit kept.
    seed
        Seed for choosing the draws.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per group, titled with its label and rows.
    """
    from .check import frame_for

    spec = fit.spec
    if spec.offset is not None:
        raise HierlmError(
            "fitted_lines cannot draw one line per group for a model with an offset: every "
            "row's mean depends on its own offset. Use predict() on a grid of rows instead."
        )
    if not fit.design.level_names:
        raise HierlmError("the model has no grouping levels; there are no group lines to draw")
    level = fit.design.tree.level_names[-1] if level is None else level
    tree, k = _level_position(fit, level)
    enc = fit.design.encoding
    if x not in enc.variables:
        raise HierlmError(
            f"{x!r} is not a predictor of the model; its predictors: {list(enc.variables)}"
        )
    frame = _rows(fit, frame_for(fit, data), tree.paths[k])
    if x in enc.categories or not pd.api.types.is_numeric_dtype(frame[x]):
        raise HierlmError(f"x must be a numeric predictor; {x!r} is categorical")
    if isinstance(groups, str):
        groups = [groups]
    labels = _group_labels(fit, level)
    row_labels = path_labels(frame, tree.paths[k]).to_numpy()
    counts = pd.Series(row_labels).value_counts()
    if groups is None:
        have = sorted((int(counts.get(g, 0)), g) for g in labels if counts.get(g, 0))
        if not have:
            raise HierlmError(f"no rows of the data belong to a {level} group of the fit")
        groups = [have[i][1] for i in _spread(len(have), 6)][::-1]
    if not groups:
        raise HierlmError("groups is empty; name at least one group, or leave it out")
    unknown = [g for g in groups if g not in labels]
    if unknown:
        raise HierlmError(
            f"{unknown[0]!r} is not a {level} group of the fit; groups look like {labels[0]!r}"
        )
    grid, held = _grid(frame, enc, x)
    xg = enc.encode(grid)
    index = [labels.index(g) for g in groups]
    coefs = fit.idata["posterior"][f"beta_{level}"].isel({level: index})
    b = coefs.transpose("chain", "draw", level, "coef").to_numpy()
    b = b.reshape(-1, len(groups), b.shape[-1])
    rng = np.random.default_rng(seed)
    pick = rng.choice(b.shape[0], size=min(n_lines, b.shape[0]), replace=False)
    y = _model_scale_response(fit, frame)
    inverse = _inverse_link(spec.family)
    if spec.family == "binomial" and spec.trials:
        y = y / frame[spec.trials].to_numpy(np.float64)
    ncols = min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig = _figure(figsize=(4.2 * ncols, 3.4 * nrows + 0.8))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    xs = grid[x].to_numpy(np.float64)
    for i, (g, ax) in enumerate(zip(groups, axes.ravel(), strict=False)):
        eta = b[:, i, :] @ xg.T
        mine = row_labels == g
        ax.plot(xs, inverse(eta[pick]).T, color="C0", alpha=0.15, linewidth=0.8)
        ax.plot(xs, inverse(eta).mean(axis=0), color="C1", linewidth=2, label="posterior mean")
        ax.scatter(
            frame[x].to_numpy(np.float64)[mine], y[mine], s=14, color="k", zorder=3, label="data"
        )
        ax.set_title(f"{g} (n = {int(mine.sum())})", fontsize="medium")
        if i % ncols == 0:
            ax.set_ylabel(_response_label(fit))
        if i >= len(groups) - ncols:
            ax.set_xlabel(x)
    for ax in axes.ravel()[len(groups) :]:
        ax.remove()
    axes[0, 0].legend(fontsize="small")
    title = (
        f"{_response_label(fit)} against {x} in {level} groups: {len(pick)} posterior lines each"
    )
    if held:
        title += "\nheld at " + ", ".join(held)
    fig.suptitle(title)
    return fig


def ppc(
    fit: Fit,
    check: PredictiveCheck | None = None,
    n_lines: int = 100,
    data: Any = None,
    seed: int = 0,
) -> Figure:
    """Predictive check: replicated densities over the observed one, and test statistics.

    The top panel is ArviZ's predictive density overlay (``n_lines`` replicated data
    sets, their mean, and the observed response), on the model's scale: ``log(y)`` for
    lognormal models, histograms of counts for binomial and Poisson models, and empirical
    CDFs for a bernoulli response. Below, one histogram per test
    statistic of ``check`` (mean, sd, min, max, and the sd of the group means at every
    level, all of ``y`` as observed) over the replicates, with the observed value marked
    and the predictive p-value in the title.

    Parameters
    ----------
    fit
        The fit.
    check
        A :class:`hierlm.check.PredictiveCheck` (from :meth:`hierlm.Fit.ppc` or
        :meth:`hierlm.Model.prior_predictive`); default ``fit.ppc(data=data)``.
    n_lines
        Replicated densities drawn.
    data
        The rows the check replicated (default the fit's), for the group statistics.
    seed
        Seed for choosing the replicates drawn.

    Returns
    -------
    matplotlib.figure.Figure
        The density axes, then one axes per statistic.
    """
    import arviz as az

    from .check import frame_for, statistics_of

    if check is None:
        check = fit.ppc(data=data)
    rep, obs = check.replicated, check.observed
    spec = fit.spec
    log = spec.transform == "log" or spec.family == "lognormal"
    if log:
        rep, obs = np.log(rep), np.log(obs)
    if spec.family in _LINK_FAMILIES:
        # Integer data make ArviZ draw bars instead of a smoothed density.
        rep, obs = np.rint(rep).astype(np.int64), np.rint(obs).astype(np.int64)
    frame = None if data is None and fit.data is None else frame_for(fit, data)
    if frame is not None and len(frame) == check.observed.size:
        levels = [
            (name, cols)
            for tree in fit.design.trees
            for name, cols in zip(tree.level_names, tree.paths, strict=True)
        ]
        values = statistics_of(check.replicated, frame, levels)
    else:
        values = statistics_of(check.replicated, pd.DataFrame(index=range(obs.size)), [])
    names = [s for s in check.statistics.index if s in values]
    group = "prior" if check.source == "prior" else "posterior"
    with _arviz_drawing():
        replicated = {spec.response: rep[None]}
        observed = {spec.response: obs}
        if group == "prior":
            idata = az.from_dict(prior_predictive=replicated, observed_data=observed)
        else:
            idata = az.from_dict(posterior_predictive=replicated, observed_data=observed)
    ncols = 3
    nrows = math.ceil(len(names) / ncols)
    fig = _figure(figsize=(11, 3.6 + 2.6 * nrows))
    grid = fig.add_gridspec(1 + nrows, ncols, height_ratios=[1.5] + [1.0] * nrows)
    ax = fig.add_subplot(grid[0, :])
    with _arviz_drawing():
        az.plot_ppc(
            idata,
            group=group,
            # A 0/1 response has no density worth drawing; its empirical CDF shows the
            # share of ones.
            kind="cumulative" if spec.family == "bernoulli" else "kde",
            num_pp_samples=min(n_lines, rep.shape[0]),
            random_seed=seed,
            ax=ax,
        )
    ax.set_xlabel(_response_label(fit) if spec.family not in _LINK_FAMILIES else spec.response)
    ax.set_title(f"{check.source.capitalize()} predictive check", fontsize="medium")
    for i, stat in enumerate(names):
        sub = fig.add_subplot(grid[1 + i // ncols, i % ncols])
        sub.hist(values[stat], bins=30, color="C0", alpha=0.7)
        observed_value = float(check.statistics.loc[stat, "observed"])
        sub.axvline(observed_value, color="k", linewidth=2, label="observed")
        p_value = float(check.statistics.loc[stat, "p_value"])
        sub.set_title(f"{stat}, p = {p_value:.2f}", fontsize="medium")
        sub.set_yticks([])
        if i == 0:
            sub.legend(fontsize="small")
    fig.suptitle(f"{check.source.capitalize()} predictive check of {spec.response}")
    return fig


def funnel(fit: Fit, level: str, coef: str | None = None, group: str | None = None) -> Figure:
    """A level's log sd against one group's deviation from its parent, divergences marked.

    The classic funnel of hierarchical models: where the sd is small the deviation is
    squeezed toward zero, and NUTS on the group coefficients themselves (a centred
    full-latent fit) has to reach into that neck, diverging there. The collapsed engine
    samples only the variance parameters and draws every group coefficient exactly, so
    its funnels are harmless; this plot shows where a full-latent fit struggles.

    Parameters
    ----------
    fit
        The fit.
    level
        A level with an estimated sd.
    coef
        A coefficient varying at ``level``; default the first.
    group
        A group label of ``level``; default the group with the fewest rows (its funnel is
        the deepest).

    Returns
    -------
    matplotlib.figure.Figure
        One axes (ArviZ's pair plot of the two quantities, divergences in red).

    Notes
    -----
    Per draw ``s``, x is ``β^{(s)}_{g,c} - β^{(s)}_{\\mathrm{pa}(g),c}`` (the population's
    coefficient at the top level and for a crossed grouping) and y is
    ``\\log τ^{(s)}_{\\mathrm{level},c}``.
    """
    import arviz as az
    import xarray as xr

    _level_position(fit, level)
    post = fit.idata["posterior"]
    if f"sd_{level}" not in post:
        raise HierlmError(
            f"level {level!r} has no estimated sd (pooling={fit.spec.pooling!r}), so it has no "
            "funnel to show"
        )
    varying = [str(c) for c in post[f"sd_{level}"].coords[f"coef_{level}"].values]
    coef = varying[0] if coef is None else coef
    if coef not in varying:
        raise HierlmError(f"{coef!r} does not vary at level {level!r}; these do: {varying}")
    labels = _group_labels(fit, level)
    sizes = _group_sizes(fit, level)
    if group is None:
        group = labels[int(np.argmin(sizes))] if sizes is not None else labels[0]
    if group not in labels:
        raise HierlmError(
            f"{group!r} is not a {level} group of the fit; groups look like {labels[0]!r}"
        )
    g = labels.index(group)
    parent_draws, parent_name = _parent_draws(fit, level, coef)
    own = fit.draws_of(f"beta_{level}")[:, g, list(fit.design.coef_names).index(coef)]
    deviation = own - parent_draws[:, g]
    log_sd = np.log(fit.draws_of(f"sd_{level}")[:, varying.index(coef)])
    shape = (post.sizes["chain"], post.sizes["draw"])
    ds = xr.Dataset(
        {
            "deviation": (("chain", "draw"), deviation.reshape(shape)),
            "log_sd": (("chain", "draw"), log_sd.reshape(shape)),
        }
    )
    stats = fit.idata["sample_stats"][["diverging"]]
    fig = _figure(figsize=(6.5, 5.5))
    ax = fig.subplots()
    with _arviz_drawing():
        az.plot_pair(
            az.InferenceData(posterior=ds, sample_stats=stats),
            var_names=["deviation", "log_sd"],
            divergences=True,
            scatter_kwargs={"alpha": 0.35},
            ax=ax,
        )
    parent = f"beta[{coef}]" if parent_name == "population" else f"its {parent_name} group's"
    ax.set_xlabel(f"beta_{level}[{group}, {coef}] − {parent}")
    ax.set_ylabel(f"log sd_{level}[{coef}]")
    n_div = int(np.asarray(stats["diverging"]).sum())
    n_rows = "" if sizes is None else f" (n = {int(sizes[g])})"
    ax.set_title(
        f"Funnel at level {level!r}: group {group!r}{n_rows}\n"
        f"{fit.info.engine} engine, {n_div} divergent draws (red) of {own.size}",
        fontsize="medium",
    )
    return fig


def pair(fit: Fit, var_names: list[str] | None = None) -> Figure:
    """Pair plot of the variance parameters, divergent draws marked.

    Parameters
    ----------
    fit
        The fit.
    var_names
        Posterior variables; default ``sigma`` and every ``sd_<level>``. Constant entries
        are left out.

    Returns
    -------
    matplotlib.figure.Figure
        ArviZ's pair plot: a lower triangle of scatter plots, divergences in red.
    """
    import arviz as az

    post = fit.idata["posterior"]
    if var_names is None:
        var_names = [
            v for v in ("sigma", *(f"sd_{lv}" for lv in fit.design.level_names)) if v in post
        ]
    ds = _entries(fit, var_names)
    n = _n_entries(ds)
    if n < 2:
        raise HierlmError(
            f"a pair plot needs at least two parameters; {var_names} hold {n}. Use trace() instead."
        )
    side = max(4.5, 2.4 * (n - 1))
    fig = _figure(figsize=(side, side))
    axes = fig.subplots(n - 1, n - 1, squeeze=False, sharex="col", sharey="row")
    with _arviz_drawing():
        az.plot_pair(
            az.InferenceData(posterior=ds, sample_stats=fit.idata["sample_stats"][["diverging"]]),
            divergences=True,
            scatter_kwargs={"alpha": 0.35},
            ax=axes[0, 0] if n == 2 else axes,
        )
    fig.suptitle(f"Variance parameters: {fit.spec.formula}")
    return fig


class FitPlots:
    """The plots of one fit, as ``fit.plot.<name>(...)``; each returns a matplotlib Figure.

    See :mod:`hierlm.plots` for the functions and their parameters.
    """

    def __init__(self, fit: Fit):
        self._fit = fit

    def trace(self, var_names: list[str] | None = None) -> Figure:
        """Trace, density and rank plots (:func:`hierlm.plots.trace`)."""
        return trace(self._fit, var_names)

    def forest(
        self, level: str, coef: str | None = None, max_groups: int = 40, hdi_prob: float = 0.9
    ) -> Figure:
        """Caterpillar plot of a level's groups (:func:`hierlm.plots.forest`)."""
        return forest(self._fit, level, coef, max_groups, hdi_prob)

    def shrinkage(
        self,
        level: str | None = None,
        coef: str = "Intercept",
        data: Any = None,
        max_groups: int = 300,
    ) -> Figure:
        """No pooling → partial pooling per group (:func:`hierlm.plots.shrinkage`)."""
        return shrinkage(self._fit, level, coef, data, max_groups)

    def shrinkage_table(
        self, level: str | None = None, coef: str = "Intercept", data: Any = None
    ) -> pd.DataFrame:
        """The numbers behind :meth:`shrinkage` (:func:`hierlm.plots.shrinkage_table`)."""
        return shrinkage_table(self._fit, level, coef, data)

    def fitted_lines(
        self,
        x: str,
        groups: list[str] | str | None = None,
        level: str | None = None,
        n_lines: int = 50,
        data: Any = None,
        seed: int = 0,
    ) -> Figure:
        """Posterior lines over each group's data (:func:`hierlm.plots.fitted_lines`)."""
        return fitted_lines(self._fit, x, groups, level, n_lines, data, seed)

    def ppc(
        self,
        check: PredictiveCheck | None = None,
        n_lines: int = 100,
        data: Any = None,
        seed: int = 0,
    ) -> Figure:
        """Predictive densities and test statistics (:func:`hierlm.plots.ppc`)."""
        return ppc(self._fit, check, n_lines, data, seed)

    def funnel(self, level: str, coef: str | None = None, group: str | None = None) -> Figure:
        """A level's log sd against one group's deviation (:func:`hierlm.plots.funnel`)."""
        return funnel(self._fit, level, coef, group)

    def pair(self, var_names: list[str] | None = None) -> Figure:
        """Pair plot of the variance parameters (:func:`hierlm.plots.pair`)."""
        return pair(self._fit, var_names)


# --- helpers ---------------------------------------------------------------------------


@contextlib.contextmanager
def _arviz_drawing() -> Iterator[None]:
    """ArviZ's plotting, without its shape warnings and the deprecation warnings its calls
    raise in matplotlib 3.11 (ArviZ 0.2x passes matplotlib a dict of aliases), which say
    nothing about the fit."""
    from matplotlib import MatplotlibDeprecationWarning

    from ._arviz import quiet

    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore", MatplotlibDeprecationWarning)
        yield


def _figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _spread(n: int, m: int) -> np.ndarray:
    """Up to ``m`` of the indices ``0 .. n-1``, evenly spaced, both ends included."""
    return np.unique(np.round(np.linspace(0, n - 1, min(m, n))).astype(np.int64))


def _level_position(fit: Fit, level: str) -> tuple[GroupTree, int]:
    """The tree holding ``level`` and the level's depth in it."""
    for tree in fit.design.trees:
        if level in tree.level_names:
            return tree, tree.level_names.index(level)
    levels = list(fit.design.level_names)
    if not levels:
        raise HierlmError("the model has no grouping levels")
    raise HierlmError(f"the model has no level {level!r}; its levels: {levels}")


def _level_coef(fit: Fit, level: str, coef: str | None) -> str:
    """``coef`` checked, or the first coefficient varying at ``level``."""
    names = list(fit.design.coef_names)
    if coef is not None:
        if coef not in names:
            raise HierlmError(f"the model has no coefficient {coef!r}; its coefficients: {names}")
        return coef
    spec = fit.design.levels[list(fit.design.level_names).index(level)]
    return names[spec.coefs[0]] if spec.coefs else names[0]


def _group_labels(fit: Fit, level: str) -> list[str]:
    """A level's group labels in the posterior's order."""
    return [str(v) for v in fit.idata["posterior"][f"beta_{level}"].coords[level].values]


def _group_sizes(fit: Fit, level: str) -> np.ndarray | None:
    """Rows per group of ``level`` (None for a crossed level of a fit without its rows)."""
    tree, k = _level_position(fit, level)
    if tree is fit.design.tree:
        return tree.level_totals(fit.stats.n, k)
    if fit.data is None:
        return None
    counts = path_labels(fit.data, tree.paths[k]).value_counts()
    return np.array([counts.get(g, 0) for g in _group_labels(fit, level)], dtype=np.float64)


def _parent_draws(fit: Fit, level: str, coef: str) -> tuple[np.ndarray, str]:
    """Draws of each group's parent's ``coef``, shape (draws, groups), and the parent
    level's name (``"population"`` at the top of a chain)."""
    tree, k = _level_position(fit, level)
    names = list(fit.design.coef_names)
    n_groups = tree.sizes[k]
    if k == 0:
        pop = fit.draws_of("beta")[:, names.index(coef)]
        return np.repeat(pop[:, None], n_groups, axis=1), "population"
    parent = tree.level_names[k - 1]
    draws = fit.draws_of(f"beta_{parent}")[:, :, names.index(coef)]
    return draws[:, tree.parents[k]], parent


def _rows(fit: Fit, frame: pd.DataFrame, group_columns: tuple[str, ...]) -> pd.DataFrame:
    """The rows with every column a plot reads, incomplete ones dropped."""
    spec = fit.spec
    needed = [
        spec.response,
        *fit.design.encoding.variables,
        *group_columns,
        *(c for c in (spec.trials, spec.se) if c),
    ]
    missing = [c for c in dict.fromkeys(needed) if c not in frame.columns]
    if missing:
        raise HierlmError(f"the data has no column {missing[0]!r}, which the model reads")
    return frame.dropna(subset=list(dict.fromkeys(needed)))


def _model_scale_response(fit: Fit, frame: pd.DataFrame) -> np.ndarray:
    """The response as the model sees it: ``log y`` for lognormal models, else ``y``."""
    spec = fit.spec
    y = frame[spec.response].to_numpy(np.float64)
    if spec.transform == "log" or spec.family == "lognormal":
        if (y <= 0).any():
            raise HierlmError(
                f"the response {spec.response!r} has values <= 0, whose log is undefined"
            )
        return np.log(y)
    return y


def _inverse_link(family: str) -> Any:
    if family in ("bernoulli", "binomial"):
        return lambda eta: 1.0 / (1.0 + np.exp(-eta))
    if family == "poisson":
        return np.exp
    return lambda eta: eta


def _scale_label(fit: Fit) -> str:
    spec = fit.spec
    if spec.transform == "log" or spec.family == "lognormal":
        return f"log scale of {spec.response}"
    if spec.family in _LINK_FAMILIES:
        return "link scale"
    return f"scale of {spec.response}"


def _response_label(fit: Fit) -> str:
    spec = fit.spec
    if spec.transform == "log" or spec.family == "lognormal":
        return f"log({spec.response})"
    if spec.family == "binomial" and spec.trials:
        return f"{spec.response} / {spec.trials}"
    return spec.response


def _grid(frame: pd.DataFrame, enc: Any, x: str) -> tuple[pd.DataFrame, list[str]]:
    """100 rows with ``x`` over its range and every other predictor held fixed, and the
    held values in words."""
    values = frame[x].to_numpy(np.float64)
    cols: dict[str, Any] = {x: np.linspace(values.min(), values.max(), 100)}
    held = []
    for var in enc.variables:
        if var == x:
            continue
        if var in enc.categories:
            cols[var] = enc.categories[var][0]
            held.append(f"{var} = {cols[var]} (first category)")
        elif pd.api.types.is_numeric_dtype(frame[var]) and not pd.api.types.is_bool_dtype(
            frame[var]
        ):
            cols[var] = float(frame[var].mean())
            held.append(f"{var} = {cols[var]:.3g} (mean)")
        else:
            cols[var] = frame[var].mode().iloc[0]
            held.append(f"{var} = {cols[var]} (most common)")
    return pd.DataFrame(cols), held


def _entries(fit: Fit, var_names: list[str] | None) -> xr.Dataset:
    """The posterior variables' non-constant entries, one variable per name.

    A correlation keeps one entry of each mirrored pair (labelled ``"a, b"`` with
    ``a < b``, as in :meth:`hierlm.Fit.summary`); an entry
    whose draws are all equal (a diagonal, a cross-block 0, a coefficient fixed at 0) is
    left out, as is a variable left with none.
    """
    import xarray as xr

    post = fit.idata["posterior"]
    names = fit.main_vars() if var_names is None else list(var_names)
    unknown = [v for v in names if v not in post]
    if unknown:
        raise HierlmError(
            f"the posterior has no variable {unknown[0]!r}; it has {list(map(str, post.data_vars))}"
        )
    out: dict[str, xr.DataArray] = {}
    for name in names:
        da = post[name]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        values = da.transpose("chain", "draw", *extra).to_numpy()
        if not extra:
            if np.ptp(values) > 0:
                out[name] = da
            continue
        flat = values.reshape(*values.shape[:2], -1)
        coords = [[str(c) for c in da.coords[d].values] for d in extra]
        if len(extra) == 1:
            dim, labels = extra[0], coords[0]
            keep = list(range(len(labels)))
        else:
            dim = f"{name}_entry"
            shape = [len(c) for c in coords]
            keep, labels = [], []
            for flat_i, idx in enumerate(np.ndindex(*shape)):
                # One of each mirrored pair, the one the summary table keeps.
                if name.startswith("corr_") and not coords[0][idx[0]] < coords[1][idx[1]]:
                    continue
                keep.append(flat_i)
                labels.append(", ".join(c[i] for c, i in zip(coords, idx, strict=True)))
        varies = [i for i, f in enumerate(keep) if np.ptp(flat[:, :, f]) > 0]
        if not varies:
            continue
        out[name] = xr.DataArray(
            flat[:, :, [keep[i] for i in varies]],
            dims=("chain", "draw", dim),
            coords={
                "chain": da.coords["chain"].values,
                "draw": da.coords["draw"].values,
                dim: [labels[i] for i in varies],
            },
        )
    if not out:
        raise HierlmError(f"{names} hold no entry that varies across draws; nothing to plot")
    return xr.Dataset(out)


def _n_entries(ds: xr.Dataset) -> int:
    return sum(int(np.prod([ds[v].sizes[d] for d in ds[v].dims[2:]])) for v in ds.data_vars)
