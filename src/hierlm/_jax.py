"""JAX settings hierlm needs: float64, CPU devices for parallel chains, and a persistent
compilation cache on disk.

On CPU, JAX presents one device unless told otherwise; hierlm asks for one per core (at
least 4, the default number of chains), so that chains run in parallel. This only works
before JAX starts its backend: when the caller has already run JAX code, its devices stay
as they are and the chains share them.

The cache lives in ``$HIERLM_CACHE_DIR`` or ``$XDG_CACHE_HOME/hierlm/jax`` (default
``~/.cache/hierlm/jax``); set ``HIERLM_CACHE_DIR=off`` to disable it.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["cache_dir", "configure"]

_done = False


def cache_dir() -> Path | None:
    """Where compiled programs are cached, or None when disabled."""
    env = os.environ.get("HIERLM_CACHE_DIR")
    if env is not None:
        return None if env.lower() in ("", "0", "off", "none") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hierlm" / "jax"


def configure() -> None:
    """Enable float64 and the compilation cache (idempotent)."""
    global _done
    if _done:
        return
    jax.config.update("jax_enable_x64", True)
    try:
        jax.config.update("jax_num_cpu_devices", max(4, min(os.cpu_count() or 1, 32)))
    except RuntimeError:
        pass  # the backend already runs: keep its devices
    path = cache_dir()
    if path is not None:
        try:
            path.mkdir(parents=True, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", str(path))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        except OSError:
            pass  # a read-only home only costs speed
    _done = True
