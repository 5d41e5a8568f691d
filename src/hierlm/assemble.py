"""Assemble the numeric problem: θ layout, prior arrays and padded tree statistics.

Priors are resolved on the original scale (defaults scaled to the data, as rstanarm's
autoscale does) and mapped exactly to the standardised scale, where X's columns are divided
by their sds and y is centred and scaled.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from .collapse import TreeStats
from .density import DensityArgs, Layout, LevelLayout
from .design import Design
from .node_layout import bucket, leaf_parent_sums, node_layout
from .priors import (
    LKJ,
    CoefPrior,
    Exponential,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    Normal,
    Priors,
    ScalePrior,
    StudentT,
    stretch,
)
from .suffstats import SuffStats, distinct_leaves

__all__ = ["PriorStatement", "Problem", "assemble", "bucket"]


@dataclass(frozen=True)
class PriorStatement:
    """One prior as the summary states it, on the original scale."""

    parameter: str
    prior: str
    source: str


@dataclass(frozen=True)
class Problem:
    """Everything the sampler and the downward pass need."""

    layout: Layout
    args: DensityArgs
    sizes: tuple[int, ...]
    priors: tuple[PriorStatement, ...]


def _scale_row(prior: ScalePrior, factor: float) -> tuple[str, float, float]:
    s = prior.scaled(factor)
    if isinstance(s, HalfNormal):
        return "halfnormal", 1.0, s.scale
    if isinstance(s, HalfCauchy):
        return "halfcauchy", 1.0, s.scale
    if isinstance(s, HalfStudentT):
        return "halfstudentt", s.df, s.scale
    assert isinstance(s, Exponential)
    return "exponential", 1.0, 1.0 / s.rate


def _distinct(stats: SuffStats, v: tuple[int, ...]) -> jax.Array | None:
    """Leaves grouped by ``(XᵀX)_jj`` when only ``j`` varies at the leaf level, padded to a
    size bucket with zero columns (which add nothing)."""
    if len(v) != 1:
        return None
    found = distinct_leaves(stats.xtx, stats.xty, v[0])
    if found is None:
        return None
    out = np.zeros((3, bucket(found.shape[1])))
    out[:, : found.shape[1]] = found
    return _on_device(out)


def _on_device(a: np.ndarray) -> jax.Array:
    # device_put compiles nothing; jnp.asarray stages a copy through a small compiled program
    # per array, which costs a cache lookup in every new process.
    return jax.device_put(np.ascontiguousarray(a))


def _coef_priors(
    design: Design, priors: Priors
) -> tuple[list[CoefPrior | None], list[PriorStatement]]:
    enc, sc = design.encoding, design.scaling
    out: list[CoefPrior | None] = []
    said = []
    for j, name in enumerate(enc.coef_names):
        if not enc.in_population[j]:
            out.append(None)
            continue
        if j == enc.intercept:
            user: CoefPrior | None = priors.intercept
            default: CoefPrior = Normal(sc.y_mean, 2.5 * sc.y_scale)
            label = "Intercept (at the predictors' means)" if _has_slopes(design) else "Intercept"
        else:
            user = priors.beta_for(name)
            default = Normal(0.0, 2.5 * sc.y_scale / sc.x_scale[j])
            label = f"beta[{name}]"
        chosen = stretch(
            user if user is not None else default,
            priors.width("intercept" if j == enc.intercept else "beta"),
        )
        out.append(chosen)
        source = _default_source(design.spec)
        if j == enc.intercept and design.spec.link_scale:
            source = "default: link of the mean response, sd 2.5"
        said.append(PriorStatement(label, str(chosen), "user" if user is not None else source))
    return out, said


def _default_source(spec) -> str:
    return "default: 2.5/sd(x), link scale" if spec.link_scale else "default: 2.5 × sd(y)/sd(x)"


def _has_slopes(design: Design) -> bool:
    enc = design.encoding
    return any(enc.in_population[j] and j != enc.intercept for j in range(enc.p))


def assemble(design: Design, stats: SuffStats, priors: Priors, pad: bool = True) -> Problem:
    """Build the layout and arrays of the collapsed log density.

    Parameters
    ----------
    design
        The model's design (encoding, levels, tree, scaling).
    stats
        Standardised leaf statistics.
    priors
        User priors (unset fields take the data-scaled defaults).
    pad
        Pad group counts to size buckets.
    """
    enc, sc, spec = design.encoding, design.scaling, design.spec
    p = enc.p
    factor = sc.x_scale / sc.y_scale  # standardised = original × factor
    said: list[PriorStatement] = []

    # Population prior: independent priors on (centred intercept, slopes), mapped to b, then
    # to the standardised scale: L0 = D A diag(scale), m0 = D (A μ - y_shift e_icpt).
    coef_priors, coef_said = _coef_priors(design, priors)
    said += coef_said
    A = np.eye(p)
    icpt = enc.intercept
    if icpt is not None and enc.in_population[icpt]:
        for j in range(p):
            if j != icpt and enc.in_population[j]:
                A[icpt, j] = -sc.x_mean[j]
    mu = np.array([cp.loc if cp is not None else 0.0 for cp in coef_priors])
    scale = np.array([cp.scale if cp is not None else 0.0 for cp in coef_priors])
    df = np.array([cp.df if isinstance(cp, StudentT) else 1.0 for cp in coef_priors])
    t_coefs = tuple(j for j, cp in enumerate(coef_priors) if isinstance(cp, StudentT))
    shift = np.zeros(p)
    if icpt is not None:
        shift[icpt] = sc.y_shift
    D = np.diag(factor)
    m0 = D @ (A @ mu - shift)
    L0_base = D @ A

    # Residual sd.
    sigma_prior: ScalePrior = stretch(
        priors.sigma or Exponential(1.0 / sc.y_scale), priors.width("sigma")
    )
    if spec.has_sigma:
        said.append(
            PriorStatement(
                "sigma", str(sigma_prior), "user" if priors.sigma else "default: rate 1/sd(y)"
            )
        )
    sigma_kind, s_df, s_scale = _scale_row(sigma_prior, 1.0 / sc.y_scale)
    if spec.family == "student_t":
        said.append(PriorStatement("nu", "Gamma(2, 0.1), nu > 1", "default (as brms)"))

    # Levels.
    pooling = spec.pooling
    varying_any = tuple(dict.fromkeys(j for lv in design.levels for j in lv.coefs))
    layouts, sd_rows, etas, fixed = [], [], [], []
    n_levels = len(design.levels)
    for li, lv in enumerate(design.levels):
        v = lv.coefs
        if pooling == "complete" or (pooling == "none" and li < n_levels - 1):
            layouts.append(LevelLayout((), (), (), "halfnormal"))
            sd_rows.append(np.zeros((0, 2)))
            etas.append(np.zeros((0,)))
            fixed.append(np.zeros((0, 0)))
            continue
        if pooling == "none":
            # Each leaf gets its own coefficients with the population prior's marginal sd.
            v = varying_any
            C0 = (L0_base * scale) @ (L0_base * scale).T
            lam = np.diag(np.sqrt(np.diag(C0)[list(v)]))
            layouts.append(
                LevelLayout(v, (1,) * len(v), (False,) * len(v), "halfnormal", fixed=True)
            )
            sd_rows.append(np.zeros((len(v), 2)))
            etas.append(np.zeros((0,)))
            fixed.append(lam)
            L0_base = L0_base.copy()
            L0_base[list(v), :] = 0.0
            continue
        user_sd = priors.sd_for(lv.name)
        rows, kinds = [], set()
        for j in v:
            name = enc.coef_names[j]
            prior = stretch(
                user_sd or HalfStudentT(3.0, 2.5 * sc.y_scale / sc.x_scale[j]), priors.width("sd")
            )
            said.append(
                PriorStatement(
                    f"sd_{lv.name}[{name}]",
                    str(prior),
                    "user" if user_sd else _default_source(spec),
                )
            )
            kind, d, s = _scale_row(prior, factor[j])
            kinds.add(kind)
            rows.append((d, s))
        (sd_kind,) = kinds
        lkj = stretch(priors.corr_for(lv.name) or LKJ(2.0), priors.width("corr"))
        n_corr = sum(lv.correlated)
        if n_corr:
            said.append(
                PriorStatement(
                    f"corr_{lv.name}", str(lkj), "user" if priors.corr_for(lv.name) else "default"
                )
            )
        layouts.append(LevelLayout(v, tuple(len(b) for b in lv.blocks), lv.correlated, sd_kind))
        sd_rows.append(np.array(rows, dtype=np.float64).reshape(len(v), 2))
        etas.append(np.full(n_corr, lkj.eta))
        fixed.append(np.zeros((0, 0)))

    layout = Layout(p, sigma_kind, tuple(layouts), t_coefs, spec.has_sigma)
    sizes = design.tree.sizes
    nodes = node_layout(design.tree.parents, pad=pad)
    place = nodes.place_leaves
    xtx, xty = np.moveaxis(place(stats.xtx), 0, -1), np.moveaxis(place(stats.xty), 0, -1)
    leaf_sums = None
    if nodes.parents:
        leaf_sums = (
            _on_device(leaf_parent_sums(xtx, nodes.parents)),
            _on_device(leaf_parent_sums(xty, nodes.parents)),
        )
    tree_stats = TreeStats(
        n=_on_device(place(stats.n)),
        xtx=_on_device(xtx),
        xty=_on_device(xty),
        yty=_on_device(place(stats.yty)),
        parents=tuple(_on_device(p) for p in nodes.parents),
        order=tuple(_on_device(o) for o in nodes.order),
        distinct=_distinct(stats, layouts[-1].v if layouts else ()),
        leaf_sums=leaf_sums,
    )
    args = DensityArgs(
        stats=tree_stats,
        sigma_prior=_on_device(np.array([s_df, s_scale], dtype=np.float64)),
        sd_prior=tuple(_on_device(r) for r in sd_rows),
        lkj_eta=tuple(_on_device(e) for e in etas),
        m0=_on_device(m0),
        L0_base=_on_device(L0_base),
        beta_scale=_on_device(scale),
        beta_df=_on_device(df),
        fixed_lam=tuple(_on_device(f) for f in fixed),
    )
    return Problem(layout, args, sizes, tuple(said))
