"""Prior distributions, stated on the original data scale.

Classes of parameters: ``beta`` (population coefficients), ``intercept`` (the population
intercept at the predictors' means, as in brms and rstanarm), ``sd`` (group-level standard
deviations, optionally per level), ``sigma`` (residual sd) and ``corr`` (LKJ over a level's
correlated block). Anything left unset gets a weakly informative default scaled to the data,
as rstanarm's ``autoscale`` does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import TypeAlias

from .errors import PriorError

__all__ = [
    "LKJ",
    "CoefPrior",
    "Exponential",
    "HalfCauchy",
    "HalfNormal",
    "HalfStudentT",
    "Normal",
    "Priors",
    "ScalePrior",
    "StudentT",
    "parse_prior",
]


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise PriorError(f"{name} must be a positive finite number, got {value!r}")
    return value


@dataclass(frozen=True)
class Normal:
    """Normal(loc, scale) for a coefficient."""

    loc: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        _positive("Normal scale", self.scale)

    def scaled(self, shift: float, factor: float) -> Normal:
        """The prior of ``(x - shift) * factor``."""
        return Normal((self.loc - shift) * factor, self.scale * factor)

    def __str__(self) -> str:
        return f"Normal({self.loc:.3g}, {self.scale:.3g})"


@dataclass(frozen=True)
class StudentT:
    """Student-t(df, loc, scale) for a coefficient (exact, as a scale mixture of normals)."""

    df: float = 3.0
    loc: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        _positive("StudentT df", self.df)
        _positive("StudentT scale", self.scale)

    def scaled(self, shift: float, factor: float) -> StudentT:
        """The prior of ``(x - shift) * factor``."""
        return StudentT(self.df, (self.loc - shift) * factor, self.scale * factor)

    def __str__(self) -> str:
        return f"StudentT({self.df:.3g}, {self.loc:.3g}, {self.scale:.3g})"


@dataclass(frozen=True)
class HalfNormal:
    """Half-normal(scale) for a standard deviation."""

    scale: float = 1.0

    def __post_init__(self) -> None:
        _positive("HalfNormal scale", self.scale)

    def scaled(self, factor: float) -> HalfNormal:
        """The prior of ``x * factor``."""
        return HalfNormal(self.scale * factor)

    def __str__(self) -> str:
        return f"HalfNormal({self.scale:.3g})"


@dataclass(frozen=True)
class HalfCauchy:
    """Half-Cauchy(scale) for a standard deviation."""

    scale: float = 1.0

    def __post_init__(self) -> None:
        _positive("HalfCauchy scale", self.scale)

    def scaled(self, factor: float) -> HalfCauchy:
        """The prior of ``x * factor``."""
        return HalfCauchy(self.scale * factor)

    def __str__(self) -> str:
        return f"HalfCauchy({self.scale:.3g})"


@dataclass(frozen=True)
class HalfStudentT:
    """Half-Student-t(df, scale) for a standard deviation."""

    df: float = 3.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        _positive("HalfStudentT df", self.df)
        _positive("HalfStudentT scale", self.scale)

    def scaled(self, factor: float) -> HalfStudentT:
        """The prior of ``x * factor``."""
        return HalfStudentT(self.df, self.scale * factor)

    def __str__(self) -> str:
        return f"HalfStudentT({self.df:.3g}, {self.scale:.3g})"


@dataclass(frozen=True)
class Exponential:
    """Exponential(rate) for a standard deviation."""

    rate: float = 1.0

    def __post_init__(self) -> None:
        _positive("Exponential rate", self.rate)

    def scaled(self, factor: float) -> Exponential:
        """The prior of ``x * factor``."""
        return Exponential(self.rate / factor)

    def __str__(self) -> str:
        return f"Exponential({self.rate:.3g})"


@dataclass(frozen=True)
class LKJ:
    """LKJ(eta) over a correlation matrix; eta = 1 is uniform, larger pulls toward 0."""

    eta: float = 2.0

    def __post_init__(self) -> None:
        _positive("LKJ eta", self.eta)

    def __str__(self) -> str:
        return f"LKJ({self.eta:.3g})"


CoefPrior: TypeAlias = Normal | StudentT
ScalePrior: TypeAlias = HalfNormal | HalfCauchy | HalfStudentT | Exponential


@dataclass(frozen=True)
class Priors:
    """User priors on the original data scale; ``None`` means the data-scaled default.

    Parameters
    ----------
    beta
        Prior for every population slope, or a dict from coefficient name to prior.
    intercept
        Prior for the population intercept at the predictors' means.
    sd
        Prior for group-level sds: one for all levels, or a dict from level name to prior.
    sigma
        Prior for the residual sd.
    corr
        LKJ prior for correlated blocks: one for all levels, or a dict from level name.

    Examples
    --------
    >>> import hierlm as hl
    >>> p = hl.Priors(beta=hl.Normal(0, 10), sd={"county": hl.HalfNormal(1)})
    >>> p.sd_for("county")
    HalfNormal(scale=1.0)
    """

    beta: CoefPrior | dict[str, CoefPrior] | None = None
    intercept: CoefPrior | None = None
    sd: ScalePrior | dict[str, ScalePrior] | None = None
    sigma: ScalePrior | None = None
    corr: LKJ | dict[str, LKJ] | None = field(default=None)
    widths: tuple[tuple[str, float], ...] = ()

    def width(self, cls: str) -> float:
        """How much every prior of a class (``beta``, ``intercept``, ``sd``, ``sigma``,
        ``corr``) is widened, defaults included (1: as stated)."""
        return dict(self.widths).get(cls, 1.0)

    def widened(self, cls: str, factor: float) -> Priors:
        """These priors with every prior of ``cls`` ``factor`` times as wide (for the
        prior sensitivity check)."""
        widths = dict(self.widths)
        widths[cls] = widths.get(cls, 1.0) * _positive("width factor", factor)
        return replace(self, widths=tuple(sorted(widths.items())))

    def beta_for(self, coef: str) -> CoefPrior | None:
        """The user's prior for one population slope, if any."""
        if isinstance(self.beta, dict):
            return self.beta.get(coef)
        return self.beta

    def sd_for(self, level: str) -> ScalePrior | None:
        """The user's prior for the sds at one level, if any."""
        if isinstance(self.sd, dict):
            return self.sd.get(level)
        return self.sd

    def corr_for(self, level: str) -> LKJ | None:
        """The user's LKJ prior at one level, if any."""
        if isinstance(self.corr, dict):
            return self.corr.get(level)
        return self.corr

    def merged(self, other: Priors) -> Priors:
        """These priors with every field that ``other`` sets taken from ``other``."""
        out = self
        for name in ("beta", "intercept", "sd", "sigma", "corr"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is None:
                continue
            if isinstance(mine, dict) and isinstance(theirs, dict):
                theirs = {**mine, **theirs}
            out = replace(out, **{name: theirs})
        return out

    @classmethod
    def from_strings(cls, texts: list[str] | tuple[str, ...]) -> Priors:
        """Priors from statements such as ``"sd(county) ~ halfnormal(1)"``."""
        out = cls()
        for text in texts:
            out = out.merged(parse_prior(text))
        return out


_DISTS: dict[str, tuple[type, int, int]] = {
    # name: (class, min args, max args)
    "normal": (Normal, 2, 2),
    "student_t": (StudentT, 3, 3),
    "studentt": (StudentT, 3, 3),
    "halfnormal": (HalfNormal, 1, 1),
    "half_normal": (HalfNormal, 1, 1),
    "halfcauchy": (HalfCauchy, 1, 1),
    "half_cauchy": (HalfCauchy, 1, 1),
    "halfstudentt": (HalfStudentT, 2, 2),
    "half_student_t": (HalfStudentT, 2, 2),
    "exponential": (Exponential, 1, 1),
    "lkj": (LKJ, 1, 1),
}
_STATEMENT = re.compile(
    r"^\s*(?P<cls>[A-Za-z_]+)\s*(?:\(\s*(?P<target>[^)]*?)\s*\))?\s*~\s*"
    r"(?P<dist>[A-Za-z_]+)\s*\((?P<args>[^)]*)\)\s*$"
)
_SCALE_TYPES = (HalfNormal, HalfCauchy, HalfStudentT, Exponential)


def parse_prior(text: str) -> Priors:
    """Parse one prior statement.

    Parameters
    ----------
    text
        ``CLASS[(TARGET)] ~ DIST(ARGS)``, where CLASS is ``beta``, ``intercept``, ``sd``,
        ``sigma`` or ``corr``; TARGET is a coefficient name for ``beta`` and a level name for
        ``sd`` and ``corr``; DIST is one of normal, student_t, halfnormal, halfcauchy,
        halfstudentt, exponential, lkj.

    Returns
    -------
    Priors
        Priors with just that one field set.

    Examples
    --------
    >>> parse_prior("sd(county) ~ halfnormal(1)").sd
    {'county': HalfNormal(scale=1.0)}
    """
    match = _STATEMENT.match(text)
    if match is None:
        raise PriorError(
            f"cannot read the prior {text!r}; write it as CLASS ~ DIST(ARGS), e.g. "
            "'sd(county) ~ halfnormal(1)' or 'beta ~ normal(0, 10)'"
        )
    cls, target, dist = match["cls"].lower(), match["target"], match["dist"].lower()
    if dist not in _DISTS:
        raise PriorError(
            f"unknown distribution {match['dist']!r} in {text!r}; use one of {', '.join(sorted(_DISTS))}"
        )
    kind, lo, hi = _DISTS[dist]
    try:
        args = [float(a) for a in match["args"].split(",") if a.strip()]
    except ValueError:
        raise PriorError(
            f"the arguments of {match['dist']}(...) in {text!r} must be numbers"
        ) from None
    if not lo <= len(args) <= hi:
        raise PriorError(f"{match['dist']} takes {lo} argument(s), got {len(args)} in {text!r}")
    prior = kind(*args)
    if cls in ("beta", "intercept"):
        if not isinstance(prior, Normal | StudentT):
            raise PriorError(f"{cls} needs normal or student_t, got {match['dist']} in {text!r}")
        if cls == "intercept":
            return Priors(intercept=prior)
        return Priors(beta={target: prior} if target else prior)
    if cls in ("sd", "sigma"):
        if isinstance(prior, StudentT):
            prior = HalfStudentT(prior.df, prior.scale)
        if isinstance(prior, Normal):
            prior = HalfNormal(prior.scale)
        if not isinstance(prior, _SCALE_TYPES):
            raise PriorError(
                f"{cls} needs halfnormal, halfcauchy, halfstudentt or exponential, got {match['dist']} in {text!r}"
            )
        if cls == "sigma":
            return Priors(sigma=prior)
        return Priors(sd={target: prior} if target else prior)
    if cls == "corr":
        if not isinstance(prior, LKJ):
            raise PriorError(f"corr needs lkj(eta), got {match['dist']} in {text!r}")
        return Priors(corr={target: prior} if target else prior)
    raise PriorError(
        f"unknown parameter class {match['cls']!r} in {text!r}; use beta, intercept, sd, sigma or corr"
    )


def stretch(prior, factor: float):
    """``prior`` made ``factor`` times as wide: scales multiplied, an Exponential's rate
    divided, an LKJ's η divided (smaller η spreads the correlations)."""
    if factor == 1.0:
        return prior
    if isinstance(prior, Exponential):
        return replace(prior, rate=prior.rate / factor)
    if isinstance(prior, LKJ):
        return replace(prior, eta=prior.eta / factor)
    return replace(prior, scale=prior.scale * factor)
