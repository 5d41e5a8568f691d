"""ArviZ, with its single-chain shape warning kept off the user's terminal.

ArviZ logs "Shape validation failed" on stderr whenever a fit has one chain or very few
draws. hierlm's diagnostics say that in plain words, and library code must not print, so
hierlm's own ArviZ calls run inside :func:`quiet`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["quiet"]


class _DropShapeWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Shape validation failed" not in record.getMessage()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Drop ArviZ's shape-validation warnings inside the block (others still show)."""
    # ArviZ logs through its own Logger instance (``arviz._log``, not registered with
    # logging.getLogger), so the filter goes on that object.
    import arviz

    logger = getattr(arviz, "_log", None)
    if not isinstance(logger, logging.Logger):
        logger = logging.getLogger("arviz")
    drop = _DropShapeWarning()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
