"""Predictions for new rows, including groups the fit never saw.

A row whose group path is in the fit uses that group's drawn coefficients. A row whose path
leaves the tree at some level (a new county in a known state, a new state) starts from the
deepest known ancestor's drawn coefficients and adds, for every level below it, an
independent draw of that level's deviation: one per new group and per posterior draw.
Everything here works on the original data scale, from the posterior draws alone.

Notes
-----
For a new group at level ``l`` with parent coefficients ``a`` (one posterior draw),

.. math::

    β = a + E_v\\, \\mathrm{diag}(τ_l)\\, R_l z, \\quad z \\sim N(0, I_q),

where ``τ_l`` are the level's sds (``sd_<level>``), ``R_l R_lᵀ`` its correlation matrix
(``corr_<level>``, identity when independent) and ``E_v`` places the ``q`` varying
coefficients. Any square root of the correlation gives the same distribution; a symmetric
eigen-root is used, which exists for every draw. Under ``pooling="none"`` the leaf level's
scale is the fixed population prior (``prior_sd_<level>`` in ``constant_data``); under
``pooling="complete"`` no level varies, so a new group is the population.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .errors import DataError, HierlmError
from .group_tree import GroupTree, path_labels
from .table import to_pandas

if TYPE_CHECKING:
    from .fit import Fit

__all__ = ["KINDS", "NEW_GROUPS", "Predictions", "level_factor", "predict", "predict_draws"]

Kind = Literal["link", "mean", "response"]
NewGroups = Literal["sample", "population", "error"]
KINDS = ("mean", "response", "link")
NEW_GROUPS = ("sample", "population", "error")

_CHUNK_ELEMENTS = 4_000_000
_SUMMARY_ELEMENTS = 20_000_000  # draws × rows that predict() holds at once


@dataclass(frozen=True)
class Predictions:
    """Predictive draws for new rows.

    Attributes
    ----------
    draws
        (S, n) draws on the requested scale.
    known_level
        Per row and grouping chain, the deepest level of the row's path found in the fit
        (``"population"`` when not even the top level was known).
    new_groups
        Per level, how many groups of the new data were not in the fit.
    """

    draws: np.ndarray
    known_level: dict[str, np.ndarray]
    new_groups: dict[str, int]


def _check_new_data(fit: Fit, frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The columns predictions read, checked: present, numeric where numbers are needed,
    no missing or infinite values (the rows are named)."""
    spec = fit.spec
    enc = fit.design.encoding
    needed = [c for c in enc.variables if c not in spec.all_group_columns]
    needed += list(spec.all_group_columns)
    if spec.offset is not None:
        needed.append(spec.offset)
    if spec.trials is not None and kind != "link":
        needed.append(spec.trials)
    if spec.se is not None and kind == "response":
        needed.append(spec.se)
    needed = list(dict.fromkeys(needed))
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, list(frame.columns)[:20]))
        raise DataError(
            f"the new data has no column {missing[0]!r}, which the model needs "
            f"(it needs {', '.join(needed)}; the new data has {have})"
        )
    frame = frame.loc[:, needed]
    for col in needed:
        s = frame[col]
        bad = s.isna().to_numpy().copy()
        if pd.api.types.is_bool_dtype(s):
            pass  # a 0/1 predictor, as when the model was fitted
        elif pd.api.types.is_numeric_dtype(s):
            bad |= ~np.isfinite(s.to_numpy(dtype=np.float64, na_value=np.nan))
        elif col not in spec.all_group_columns and col not in enc.categories and not bad.all():
            raise DataError(
                f"column {col!r} of the new data has dtype {s.dtype}, but the model used it "
                f"as a number (e.g. {s.dropna().iloc[0]!r}); convert it to numbers first"
            )
        if bad.any():
            rows = np.flatnonzero(bad)
            shown = ", ".join(str(frame.index[i]) for i in rows[:10])
            more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
            word = "row" if len(rows) == 1 else "rows"
            raise DataError(
                f"column {col!r} of the new data is missing or not finite in {len(rows)} "
                f"{word} ({word} {shown}{more}); predictions need every value, so drop or "
                "fill those rows"
            )
    return frame


def _draw_index(fit: Fit, draws: int | None, rng: np.random.Generator) -> np.ndarray:
    post = fit.idata["posterior"]
    total = post.sizes["chain"] * post.sizes["draw"]
    if draws is None or draws >= total:
        return np.arange(total)
    if draws < 1:
        raise HierlmError(f"draws must be >= 1, got {draws}")
    return np.sort(rng.choice(total, size=draws, replace=False))


def level_factor(fit: Fit, level: str, idx: np.ndarray) -> tuple[list[int], np.ndarray] | None:
    """The varying coefficients of ``level`` and, per draw, a (q, q) factor of their
    covariance on the original scale (the fixed prior's under ``pooling="none"``); None when
    nothing varies there."""
    post = fit.idata["posterior"]
    names = list(fit.design.coef_names)
    if f"sd_{level}" in post:
        coefs = [names.index(str(c)) for c in post[f"sd_{level}"].coords[f"coef_{level}"].values]
        sd = fit.draws_of(f"sd_{level}", idx)
        if f"corr_{level}" in post:
            corr = fit.draws_of(f"corr_{level}", idx)
            w, V = np.linalg.eigh(corr)
            root = V * np.sqrt(np.clip(w, 0.0, None))[:, None, :]
        else:
            root = np.broadcast_to(np.eye(len(coefs)), (len(idx), len(coefs), len(coefs)))
        return coefs, sd[:, :, None] * root
    const = fit.idata["constant_data"] if "constant_data" in fit.idata.groups() else None
    if const is not None and f"prior_sd_{level}" in const:
        da = const[f"prior_sd_{level}"]
        coefs = [names.index(str(c)) for c in da.coords[f"coef_{level}"].values]
        sd = np.asarray(da.values, dtype=np.float64)
        return coefs, np.broadcast_to(np.diag(sd), (len(idx), len(coefs), len(coefs)))
    return None


@dataclass(frozen=True)
class _NewLevel:
    """The new groups of one level: each row's group code (-1 for a known group), the
    coefficients that vary there and the (S, K, q) draws of every new group's deviation."""

    codes: np.ndarray
    coefs: np.ndarray
    draws: np.ndarray


def _new_levels(
    fit: Fit,
    tree: GroupTree,
    frame: pd.DataFrame,
    known: np.ndarray,
    idx: np.ndarray,
    new_groups: str,
    rng: np.random.Generator,
) -> tuple[list[_NewLevel], dict[str, int]]:
    """Independent deviation draws for every new group, per level of one chain."""
    out: list[_NewLevel] = []
    counts: dict[str, int] = {}
    for k, level in enumerate(tree.level_names):
        unknown = ~known[:, k]
        if not unknown.any():
            continue
        keys = path_labels(frame.loc[unknown], tree.paths[k]).to_numpy()
        codes, uniques = pd.factorize(keys)
        counts[level] = len(uniques)
        if new_groups == "error":
            raise DataError(
                f"level {level!r} has {len(uniques)} "
                f"{'group that is' if len(uniques) == 1 else 'groups that are'} not in the fit (e.g. "
                f"{uniques[0]!r}, in {int(unknown.sum())} rows); pass new_groups='sample' "
                "(--new-groups sample) to draw them from the level's distribution, or "
                "'population' to use their known parent's coefficients"
            )
        root = level_factor(fit, level, idx) if new_groups == "sample" else None
        if root is None:
            continue
        coefs, factor = root
        z = rng.standard_normal((len(idx), len(uniques), len(coefs)))
        row_codes = np.full(len(frame), -1, dtype=np.int64)
        row_codes[unknown] = codes
        draws = np.einsum("sqr,skr->skq", factor, z)
        out.append(_NewLevel(row_codes, np.asarray(coefs), draws))
    return out, counts


def predict_draws(
    fit: Fit,
    new_data: Any,
    kind: Kind = "mean",
    new_groups: NewGroups = "sample",
    seed: int = 0,
    draws: int | None = None,
    draw_index: np.ndarray | None = None,
    stream: int = 0,
) -> Predictions:
    """Predictive draws for new rows (see :meth:`hierlm.Fit.predict`); ``draw_index``
    picks posterior draws (flat over chains) instead of a random subset of ``draws``, and
    ``stream`` > 0 gives another independent stream of new-group and response draws."""
    if kind not in KINDS:
        raise HierlmError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if new_groups not in NEW_GROUPS:
        raise HierlmError(f"new_groups must be one of {', '.join(NEW_GROUPS)}, got {new_groups!r}")
    frame = _check_new_data(fit, to_pandas(new_data), kind).reset_index(drop=True)
    if len(frame) == 0:
        raise DataError("the new data has no rows")
    rng = np.random.default_rng([seed, 7] if stream == 0 else [seed, 7, stream])
    idx = _draw_index(fit, draws, rng) if draw_index is None else np.asarray(draw_index)
    design = fit.design
    x = design.encoding.encode(frame)
    pop = fit.draws_of("beta", idx)  # (S, p)
    eta = pop @ x.T
    known_level: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    step = max(1, _CHUNK_ELEMENTS // (len(idx) * x.shape[1]))
    for t, tree in enumerate(design.trees):
        if not tree.n_levels:
            continue
        nodes = tree.locate(frame)
        known = nodes >= 0
        # Paths are nested: a known level implies every level above it is known.
        depth = known.sum(axis=1) - 1
        names = np.array(["population", *tree.level_names], dtype=object)
        label = "known_level" if t == 0 else f"known_{tree.level_names[-1]}"
        known_level[label] = names[depth + 1]
        new, c = _new_levels(fit, tree, frame, known, idx, new_groups, rng)
        counts.update(c)
        group = [fit.draws_of(f"beta_{level}", idx) for level in tree.level_names]
        # Each row's coefficients as a deviation from the population: its deepest known
        # group's (for a crossed chain, that is population plus deviation) plus its new
        # groups' draws.
        for start in range(0, len(frame), step):
            rows = np.arange(start, min(len(frame), start + step))
            b = np.zeros((len(idx), len(rows), x.shape[1]))
            for k in range(tree.n_levels):
                at = np.flatnonzero(depth[rows] == k)
                if len(at):
                    b[:, at] = group[k][:, nodes[rows[at], k]] - pop[:, None, :]
            for lv in new:
                at = np.flatnonzero(lv.codes[rows] >= 0)
                if len(at):
                    b[:, at[:, None], lv.coefs[None, :]] += lv.draws[:, lv.codes[rows[at]]]
            eta[:, rows] += np.einsum("snp,np->sn", b, x[rows])
    if fit.spec.offset is not None:
        eta += frame[fit.spec.offset].to_numpy(np.float64)[None, :]
    out = _on_scale(fit, eta, frame, kind, idx, rng)
    return Predictions(out, known_level, counts)


def _on_scale(
    fit: Fit,
    eta: np.ndarray,
    frame: pd.DataFrame,
    kind: str,
    idx: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Map linear-predictor draws to the requested scale, drawing responses if asked."""
    spec = fit.spec
    family = spec.family
    log_scale = spec.transform == "log" or family == "lognormal"
    if kind == "link":
        return eta
    sigma = fit.draws_of("sigma", idx)[:, None] if spec.has_sigma else np.zeros((len(idx), 1))
    if family in ("gaussian", "lognormal"):
        scale = sigma
        if spec.se is not None and kind == "response":
            se = frame[spec.se].to_numpy(np.float64)[None, :]
            scale = np.sqrt(sigma**2 + se**2)
        if kind == "mean":
            return np.exp(eta + 0.5 * sigma**2) if log_scale else eta
        y = eta + scale * rng.standard_normal(eta.shape)
        return np.exp(y) if log_scale else y
    if family == "student_t":
        if kind == "mean":
            return eta
        nu = fit.draws_of("nu", idx)[:, None]
        return eta + sigma * rng.standard_t(np.broadcast_to(nu, eta.shape))
    if family in ("bernoulli", "binomial"):
        prob = 1.0 / (1.0 + np.exp(-eta))
        n = frame[spec.trials].to_numpy(np.float64)[None, :] if spec.trials else 1.0
        if kind == "mean":
            return n * prob
        return rng.binomial(np.broadcast_to(n, eta.shape).astype(np.int64), prob).astype(float)
    rate = np.exp(eta)
    if kind == "mean":
        return rate
    return rng.poisson(rate).astype(float)


def predict(
    fit: Fit,
    new_data: Any,
    kind: Kind = "mean",
    new_groups: NewGroups = "sample",
    hdi: float = 0.9,
    seed: int = 0,
    draws: int | None = None,
) -> pd.DataFrame:
    """Per row: posterior mean, sd and HDI of the prediction, and the deepest known level
    (see :meth:`hierlm.Fit.predict`)."""
    if not 0 < hdi < 1:
        raise HierlmError(f"hdi must be in (0, 1), got {hdi!r}")
    frame = to_pandas(new_data)
    idx = _draw_index(fit, draws, np.random.default_rng([seed, 7]))
    step = max(1, _SUMMARY_ELEMENTS // len(idx))
    if len(frame) <= step:
        pred = predict_draws(fit, frame, kind, new_groups, seed, draws)
        table = summarise_draws(pred, hdi, frame.index)
        table.attrs["new_groups"] = pred.new_groups
        return table
    # Row by row, each prediction's distribution is the same whether or not its new
    # group's draw is shared with rows in other chunks, so chunks only bound the memory.
    parts = []
    for c, start in enumerate(range(0, len(frame), step)):
        chunk = frame.iloc[start : start + step]
        pred = predict_draws(fit, chunk, kind, new_groups, seed, draw_index=idx, stream=c + 1)
        parts.append(summarise_draws(pred, hdi, chunk.index))
    table = pd.concat(parts)
    table.attrs["new_groups"] = count_new_groups(fit, frame)
    return table


def count_new_groups(fit: Fit, new_data: Any) -> dict[str, int]:
    """Per level, how many groups of ``new_data`` are not in the fit."""
    frame = to_pandas(new_data)
    counts: dict[str, int] = {}
    for tree in fit.design.trees:
        if not tree.n_levels:
            continue
        known = tree.locate(frame) >= 0
        for k, level in enumerate(tree.level_names):
            unknown = ~known[:, k]
            if unknown.any():
                counts[level] = int(path_labels(frame.loc[unknown], tree.paths[k]).nunique())
    return counts


def summarise_draws(pred: Predictions, hdi: float, index: pd.Index) -> pd.DataFrame:
    """Mean, sd and HDI per row of predictive draws, with the known levels."""
    d = pred.draws
    lo, hi = _hdi(d, hdi)
    low_name, high_name = f"hdi_{100 * (1 - hdi) / 2:g}%", f"hdi_{100 * (1 + hdi) / 2:g}%"
    table = pd.DataFrame(
        {"mean": d.mean(axis=0), "sd": d.std(axis=0, ddof=1), low_name: lo, high_name: hi},
        index=index,
    )
    for name, values in pred.known_level.items():
        table[name] = values
    return table


def _hdi(d: np.ndarray, prob: float) -> tuple[np.ndarray, np.ndarray]:
    """Highest-density intervals of each column of ``d`` (ArviZ's, over the draw axis)."""
    import arviz as az

    from ._arviz import quiet

    with quiet():
        bounds = az.hdi(d[None], hdi_prob=prob)
    return bounds[..., 0], bounds[..., 1]
