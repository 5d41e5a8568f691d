"""hierlm: exact, fast Bayesian hierarchical linear regression with nested groups."""

from __future__ import annotations

import warnings

from . import datasets
from .errors import ConvergenceWarning, DataError, FormulaError, HierlmError, PriorError
from .fit import Fit, load
from .model import Model
from .priors import LKJ, Exponential, HalfCauchy, HalfNormal, HalfStudentT, Normal, Priors, StudentT
from .source import open_source as scan

__all__ = [
    "LKJ",
    "ConvergenceWarning",
    "DataError",
    "Exponential",
    "Fit",
    "FormulaError",
    "HalfCauchy",
    "HalfNormal",
    "HalfStudentT",
    "HierlmError",
    "Model",
    "Normal",
    "PriorError",
    "Priors",
    "StudentT",
    "datasets",
    "load",
    "scan",
]
__version__ = "0.1.0"

# ArviZ 0.2x announces its coming refactor once a day, at import, as a FutureWarning about
# ArviZ itself; hierlm imports ArviZ on the user's behalf (often on a background thread), so
# the notice would land on every hierlm user's terminal. It says nothing about their fit.
warnings.filterwarnings(
    "ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning
)
