"""Exceptions raised for bad input.

Every error names what is wrong (the column, level, term or value) and says what to do.
"""

from __future__ import annotations

__all__ = ["ConvergenceWarning", "DataError", "FormulaError", "HierlmError", "PriorError"]


class HierlmError(Exception):
    """Base class of every error hierlm raises on purpose."""


class FormulaError(HierlmError, ValueError):
    """A formula that cannot be parsed or is not supported.

    Parameters
    ----------
    message
        What is wrong and what to do.
    formula
        The formula text.
    span
        ``(start, end)`` character offsets of the offending token in ``formula``.
    """

    def __init__(
        self, message: str, formula: str | None = None, span: tuple[int, int] | None = None
    ):
        self.formula = formula
        self.span = span
        text = message
        if formula is not None and span is not None:
            start, end = span
            width = max(1, end - start)
            text = f"{message}\n    {formula}\n    {' ' * start}{'^' * width}"
        super().__init__(text)


class DataError(HierlmError, ValueError):
    """The data do not fit the model: a missing column, a bad value, too few groups."""


class PriorError(HierlmError, ValueError):
    """A prior that cannot be parsed or does not fit the parameter it is given for."""


class ConvergenceWarning(UserWarning):
    """A fit that finished but whose draws may not be trustworthy (R-hat, ESS, divergences)."""
