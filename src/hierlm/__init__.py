"""hierlm: exact, fast Bayesian hierarchical linear regression with nested groups."""

from __future__ import annotations

from . import datasets
from .errors import DataError, FormulaError, HierlmError, PriorError
from .fit import Fit, load
from .model import Model
from .priors import LKJ, Exponential, HalfCauchy, HalfNormal, HalfStudentT, Normal, Priors, StudentT

__all__ = [
    "LKJ",
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
]
__version__ = "0.1.0"
