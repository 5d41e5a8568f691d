"""The design: fixed-effect encoding, which coefficients vary where, and the scaling.

The encoding is formulaic's ModelSpec with its learned state, so new data is encoded the same
way. Every column of X is divided by its sd (never centred, so the meaning of each coefficient
and the set of coefficients that vary at each level are those the user wrote), and y is
centred (when the population has an intercept) and scaled. Results are mapped back to the
original scale.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .errors import DataError, FormulaError
from .formula_guard import FORMULA_CONTEXT, required_columns
from .group_tree import GroupTree
from .spec import ModelSpec

if TYPE_CHECKING:
    from formulaic import ModelSpec as FormulaicSpec

__all__ = ["Design", "FixedEncoding", "LevelCoefs", "Scaling"]


@dataclass(frozen=True)
class FixedEncoding:
    """formulaic's encoding of the population design matrix X.

    Attributes
    ----------
    spec
        formulaic's ModelSpec (holds category levels and transform state).
    coef_names
        Column names of X, e.g. ``("Intercept", "floor")``.
    term_columns
        For each formula term, the indices of its columns.
    in_population
        Per column, whether it has a population coefficient (a term varying at some level
        but absent from the fixed part has population value 0, as in lme4).
    categories
        The levels of each categorical predictor, as seen when the model was built.
    """

    spec: FormulaicSpec
    coef_names: tuple[str, ...]
    term_columns: dict[str, tuple[int, ...]]
    in_population: tuple[bool, ...]
    categories: dict[str, tuple[str, ...]]

    @property
    def p(self) -> int:
        """Number of columns."""
        return len(self.coef_names)

    @property
    def intercept(self) -> int | None:
        """Index of the intercept column, if any."""
        cols = self.term_columns.get("1")
        return cols[0] if cols else None

    @property
    def variables(self) -> tuple[str, ...]:
        """The data columns the encoding reads."""
        return tuple(sorted(required_columns(str(self.spec.formula))))

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """X for new rows, float64, with the stored encoding; unseen categories are refused."""
        for col, known in self.categories.items():
            if col not in frame.columns:
                continue
            values = pd.unique(frame[col].astype(str))
            new = sorted(set(values) - set(known))
            if new:
                raise DataError(
                    f"column {col!r} has the category {new[0]!r}, which was not in the data the model "
                    f"was built from (known: {', '.join(known[:10])}); a category not seen cannot be "
                    "encoded, so remove those rows or map them to a known category"
                )
            frame = frame.assign(
                **{col: pd.Categorical(frame[col].astype(str), categories=list(known))}
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = np.asarray(
                self.spec.get_model_matrix(frame, context=FORMULA_CONTEXT), dtype=np.float64
            )
        bad = ~np.isfinite(x)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            name = self.coef_names[col]
            raise DataError(
                f"column {name!r} of the design is not finite in {int(bad.any(axis=1).sum())} rows "
                f"(first: row {frame.index[row]}): a transform overflowed or is undefined there "
                "(exp of a large value, log of a value <= 0), or a predictor value is missing or "
                "infinite. Remove those rows, or rescale or transform the predictor differently."
            )
        return x


def _term_strings(rhs: str, what: str) -> list[str]:
    """formulaic's term names for a right-hand side (no implicit intercept for one term)."""
    # formulaic is imported where first used (0.25-0.4 s): a warm fit loads its compiled
    # programs meanwhile (see hierlm.compiled.prefetch).
    from formulaic import Formula

    try:
        terms = [str(t) for t in Formula(rhs)]
    except Exception as exc:  # formulaic raises several types for bad input
        raise FormulaError(f"cannot read the {what} {rhs!r}: {exc}") from None
    if what == "varying term" and rhs.strip() != "1":
        terms = [t for t in terms if t != "1"]
    return terms


def build_encoding(spec: ModelSpec, frame: pd.DataFrame) -> FixedEncoding:
    """Learn the encoding from ``frame`` (the first chunk of rows is enough when every
    categorical predictor is a pandas Categorical with its full set of levels)."""
    from formulaic import model_matrix

    fixed_terms = _term_strings(spec.fixed, "fixed part")
    varying = [t for term in spec.varying_terms for t in _term_strings(term, "varying term")]
    terms = list(dict.fromkeys(fixed_terms + varying))
    has_intercept = "1" in terms
    body = " + ".join(t for t in terms if t != "1") or ""
    rhs = ("1" if has_intercept else "0") + (f" + {body}" if body else "")
    if rhs == "0":
        raise FormulaError(
            f"the formula {spec.formula!r} has no terms; add a predictor or an intercept"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mm = model_matrix(
                rhs, frame, output="numpy", na_action="raise", context=FORMULA_CONTEXT
            )
    except Exception as exc:
        raise (
            _text_in_transform(rhs, frame)
            or _undefined(exc)
            or DataError(f"cannot build the design matrix for {rhs!r}: {exc}")
        ) from None
    fspec = mm.model_spec
    term_columns = {str(t): tuple(int(i) for i in idx) for t, idx in fspec.term_indices.items()}
    for term in varying:
        if term not in term_columns:
            raise FormulaError(f"the varying term {term!r} produced no columns", spec.formula)
    in_pop = [False] * len(fspec.column_names)
    for term in fixed_terms:
        for col in term_columns.get(term, ()):
            in_pop[col] = True
    used = required_columns(str(fspec.formula))
    categories = {
        str(c): tuple(map(str, frame[c].cat.categories))
        for c in frame.columns
        if c in used and isinstance(frame[c].dtype, pd.CategoricalDtype)
    }
    return FixedEncoding(fspec, tuple(fspec.column_names), term_columns, tuple(in_pop), categories)


def _undefined(exc: Exception) -> DataError | None:
    """The error for a transform that gives NaN in some rows (formulaic's null check)."""
    found = re.search(r"`([^`]+)` contains null values after evaluation", str(exc))
    if found is None:
        return None
    return DataError(
        f"the term '{found.group(1)}' is undefined (NaN) in some rows, e.g. the log or square "
        "root of a negative value; remove those rows, or transform the column differently "
        "(log1p(x) for x >= 0, or shift it)"
    )


def _text_in_transform(rhs: str, frame: pd.DataFrame) -> DataError | None:
    """The error for a text (categorical) column inside a function call such as log(a)."""
    from formulaic import Formula

    for term in Formula(rhs):
        for factor in term.factors:
            if factor.eval_method.value != "python" or str(factor.expr).startswith("C("):
                continue
            used = required_columns(str(factor.expr))
            for col in sorted(used & set(map(str, frame.columns))):
                if isinstance(frame[col].dtype, pd.CategoricalDtype):
                    return DataError(
                        f"predictor {col!r} holds text, not numbers (e.g. "
                        f"{frame[col].iloc[0]!r}), and the term '{factor.expr}' needs numbers; "
                        f"convert the column to numbers in the data, or use it as a category "
                        f"on its own ({col} or C({col})) without the function"
                    )
    return None


@dataclass(frozen=True)
class LevelCoefs:
    """Which coefficients vary at one level, grouped into covariance blocks.

    Attributes
    ----------
    name
        Level name.
    blocks
        Per block, the coefficient indices (into X's columns).
    correlated
        Per block, whether it has an LKJ correlation.
    """

    name: str
    blocks: tuple[tuple[int, ...], ...]
    correlated: tuple[bool, ...]

    @property
    def coefs(self) -> tuple[int, ...]:
        """Varying coefficient indices in block order."""
        return tuple(i for b in self.blocks for i in b)


@dataclass(frozen=True)
class Scaling:
    """Standardisation: ``y_std = (y - y_shift) / y_scale``, ``X_std = X / x_scale``.

    ``y_shift`` is the mean of y when the population has an intercept, else 0. ``y_mean`` and
    ``x_mean`` hold the original-scale means, for the default priors.
    """

    y_mean: float
    y_shift: float
    y_scale: float
    x_mean: np.ndarray
    x_scale: np.ndarray

    def coef_factor(self) -> np.ndarray:
        """Per coefficient, original = standardised × factor (plus ``y_shift`` on the intercept)."""
        return self.y_scale / self.x_scale


@dataclass(frozen=True)
class Design:
    """Everything needed to turn rows into the model's statistics, frozen for new data."""

    spec: ModelSpec
    encoding: FixedEncoding
    levels: tuple[LevelCoefs, ...]
    tree: GroupTree
    scaling: Scaling
    crossed: tuple[GroupTree, ...] = ()

    @property
    def trees(self) -> tuple[GroupTree, ...]:
        """The primary tree, then one per crossed chain (``levels`` follows this order)."""
        return (self.tree, *self.crossed)

    @property
    def level_names(self) -> tuple[str, ...]:
        """Every level's name, in the order of ``levels``."""
        return tuple(name for tree in self.trees for name in tree.level_names)

    @property
    def level_labels(self) -> tuple[tuple[str, ...], ...]:
        """Every level's group labels, in the order of ``levels``."""
        return tuple(labels for tree in self.trees for labels in tree.labels)

    @property
    def coef_names(self) -> tuple[str, ...]:
        """Population coefficient names."""
        return self.encoding.coef_names

    def original_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(factor, shift)`` with original = standardised × factor + shift, per coefficient."""
        shift = np.zeros(len(self.encoding.coef_names))
        if self.encoding.intercept is not None:
            shift[self.encoding.intercept] = self.scaling.y_shift
        return self.scaling.coef_factor(), shift

    def to_original(self, beta_std: np.ndarray) -> np.ndarray:
        """Map coefficient vectors (last axis p) from the standardised to the original scale."""
        factor, shift = self.original_affine()
        return beta_std * factor + shift


def level_coefs(spec: ModelSpec, encoding: FixedEncoding) -> tuple[LevelCoefs, ...]:
    """Coefficient blocks per level from the spec's terms."""
    out = []
    for level in spec.all_levels:
        blocks, corr = [], []
        for block in level.blocks:
            idx = tuple(
                c
                for term in block.terms
                for t in _term_strings(term, "varying term")
                for c in encoding.term_columns[t]
            )
            if block.correlated:
                blocks.append(idx)
                corr.append(len(idx) > 1)
            else:
                blocks.extend((i,) for i in idx)
                corr.extend(False for _ in idx)
        out.append(LevelCoefs(level.name, tuple(blocks), tuple(corr)))
    return tuple(out)
