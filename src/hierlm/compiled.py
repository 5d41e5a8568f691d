"""Compiled programs that skip Python tracing on a warm start.

JAX's persistent cache stores compiled executables, but finding one still needs the
program traced and lowered, which for NUTS over the collapsed density costs seconds of
Python per process. A :class:`Program` saves the lowered program with :mod:`jax.export` next
to that cache, keyed by its name, static settings, argument shapes and the versions of
hierlm's sources and of JAX. The next process loads it in milliseconds, and its compilation
is then a cache hit.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import tempfile
from collections.abc import Callable, Hashable
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
from jax import export

from . import _jax
from ._numpyro import import_lock

__all__ = ["Program", "program"]


class Program:
    """A compiled function of fixed argument structure, shapes and dtypes.

    Call it with arguments shaped like the example it was built from; it returns the same
    pytree the function does.
    """

    def __init__(self, compiled: jax.stages.Compiled, in_tree: Any, out_tree: Any):
        self._call = compiled
        self._in_tree = in_tree
        self._out_tree = out_tree

    @property
    def out_shapes(self) -> Any:
        """The output pytree as :class:`jax.ShapeDtypeStruct` (shardings included)."""
        return jax.tree.unflatten(self._out_tree, self._call.out_info)

    def __call__(self, *args: Any) -> Any:
        leaves, tree = jax.tree.flatten(args)
        if tree != self._in_tree:
            raise TypeError(f"argument structure {tree} differs from {self._in_tree}")
        return jax.tree.unflatten(self._out_tree, self._call(*leaves))


@functools.cache
def _fingerprint() -> str:
    h = hashlib.sha256()
    for dist in ("jax", "jaxlib", "numpyro"):
        h.update(f"{dist}={metadata.version(dist)};".encode())
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


def program(
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    key: Hashable,
    quick: bool = False,
) -> Program:
    """Build (or load) the compiled program of ``fn`` for arguments shaped like ``args``.

    Parameters
    ----------
    name
        Short name, part of the file name.
    fn
        A pure JAX function of ``*args``.
    args
        Example arguments, arrays or :class:`jax.ShapeDtypeStruct` (only their structure,
        shapes and dtypes are used). The program is compiled before this returns, so it
        can be built on a background thread while other work runs.
    key
        Everything static that ``fn`` closes over (layouts, settings); its ``repr`` must
        identify it.
    quick
        Prefer a quicker compilation to quicker code: for small trees, where compiling
        costs more than running. On CPU this turns off XLA's newer fusion emitters, which
        measured 35-40% less compile time and equal or better speed below about a thousand
        nodes, but a third slower on a 2,000-leaf tree.
    """
    leaves, in_tree = jax.tree.flatten(args)
    options: dict[str, Any] = {}
    if jax.default_backend() == "cpu":
        options = {**_CPU, **(_QUICK if quick else {})}
    avals = [_aval(x) for x in leaves]
    signature = tuple((tuple(a.shape), str(a.dtype)) for a in avals)
    memo_key = (name, key, in_tree, signature, tuple(options.items()))
    if memo_key not in _built:
        _built[memo_key] = _build(name, fn, avals, in_tree, signature, key, options)
    return _built[memo_key]


_built: dict[Hashable, Program] = {}
_QUICK = {"xla_cpu_use_fusion_emitters": False}
# XLA's CPU backend hands elementwise and reduction fusions to YNNPACK by default; over the
# (node,)-shaped arrays of the message passing these ran slower than its own loops (100,000
# leaves: value and gradient 40 ms, 14 ms with YNNPACK kept to matrix products).
_CPU = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}


def _build(
    name: str,
    fn: Callable[..., Any],
    avals: list[jax.ShapeDtypeStruct],
    in_tree: Any,
    signature: tuple[Any, ...],
    key: Hashable,
    options: dict[str, Any],
) -> Program:
    out_tree: list[Any] = []

    def flat(*xs: Any) -> list[Any]:
        out = fn(*jax.tree.unflatten(in_tree, xs))
        out_leaves, tree = jax.tree.flatten(out)
        out_tree.append(tree)
        return out_leaves

    root = _jax.cache_dir()
    if root is None:
        compiled = jax.jit(flat).lower(*avals).compile(compiler_options=options)
        return Program(compiled, in_tree, out_tree[0])
    fingerprint = _fingerprint()
    version = fingerprint[:12]
    digest = hashlib.sha256(
        repr((name, key, str(in_tree), signature, fingerprint)).encode()
    ).hexdigest()[:40]
    path = root / "programs" / f"{name}-{version}-{digest}.pkl"
    try:
        # The output tree may name NumPyro classes (the sampler's state), which unpickling
        # imports: under the lock, or it races a trace on another thread importing NumPyro
        # and one of them sees its modules half-initialised (ImportError, seen on a cold
        # density program with the sampler's programs cached).
        with path.open("rb") as f, import_lock:
            saved = pickle.load(f)
        exported = export.deserialize(saved["exported"])
        tree = saved["out_tree"]
    except Exception:  # missing, partial or from another version: rebuild it
        exported = export.export(jax.jit(flat))(*avals)
        tree = out_tree[0]
        _write_atomic(path, pickle.dumps({"exported": exported.serialize(), "out_tree": tree}))
        _prune(path.parent, name, version)
    compiled = jax.jit(exported.call).lower(*avals).compile(compiler_options=options)
    return Program(compiled, in_tree, tree)


def _aval(x: Any) -> jax.ShapeDtypeStruct:
    if isinstance(x, jax.ShapeDtypeStruct):
        return x
    return jax.ShapeDtypeStruct(jax.numpy.shape(x), jax.numpy.result_type(x))


def _prune(folder: Path, name: str, version: str) -> None:
    """Delete this program's files saved by other versions of hierlm or JAX: they can never
    be loaded again, and would pile up with every upgrade."""
    for old in folder.glob(f"{name}-*.pkl"):
        if old.name.split("-")[-2] != version:
            old.unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs speed on the next run
