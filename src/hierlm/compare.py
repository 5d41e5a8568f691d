"""Compare pooling modes by PSIS-LOO over rows and leave-one-group-out over a level.

Notes
-----
Leave-one-group-out (LOGO) asks how well a model predicts a whole group it has not seen:
``elpd = Σ_g log p(y_g | y_{-g})``. For a collapsed fit, given θ the group's predictive
density is exact and Gaussian:

.. math::

    \\log p(y_g \\mid y_{-g}, θ) = \\log p(y \\mid θ) - \\log p(y_{-g} \\mid θ),

both terms from the collapsed message pass (the second with the group's leaf statistics set
to zero). Only the few-dimensional θ then has to move from ``p(θ | y)`` to ``p(θ | y_{-g})``,
which Pareto-smoothed importance sampling does with weights ``∝ 1 / p(y_g | y_{-g}, θ)``:
no refit per group. Full-latent fits have no such route; their LOGO importance-samples the
joint posterior with the group's summed row log-likelihood, which the Pareto k̂ values
usually flag as unreliable.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.special import gammaln, logsumexp

from .errors import HierlmError

if TYPE_CHECKING:
    from .fit import Fit
    from .model import Model

__all__ = ["Comparison", "compare_pooling", "logo", "pointwise_log_lik", "psis_loo"]

POOLINGS = ("partial", "none", "complete")
_MAX_DRAWS = 2000
_MAX_ELEMENTS = 50_000_000  # draws × rows of pointwise log-likelihood held at once


@dataclass(frozen=True)
class Comparison:
    """Pooling modes side by side.

    Attributes
    ----------
    table
        One row per pooling mode, best LOO first: ``elpd_loo``, ``se``, ``p_loo``,
        ``elpd_diff`` and ``se_diff`` (to the best), ``elpd_logo``, ``se_logo``,
        ``logo_diff`` and ``logo_se_diff``, and the count of Pareto k̂ above 0.7 for each.
    level
        The level left out group by group.
    logo_method
        How LOGO was computed.
    warnings
        Pareto k̂ and other caveats, in plain words.
    fits
        The fit of each pooling mode.
    """

    table: pd.DataFrame
    level: str
    logo_method: str
    warnings: list[str] = field(default_factory=list)
    fits: dict[str, Fit] = field(default_factory=dict)


def _thinned_index(fit: Fit, max_draws: int) -> tuple[np.ndarray, int]:
    post = fit.idata["posterior"]
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    step = max(1, math.ceil(chains * draws / max_draws))
    keep = np.arange(0, draws, step)
    return (np.arange(chains)[:, None] * draws + keep[None, :]).ravel(), chains


def pointwise_log_lik(fit: Fit, frame: pd.DataFrame, index: np.ndarray) -> np.ndarray:
    """``log p(y_i | parameters)`` per draw and row, on the response's original scale
    (lognormal's Jacobian included), shape (draws, rows)."""
    from .predict import predict_draws

    spec = fit.spec
    eta = predict_draws(fit, frame, "link", "error", draw_index=index).draws
    y = frame[spec.response].to_numpy(np.float64)[None, :]
    family = spec.family
    if family in ("gaussian", "lognormal", "student_t"):
        sigma = fit.draws_of("sigma", index)[:, None] if spec.has_sigma else 0.0
        var = sigma**2
        if spec.se is not None:
            var = var + frame[spec.se].to_numpy(np.float64)[None, :] ** 2
        log_scale = spec.transform == "log" or family == "lognormal"
        obs = np.log(y) if log_scale else y
        if family == "student_t":
            from scipy.stats import t

            nu = fit.draws_of("nu", index)[:, None]
            out = t.logpdf(obs, nu, eta, np.sqrt(var))
        else:
            out = -0.5 * (obs - eta) ** 2 / var - 0.5 * np.log(2 * np.pi * var)
        return out - obs if log_scale else out
    if family == "bernoulli":
        return y * -np.logaddexp(0, -eta) + (1 - y) * -np.logaddexp(0, eta)
    if family == "binomial":
        assert spec.trials is not None
        n = frame[spec.trials].to_numpy(np.float64)[None, :]
        choose = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
        return choose + y * -np.logaddexp(0, -eta) + (n - y) * -np.logaddexp(0, eta)
    return y * eta - np.exp(eta) - gammaln(y + 1)


def psis_loo(fit: Fit, frame: pd.DataFrame, max_draws: int = _MAX_DRAWS) -> Any:
    """ArviZ's PSIS-LOO of ``fit`` on ``frame``'s rows (pointwise)."""
    import arviz as az

    from ._arviz import quiet

    index, chains = _thinned_index(fit, max_draws)
    ll = pointwise_log_lik(fit, frame, index)
    shaped = ll.reshape(chains, -1, ll.shape[1])
    idata = az.from_dict(
        posterior={
            "lp": fit.idata["sample_stats"]["lp"].values.reshape(-1)[index].reshape(chains, -1)
        },
        log_likelihood={"y": shaped},
    )
    with quiet(), warnings.catch_warnings():
        # High Pareto k̂ values are counted and reported in plain words by the caller.
        warnings.simplefilter("ignore", UserWarning)
        return az.loo(idata, pointwise=True)


def _group_codes(fit: Fit, frame: pd.DataFrame, level: str) -> tuple[np.ndarray, int]:
    """Each row's group at ``level``, as the group tree numbers its nodes."""
    for tree in fit.design.trees:
        if level in tree.level_names:
            k = tree.level_names.index(level)
            codes = tree.locate(frame)[:, k]
            if (codes < 0).any():
                raise HierlmError(
                    f"{int((codes < 0).sum())} rows belong to {level} groups that are not in "
                    "the fit; compare on the rows the model was fitted to"
                )
            return codes, tree.sizes[k]
    raise HierlmError(
        f"no level named {level!r}; the levels are {', '.join(fit.design.level_names)}"
    )


def logo(
    fit: Fit, model: Model, frame: pd.DataFrame, level: str, max_draws: int = _MAX_DRAWS
) -> tuple[Any, str]:
    """Leave-one-group-out elpd per group of ``level``: (elpd per group, Pareto k̂ per
    group), and how it was computed."""
    import arviz as az

    index, _ = _thinned_index(fit, max_draws)
    cond, method = group_log_lik(fit, model, frame, level, index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        lw, k = az.psislw(-cond.T)
    elpd = logsumexp(lw + cond.T, axis=1)
    return (elpd, np.asarray(k)), method


def group_log_lik(
    fit: Fit, model: Model, frame: pd.DataFrame, level: str, index: np.ndarray
) -> tuple[np.ndarray, str]:
    """Per posterior draw in ``index`` and group of ``level``, the group's log-likelihood
    that LOGO weights with, on the original scale: ``log p(y_g | y_{-g}, θ)`` for a
    collapsed fit, the group's summed row log-likelihood otherwise; and the route's name."""
    codes, n_groups = _group_codes(fit, frame, level)
    if "unconstrained_posterior" in fit.idata.groups():
        theta = fit.idata["unconstrained_posterior"]["theta"].values
        theta = theta.reshape(-1, theta.shape[-1])[index]
        cond = _collapsed_logo(model, theta, level)
        # Standardised → original scale: each row of y contributes -log(y_scale), and
        # -log y on the log scale.
        sc = fit.design.scaling
        n_g = np.bincount(codes, minlength=n_groups)
        shift = -n_g * math.log(sc.y_scale)
        if fit.spec.transform == "log" or fit.spec.family == "lognormal":
            y = frame[fit.spec.response].to_numpy(np.float64)
            shift = shift - np.bincount(codes, weights=np.log(y), minlength=n_groups)
        cond = cond + shift[None, :]
        method = (
            "exact given the variance parameters (collapsed), with Pareto-smoothed "
            "importance sampling over them; no refits"
        )
    else:
        ll = pointwise_log_lik(fit, frame, index)
        cond = np.stack([ll[:, codes == g].sum(axis=1) for g in range(n_groups)], axis=1)
        method = (
            "Pareto-smoothed importance sampling of the joint posterior with each group's "
            "summed row log-likelihood (full-latent engine: no exact route)"
        )
    return cond, method


def _collapsed_logo(model: Model, theta: np.ndarray, level: str) -> np.ndarray:
    """``log p(y_g | y_{-g}, θ)`` (standardised scale) for every group of ``level`` and θ
    draw, shape (draws, groups)."""
    import jax
    import jax.numpy as jnp

    from .collapse import log_marginal
    from .density import unpack
    from .node_layout import natural_entries

    design, problem = model.data.design, model.problem
    tree = design.tree
    li = tree.level_names.index(level)
    n_leaf_padded = problem.args.stats.n.shape[0]
    ancestors = tree.ancestors(tree.n_levels - 1)[:, li]
    n_groups = tree.sizes[li]
    entries = natural_entries(np.asarray(problem.args.stats.order[-1]), len(ancestors))
    keep = np.ones((n_groups, n_leaf_padded))
    keep[ancestors, entries] = 0.0
    args, layout = problem.args, problem.layout

    def one(th, masks):
        u = unpack(th, args, layout)
        st = args.stats

        def lml(m):
            # What is precomputed from the leaf statistics no longer holds for these.
            s = st._replace(
                n=st.n * m,
                xtx=st.xtx * m,
                xty=st.xty * m,
                yty=st.yty * m,
                distinct=None,
                leaf_sums=None,
            )
            return log_marginal(s, u.sigma, u.levels, args.m0, u.L0)

        return lml(jnp.ones(n_leaf_padded)) - jax.vmap(lml)(masks)

    run = jax.jit(lambda ths, masks: jax.lax.map(lambda t: one(t, masks), ths))
    return np.asarray(run(jnp.asarray(theta), jnp.asarray(keep)))


def compare_pooling(
    fit: Fit, frame: pd.DataFrame, level: str | None = None, refit: dict[str, Any] | None = None
) -> Comparison:
    """Refit ``fit``'s model with every pooling mode and compare them (see
    :meth:`hierlm.Fit.compare_pooling`)."""
    from .model import Model

    if fit.spec.crossed:
        raise HierlmError(
            "pooling='none' and 'complete' are defined for one nesting chain; this model has "
            "crossed groupings, so there is nothing to compare"
        )
    if not fit.design.tree.n_levels:
        raise HierlmError("the model has no grouping levels, so pooling modes do not differ")
    level = level or fit.design.tree.level_names[-1]
    if level not in fit.design.tree.level_names:
        raise HierlmError(
            f"no level named {level!r}; the levels are {', '.join(fit.design.tree.level_names)}"
        )
    options = dict(fit.info.options)
    settings: dict[str, Any] = {
        "chains": fit.info.chains,
        "draws": fit.info.draws,
        "tune": fit.info.tune,
    }
    settings |= {"seed": fit.info.seed} | (refit or {})
    fits: dict[str, Fit] = {}
    rows: dict[str, dict[str, float]] = {}
    loo_i: dict[str, np.ndarray] = {}
    logo_g: dict[str, np.ndarray] = {}
    notes: list[str] = []
    methods: dict[str, str] = {}
    for mode in POOLINGS:
        model = Model(fit.spec.formula, frame, **(options | {"pooling": mode}))
        f = fit if mode == fit.spec.pooling and refit is None else model.fit(**settings)
        fits[mode] = f
        used = model.data.frame if model.data.frame is not None else _used_rows(fit, frame)
        loo = psis_loo(f, used, max_draws=max(100, min(_MAX_DRAWS, _MAX_ELEMENTS // len(used))))
        (elpd_g, k_g), methods[mode] = logo(f, model, used, level)
        loo_i[mode] = np.asarray(loo.loo_i)
        logo_g[mode] = elpd_g
        n_bad, n_bad_g = int((np.asarray(loo.pareto_k) > 0.7).sum()), int((k_g > 0.7).sum())
        rows[mode] = {
            "elpd_loo": float(loo.elpd_loo),
            "se": float(loo.se),
            "p_loo": float(loo.p_loo),
            "elpd_logo": float(elpd_g.sum()),
            "se_logo": float(math.sqrt(len(elpd_g) * np.var(elpd_g))),
            "pareto_k_rows": n_bad,
            "pareto_k_groups": n_bad_g,
        }
        if n_bad:
            notes.append(
                f"pooling={mode!r}: {n_bad} {'row has' if n_bad == 1 else 'rows have'} Pareto k̂ > 0.7, so their LOO terms "
                "are unreliable (influential rows)"
            )
        if n_bad_g:
            notes.append(
                f"pooling={mode!r}: {n_bad_g} {level} {'group has' if n_bad_g == 1 else 'groups have'} Pareto k̂ > 0.7 in "
                "leave-one-group-out, so those groups' terms are unreliable"
            )
    table = pd.DataFrame.from_dict(rows, orient="index")
    best = str(table["elpd_loo"].idxmax())
    best_g = str(table["elpd_logo"].idxmax())
    table["elpd_diff"] = table["elpd_loo"].max() - table["elpd_loo"]
    table["se_diff"] = [_se_diff(loo_i[best], loo_i[str(m)]) for m in table.index]
    table["logo_diff"] = table["elpd_logo"].max() - table["elpd_logo"]
    table["logo_se_diff"] = [_se_diff(logo_g[best_g], logo_g[str(m)]) for m in table.index]
    order = [
        "elpd_loo",
        "se",
        "elpd_diff",
        "se_diff",
        "p_loo",
        "elpd_logo",
        "se_logo",
        "logo_diff",
        "logo_se_diff",
        "pareto_k_rows",
        "pareto_k_groups",
    ]
    table = table[order].sort_values("elpd_loo", ascending=False)
    table.index.name = "pooling"
    if len(set(methods.values())) == 1:
        method = methods["partial"]
    else:
        method = "; ".join(f"{mode}: {text}" for mode, text in methods.items())
    return Comparison(table, level, method, notes, fits)


def _used_rows(fit: Fit, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows a model fitted to ``frame`` used: those without missing values in the
    columns it reads (the model dropped the others, or refused them under na='error')."""
    spec = fit.spec
    columns = [spec.response, *fit.design.encoding.variables, *spec.all_group_columns]
    columns += [c for c in (spec.trials, spec.offset, spec.se) if c is not None]
    present = [c for c in dict.fromkeys(columns) if c in frame.columns]
    return frame.dropna(subset=present).reset_index(drop=True)


def _se_diff(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    return float(math.sqrt(len(d) * np.var(d)))
