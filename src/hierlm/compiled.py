"""Compiled programs that skip Python tracing on a warm start.

JAX's persistent cache stores compiled executables, but finding one still needs the
program traced and lowered, which for NUTS over the collapsed density costs seconds of
Python per process. A :class:`Program` saves the lowered program with :mod:`jax.export` next
to that cache, keyed by its name, static settings, argument shapes and the versions of
hierlm's sources and of JAX. The next process loads it in milliseconds, and its compilation
is then a cache hit. Where XLA compiled the program afresh, the file also holds the
executable, which the next process loads without lowering anything (:func:`_executable`).

A fit also remembers which programs it used (:func:`remember`), so that the next model of
the same formula starts loading them on a background thread while it reads its data
(:func:`prefetch`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import itertools
import json
import os
import pickle
import tempfile
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax import export
from jax.experimental import serialize_executable
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import _jax
from ._numpyro import import_lock

__all__ = ["Program", "mark", "prefetch", "program", "remember"]


class Program:
    """A compiled function of fixed argument structure, shapes and dtypes.

    Call it with arguments shaped like the example it was built from; it returns the same
    pytree the function does.
    """

    def __init__(
        self,
        compiled: jax.stages.Compiled,
        in_tree: Any,
        out_tree: Any,
        saved_as: dict[str, Any] | None = None,
    ):
        self._call = compiled
        self._in_tree = in_tree
        self._out_tree = out_tree
        # Its file and arguments, as :func:`remember` lists them; None when not saved.
        self.saved_as = saved_as
        # When it first ran, in this process's order of first runs (None: not yet).
        self.first_run: int | None = None

    @property
    def out_shapes(self) -> Any:
        """The output pytree as :class:`jax.ShapeDtypeStruct` (shardings included)."""
        return jax.tree.unflatten(self._out_tree, self._call.out_info)

    def __call__(self, *args: Any) -> Any:
        if self.first_run is None:
            self.first_run = next(_first_runs)
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
    built = _built[memo_key]
    if built.saved_as is not None:
        _used.append(built)
    return built


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
    described = _describe(avals)
    saved_as = (
        None if described is None else {"file": path.name, "args": described, "options": options}
    )
    ahead, ahead_args = _prefetched.pop((path.name, _options_key(options)), (None, None))
    if ahead is not None and not ahead.cancel() and ahead_args == described:
        with contextlib.suppress(Exception):  # a failed prefetch is redone below
            compiled, tree = ahead.result()
            return Program(compiled, in_tree, tree, saved_as)
    try:
        saved = _load(path)
    except Exception:  # missing, partial or from another version: rebuild it
        exported = export.export(jax.jit(flat))(*avals)
        saved = {"exported": exported.serialize(), "out_tree": out_tree[0]}
        _write_atomic(path, pickle.dumps(saved))
        _prune(path.parent, name, version)
    compiled, fresh = _executable(saved, avals, options)
    runtime = compiled.runtime_executable() if fresh else None
    if runtime is not None:
        with contextlib.suppress(Exception):  # not serialisable: the next process lowers it
            executable = serialize_executable.serialize(compiled)
            devices = [d.id for d in runtime.local_devices()]
            _write_atomic(
                path, pickle.dumps({**saved, "executable": executable, "devices": devices})
            )
    return Program(compiled, in_tree, saved["out_tree"], saved_as)


def _load(path: Path) -> dict[str, Any]:
    # The output tree may name NumPyro classes (a sampler's state), which unpickling
    # imports: under the lock, or it races a trace on another thread importing NumPyro
    # and one of them sees its modules half-initialised (ImportError, seen on a cold
    # density program with the sampler's programs cached).
    with path.open("rb") as f, import_lock:
        saved: dict[str, Any] = pickle.load(f)
    return saved


def _executable(
    saved: dict[str, Any], avals: list[jax.ShapeDtypeStruct], options: dict[str, Any]
) -> tuple[jax.stages.Compiled, bool]:
    """The compiled program of a saved file, and whether XLA compiled it afresh.

    Notes
    -----
    A file whose program XLA once compiled afresh also holds that executable, and loading
    it skips the lowering of the exported program and JAX's cache: 0.04-0.15 s each of
    Python, which a warm fit spends while it reads its data on another thread. Only a fresh
    executable is saved: one that JAX loaded from its cache serialises into one that fails
    when run (``NOT_FOUND: Function ... not found``, JAX 0.10 on CPU).
    """
    if "executable" in saved:
        with contextlib.suppress(Exception):  # from another jaxlib or machine: lower it
            payload, args_tree, out_tree = saved["executable"]
            loaded = serialize_executable.deserialize_and_load(
                payload, args_tree, out_tree, execution_devices=_devices(saved["devices"])
            )
            return loaded, False
    exported = export.deserialize(saved["exported"])
    hits = _cache_hits()
    compiled = jax.jit(exported.call).lower(*avals).compile(compiler_options=options)
    return compiled, _cache_hits() == hits


_hits = threading.local()


def _cache_hits() -> int:
    """How many programs this thread has loaded from JAX's persistent cache."""
    return getattr(_hits, "count", 0)


def _count_hit(event: str, **kwargs: Any) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _hits.count = _cache_hits() + 1


jax.monitoring.register_event_listener(_count_hit)


def _aval(x: Any) -> jax.ShapeDtypeStruct:
    if isinstance(x, jax.ShapeDtypeStruct):
        return x
    return jax.ShapeDtypeStruct(jax.numpy.shape(x), jax.numpy.result_type(x))


def _prune(folder: Path, name: str, version: str, suffix: str = "pkl") -> None:
    """Delete this program's files saved by other versions of hierlm or JAX: they can never
    be loaded again, and would pile up with every upgrade."""
    for old in folder.glob(f"{name}-*.{suffix}"):
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


# Programs asked for in this process, in order, as :func:`remember` saves them.
_used: list[Program] = []
_first_runs = itertools.count()
# Loads started by :func:`prefetch`, by file name and compiler options, with the arguments
# (as :func:`_describe` gives them) they were compiled for.
_prefetched: dict[tuple[str, tuple[Any, ...]], tuple[Future[tuple[Any, Any]], list[Any]]] = {}
_prefetching: list[threading.Thread] = []


def mark() -> int:
    """A position in this process's list of programs used, for :func:`remember`."""
    return len(_used)


def remember(tag: str, since: int) -> None:
    """Save which programs were used since ``since`` (see :func:`mark`) under ``tag``, for
    :func:`prefetch` in the next process."""
    root = _jax.cache_dir()
    if root is None:
        return
    # In the order they first ran, then those not run yet (the downward pass's, which runs
    # after sampling): the order in which the next fit waits for them. Measured on warm
    # model B: 0.32 s from the model to sampling, against 0.41 s in the order asked for.
    used = sorted(_used[since:], key=lambda p: (p.first_run is None, p.first_run or 0))
    entries = list({p.saved_as["file"]: p.saved_as for p in used if p.saved_as}.values())
    if not entries:
        return
    path = _index_path(root, tag)
    _write_atomic(path, json.dumps(entries).encode())
    _prune(path.parent, "recent", _fingerprint()[:12], "json")


def prefetch(tag: str) -> None:
    """Start loading, on a background thread, the programs last remembered under ``tag``.

    A model fitted again (new data of the same shapes, a new process) needs the same
    programs. Loaded once the model was built, they kept a warm fit of model B (1e6 rows)
    from sampling for 0.55 s; started as the model is built, the loading overlaps reading
    the data and importing formulaic, and the fit then waits only for its mode search
    (0.1-0.15 s). :func:`program` takes a load that has started and does itself one that
    has not; a load never asked for (the data's shapes changed) is only wasted work.
    """
    root = _jax.cache_dir()
    if root is None:
        return
    try:
        entries = json.loads(_index_path(root, tag).read_text())
        jobs = [(e["file"], e["args"], dict(e["options"])) for e in entries]
        avals = [[_aval_from(a) for a in args] for _, args, _ in jobs]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return  # nothing remembered, or from another version: nothing to start
    started = []
    done = {p.saved_as["file"] for p in _used if p.saved_as}
    for (file, args, options), args_avals in zip(jobs, avals, strict=True):
        key = (file, _options_key(options))
        if key not in _prefetched and file not in done:
            future: Future[tuple[Any, Any]] = Future()
            _prefetched[key] = (future, args)
            started.append((future, root / "programs" / file, args_avals, options))
    if started:
        # One thread: two measured no sooner to sampling, as they slowed reading the data
        # as much as they sped the loading.
        thread = threading.Thread(target=_run, args=(started,), name="hierlm-prefetch", daemon=True)
        _prefetching.append(thread)
        thread.start()


def _run(jobs: list[tuple[Future[Any], Path, list[Any], dict[str, Any]]]) -> None:
    for future, path, avals, options in jobs:
        if not future.set_running_or_notify_cancel():
            continue
        try:
            saved = _load(path)
            compiled, _ = _executable(saved, avals, options)
        except BaseException as e:  # handed to the fit, which then loads it itself
            future.set_exception(e)
        else:
            future.set_result((compiled, saved["out_tree"]))


@atexit.register
def _stop_prefetching() -> None:
    """Cancel loads not started and wait for the one running: a daemon thread still in
    XLA as the interpreter shuts down could crash it."""
    for future, _ in list(_prefetched.values()):
        future.cancel()
    for thread in _prefetching:
        thread.join()


def _index_path(root: Path, tag: str) -> Path:
    fingerprint = _fingerprint()
    digest = hashlib.sha256(f"{tag}|{fingerprint}".encode()).hexdigest()[:40]
    return root / "programs" / f"recent-{fingerprint[:12]}-{digest}.json"


def _options_key(options: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted(options.items()))


def _describe(avals: list[jax.ShapeDtypeStruct]) -> list[Any] | None:
    """Arguments' shapes, dtypes and shardings as JSON values; None when a sharding is of
    a kind :func:`_aval_from` cannot rebuild."""
    out = []
    for a in avals:
        s = a.sharding
        if s is None:
            sharding = None
        elif isinstance(s, NamedSharding) and type(s.mesh) is Mesh:
            spec = [list(p) if isinstance(p, tuple) else p for p in s.spec]
            ids = [d.id for d in s.mesh.devices.flat]
            sharding = [ids, list(s.mesh.devices.shape), list(s.mesh.axis_names), spec]
        else:
            return None
        out.append([list(a.shape), str(a.dtype), sharding])
    return out


def _aval_from(described: list[Any]) -> jax.ShapeDtypeStruct:
    shape, dtype, sharding = described
    if sharding is not None:
        ids, mesh_shape, axes, spec = sharding
        devices = np.array(_devices(ids)).reshape(mesh_shape)
        parts = [tuple(p) if isinstance(p, list) else p for p in spec]
        sharding = NamedSharding(Mesh(devices, tuple(axes)), PartitionSpec(*parts))
    return jax.ShapeDtypeStruct(tuple(shape), np.dtype(dtype), sharding=sharding)


def _devices(ids: list[int]) -> list[Any]:
    """This process's devices with these ids (KeyError for one it lacks)."""
    by_id = {d.id: d for d in jax.devices()}
    return [by_id[i] for i in ids]
