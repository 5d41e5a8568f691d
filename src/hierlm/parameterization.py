"""Centred or non-centred, per level: chosen from how much a typical group's data say.

A level's deviations can be sampled as they are (centred) or as standard normals scaled by
the level's sd (non-centred). When a group's data pin its coefficient down far more tightly
than the level's sd does, the centred form is the easy geometry; when the data are weak the
centred form makes a funnel (the deviations must shrink with the sd) and the non-centred form
removes it. ``auto`` compares the two precisions at a pilot estimate of the sds.

Notes
-----
For a level with pilot sd ``τ_l`` the ratio is ``τ_l² / V_l``, where ``V_l`` is the sampling
variance of a typical group's coefficient from its own data: at the leaf level
``V = 1 / (n w)`` with ``n`` the median rows per group and ``w`` the information per row
(``1/σ²`` for Gaussian data, ``m p (1 - p)`` for binomial with ``m`` trials, the mean count
for Poisson); one level up, ``V_l = (τ_{l+1}² + V_{l+1}) / m_l`` with ``m_l`` the median
number of child groups. Centred when the ratio exceeds 4 (the data's sd of a group's
coefficient at most half the level's spread): near 1 both forms work, and a funnel costs
more than the centred form saves, so ties go to non-centred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import HierlmError
from .group_tree import GroupTree

__all__ = ["LevelChoice", "check_levels", "choose", "moment_sds"]

CHOICES = ("auto", "centered", "noncentered")
_CENTRED_ABOVE = 4.0


@dataclass(frozen=True)
class LevelChoice:
    """The parameterisation of one level and why it was chosen."""

    level: str
    centered: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.level}: {'centered' if self.centered else 'non-centered'} ({self.reason})"


def _requested(parameterization: str | dict[str, str], level: str) -> str:
    value = (
        parameterization.get(level, "auto")
        if isinstance(parameterization, dict)
        else parameterization
    )
    if value not in CHOICES:
        raise HierlmError(
            f"parameterization for level {level!r} must be one of {', '.join(CHOICES)}, "
            f"got {value!r}"
        )
    return value


def check_levels(parameterization: str | dict[str, str], names: tuple[str, ...]) -> None:
    """Refuse a per-level parameterisation that names a level the model lacks."""
    if isinstance(parameterization, dict):
        unknown = set(parameterization) - set(names)
        if unknown:
            raise HierlmError(
                f"parameterization names the level {sorted(unknown)[0]!r}, which the model does "
                f"not have; its levels are {', '.join(names)}"
            )


def choose(
    tree: GroupTree,
    leaf_rows: np.ndarray,
    parameterization: str | dict[str, str],
    pilot_sd: list[float | None],
    row_information: float,
) -> tuple[LevelChoice, ...]:
    """Pick each level's parameterisation.

    Parameters
    ----------
    tree
        The group tree.
    leaf_rows
        Rows per leaf group.
    parameterization
        ``auto``, ``centered`` or ``noncentered``, for every level or per level name.
    pilot_sd
        Per level, a pilot estimate of the sd of its first varying coefficient on the
        model's scale (None where nothing varies).
    row_information
        Fisher information about the linear predictor per row (``w`` in the Notes).
    """
    n_levels = tree.n_levels
    typical_var: list[float] = [0.0] * n_levels
    below_var = 1.0 / max(float(np.median(leaf_rows)) * row_information, 1e-12)
    for li in range(n_levels - 1, -1, -1):
        if li < n_levels - 1:
            children = np.bincount(tree.parents[li + 1], minlength=tree.sizes[li])
            m = max(float(np.median(children)), 1.0)
            below_var = ((pilot_sd[li + 1] or 0.0) ** 2 + below_var) / m
        typical_var[li] = below_var
    out = []
    for li, name in enumerate(tree.level_names):
        wanted = _requested(parameterization, name)
        if wanted != "auto":
            out.append(LevelChoice(name, wanted == "centered", "as requested"))
            continue
        sd = pilot_sd[li]
        if sd is None:
            out.append(LevelChoice(name, False, "nothing varies at this level"))
            continue
        ratio = sd**2 / typical_var[li]
        centered = ratio > _CENTRED_ABOVE
        strength = "strong" if centered else "weak"
        out.append(
            LevelChoice(
                name,
                centered,
                f"{strength} data: a typical group's own data are {ratio:.2g}x as precise "
                f"as the level's spread at a pilot sd of {sd:.2g}",
            )
        )
    return tuple(out)


def moment_sds(
    tree: GroupTree, leaf: np.ndarray, y: np.ndarray, trials: np.ndarray, family: str
) -> list[float]:
    """Pilot sds of the intercept at each level on the model's scale, by moments: the
    spread of each group's empirical (link) mean, less the part its sampling noise explains.
    For families with a residual sd, that noise is the pooled within-leaf variance over the
    group's rows."""
    out: list[float] = []
    if not tree.n_levels:
        return out
    n_leaves = tree.sizes[-1]
    sy = np.bincount(leaf, weights=y, minlength=n_leaves)
    sn = np.bincount(leaf, weights=trials, minlength=n_leaves)
    within = 1.0
    if family not in ("bernoulli", "binomial", "poisson"):
        leaf_mean = sy / np.maximum(sn, 1.0)
        within = float(np.sum((y - leaf_mean[leaf]) ** 2) / max(len(y) - n_leaves, 1))
    ancestors = tree.ancestors(tree.n_levels - 1)
    parent_link = np.zeros(1)
    for li in range(tree.n_levels):
        node = ancestors[:, li]
        gy = np.bincount(node, weights=sy, minlength=tree.sizes[li])
        gn = np.bincount(node, weights=sn, minlength=tree.sizes[li])
        if family == "poisson":
            rate = (gy + 0.5) / np.maximum(gn, 1.0)
            link, noise = np.log(rate), 1.0 / (rate * np.maximum(gn, 1.0))
        elif family not in ("bernoulli", "binomial"):
            link, noise = gy / np.maximum(gn, 1.0), within / np.maximum(gn, 1.0)
        else:
            share = (gy + 0.5) / (gn + 1.0)
            link = np.log(share / (1 - share))
            noise = 1.0 / ((gn + 1.0) * share * (1 - share))
        # The spread around each group's parent, not the overall mean: the level's own sd.
        parents = tree.parents[li] if li else np.zeros(tree.sizes[0], dtype=np.int64)
        if li == 0:
            parent_link = np.full(1, np.average(link, weights=np.maximum(gn, 1.0)))
        dev = link - parent_link[parents]
        spread = float(np.sum(dev**2) / max(len(dev) - len(parent_link), 1))
        out.append(float(np.sqrt(max(spread - float(np.mean(noise)), 0.01))))
        parent_link = link
    return out
