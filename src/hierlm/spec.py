"""The model specification: what a formula says, frozen.

A :class:`ModelSpec` holds the response and its transform, the fixed-effect formula, the
hierarchy as an ordered chain of levels, which terms vary at each level and how they are
correlated, the family and the pooling mode. It knows nothing about data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "COLLAPSIBLE_FAMILIES",
    "FAMILIES",
    "Block",
    "Family",
    "LevelSpec",
    "ModelSpec",
    "Pooling",
    "Transform",
]

Family = Literal["gaussian", "lognormal", "student_t", "bernoulli", "binomial", "poisson"]
FAMILIES: tuple[str, ...] = (
    "gaussian",
    "lognormal",
    "student_t",
    "bernoulli",
    "binomial",
    "poisson",
)
# Families whose group coefficients integrate out exactly (Gaussian given θ).
COLLAPSIBLE_FAMILIES: tuple[str, ...] = ("gaussian", "lognormal")
Pooling = Literal["partial", "none", "complete"]
Transform = Literal["identity", "log"]


@dataclass(frozen=True)
class Block:
    """Terms that vary together at one level.

    Attributes
    ----------
    terms
        Term names as formulaic writes them; ``"1"`` is the intercept.
    correlated
        ``True`` for ``|`` (an LKJ correlation over the block), ``False`` for ``||``.
    """

    terms: tuple[str, ...]
    correlated: bool


@dataclass(frozen=True)
class LevelSpec:
    """One level of the nesting chain.

    Attributes
    ----------
    name
        The level's name: its last grouping column (``county`` in ``state/county``).
    path
        Grouping columns from the top level down to this one, e.g. ``("state", "county")``.
    blocks
        The terms that vary at this level, grouped into covariance blocks. Empty when
        nothing varies here (the level still nests the ones below it).
    """

    name: str
    path: tuple[str, ...]
    blocks: tuple[Block, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        """All terms that vary at this level, in block order."""
        return tuple(t for b in self.blocks for t in b.terms)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model.

    Attributes
    ----------
    formula
        The formula text as given.
    response
        The response column.
    transform
        ``"log"`` when the model is fitted to ``log(response)``.
    fixed
        The fixed-effect right-hand side as a formulaic formula, e.g. ``"1 + floor"``.
    levels
        The nesting chain, top level first.
    family
        One of :data:`FAMILIES`: ``gaussian``, ``lognormal`` (identity link on the log
        scale), ``student_t`` (ν estimated), ``bernoulli`` and ``binomial`` (logit link),
        ``poisson`` (log link).
    pooling
        ``"partial"`` (default), ``"none"`` or ``"complete"``.
    trials
        The column of binomial trial counts (``y | trials(n) ~ ...``).
    se
        The column of known standard errors of the response (``y | se(s) ~ ...``): each
        row's y has that sd around its group's mean, as in a meta-analysis.
    se_sigma
        With ``se``: also estimate a residual sd on top of the known ones
        (``se(s, sigma = TRUE)``).
    crossed
        Further nesting chains that cross ``levels`` (``(1 | county) + (1 | year)``): their
        groups' deviations add to the linear predictor, with no population part of their
        own.
    offset
        A column added to the linear predictor with coefficient 1 (``offset(col)``).
    """

    formula: str
    response: str
    transform: Transform
    fixed: str
    levels: tuple[LevelSpec, ...]
    family: Family = "gaussian"
    pooling: Pooling = "partial"
    trials: str | None = None
    offset: str | None = None
    se: str | None = None
    se_sigma: bool = False
    crossed: tuple[tuple[LevelSpec, ...], ...] = ()

    @property
    def chains(self) -> tuple[tuple[LevelSpec, ...], ...]:
        """Every nesting chain, the primary one (``levels``) first."""
        return ((self.levels,) if self.levels else ()) + self.crossed

    @property
    def all_levels(self) -> tuple[LevelSpec, ...]:
        """Every level of every chain, in chain order."""
        return tuple(level for chain in self.chains for level in chain)

    @property
    def all_group_columns(self) -> tuple[str, ...]:
        """Every grouping column of every chain, without repeats."""
        return tuple(dict.fromkeys(c for chain in self.chains for c in chain[-1].path))

    @property
    def has_sigma(self) -> bool:
        """Whether the model has a residual sd to estimate."""
        if self.se is not None:
            return self.se_sigma
        return self.family in ("gaussian", "lognormal", "student_t")

    @property
    def link_scale(self) -> bool:
        """Whether the linear predictor is on a link scale (logit, log) rather than the
        response's own: no centring or scaling of y, and priors in link units."""
        return self.family in ("bernoulli", "binomial", "poisson")

    @property
    def collapsible(self) -> bool:
        """Whether the collapsed (exact) engine applies."""
        # Known sds enter the leaf statistics as weights; a residual sd on top of them would
        # make the weights depend on σ, row by row.
        return (
            self.family in COLLAPSIBLE_FAMILIES
            and self.offset is None
            and not (self.se is not None and self.se_sigma)
            and not self.crossed
        )

    @property
    def group_columns(self) -> tuple[str, ...]:
        """The grouping columns, top level first."""
        return self.levels[-1].path if self.levels else ()

    @property
    def varying_terms(self) -> tuple[str, ...]:
        """Every term that varies at some level, in order of first appearance."""
        seen: dict[str, None] = {}
        for level in self.all_levels:
            for term in level.terms:
                seen.setdefault(term, None)
        return tuple(seen)
