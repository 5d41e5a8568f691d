"""NumPyro, imported on first use.

Only tracing a program needs NumPyro (a warm process loads every program from the cache),
so it is imported then. Programs may be traced on two threads at once, and two threads
importing NumPyro's circular modules together can see them half-initialised: the import
happens once, under a lock. Unpickling a saved program whose outputs hold NumPyro types
imports NumPyro too, and takes the same lock (:data:`import_lock`).
"""

from __future__ import annotations

import threading

__all__ = ["ensure_imported", "import_lock"]

import_lock = threading.Lock()


def ensure_imported() -> None:
    """Import the parts of NumPyro that hierlm uses (a no-op once done)."""
    with import_lock:
        import numpyro.distributions
        import numpyro.infer.hmc
        import numpyro.infer.util  # noqa: F401
