"""Compiled programs saved next to the compilation cache and loaded without tracing."""

from __future__ import annotations

import json
import pickle
import threading
import uuid

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hierlm import compiled


def _fn(x, pair):
    a, b = pair
    return {"sum": jnp.sum(x * a) + b, "scaled": x * b}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HIERLM_CACHE_DIR", str(tmp_path))
    _new_process(monkeypatch)
    return tmp_path


def _new_process(monkeypatch):
    """Forget the programs this process built, loaded and started loading."""
    monkeypatch.setattr(compiled, "_built", {})
    monkeypatch.setattr(compiled, "_used", [])
    monkeypatch.setattr(compiled, "_prefetched", {})


def _args():
    return (np.arange(3.0), (np.ones(3), np.asarray(2.0)))


def test_saved_program_is_reused_and_agrees(cache, monkeypatch):
    args = _args()
    first = compiled.program("toy", _fn, args, key="v1")
    files = list((cache / "programs").glob("toy-*.pkl"))
    assert len(files) == 1
    monkeypatch.setattr(compiled, "_built", {})

    def never(*a):
        raise AssertionError("traced again")

    second = compiled.program("toy", never, args, key="v1")
    want = jax.jit(_fn)(*args)
    for prog in (first, second):
        got = prog(*args)
        assert set(got) == {"sum", "scaled"}
        np.testing.assert_array_equal(got["sum"], want["sum"])
        np.testing.assert_array_equal(got["scaled"], want["scaled"])


def test_key_and_shapes_select_the_file(cache):
    compiled.program("toy", _fn, _args(), key="v1")
    compiled.program("toy", _fn, _args(), key="v2")
    compiled.program("toy", _fn, (np.arange(4.0), (np.ones(4), np.asarray(2.0))), key="v1")
    assert len(list((cache / "programs").glob("toy-*.pkl"))) == 3


def test_abstract_example_and_wrong_structure(cache):
    spec = (
        jax.ShapeDtypeStruct((3,), jnp.float64),
        (jax.ShapeDtypeStruct((3,), jnp.float64), jax.ShapeDtypeStruct((), jnp.float64)),
    )
    prog = compiled.program("toy", _fn, spec, key="v1")
    np.testing.assert_array_equal(prog(*_args())["scaled"], np.arange(3.0) * 2)
    with pytest.raises(TypeError, match="structure"):
        prog(np.arange(3.0), np.ones(3))


def test_corrupt_file_is_rebuilt(cache, monkeypatch):
    compiled.program("toy", _fn, _args(), key="v1")
    (path,) = (cache / "programs").glob("toy-*.pkl")
    path.write_bytes(b"not a program")
    monkeypatch.setattr(compiled, "_built", {})
    prog = compiled.program("toy", _fn, _args(), key="v1")
    np.testing.assert_array_equal(prog(*_args())["sum"], 5.0)
    assert path.read_bytes() != b"not a program"


def test_cache_off_still_compiles(monkeypatch):
    monkeypatch.setenv("HIERLM_CACHE_DIR", "off")
    monkeypatch.setattr(compiled, "_built", {})
    prog = compiled.program("toy", _fn, _args(), key="v1", quick=True)
    np.testing.assert_array_equal(prog(*_args())["sum"], 5.0)


def test_files_of_other_versions_are_pruned(cache, monkeypatch):
    compiled.program("toy", _fn, _args(), key="v1")
    compiled.program("other", _fn, _args(), key="v1")
    (old,) = (cache / "programs").glob("toy-*.pkl")
    monkeypatch.setattr(compiled, "_fingerprint", lambda: "f" * 64)
    monkeypatch.setattr(compiled, "_built", {})
    compiled.program("toy", _fn, _args(), key="v1")
    names = sorted(p.name for p in (cache / "programs").glob("*.pkl"))
    assert not old.exists()
    assert [n.split("-")[0] for n in names] == ["other", "toy"]
    assert any(n.startswith("toy-ffffffffffff-") for n in names)


def test_sampler_with_only_its_init_program_saved(cache, monkeypatch):
    """NUTS's sample kernel reads settings its init kernel sets: a chunk program traced in a
    process that loaded the init program from the cache must still be right."""
    import pandas as pd

    import hierlm as hl

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(6), 5)
    data = pd.DataFrame({"g": g.astype(str), "y": rng.normal(g * 0.3, 1.0)})
    model = hl.Model("y ~ 1 + (1 | g)", data)
    first = model.fit(chains=2, draws=50, tune=50, seed=4)
    (chunk_file,) = (cache / "programs").glob("nuts_chunk-*.pkl")
    chunk_file.unlink()
    monkeypatch.setattr(compiled, "_built", {})
    again = hl.Model("y ~ 1 + (1 | g)", data).fit(chains=2, draws=50, tune=50, seed=4)
    assert chunk_file.exists()
    np.testing.assert_array_equal(
        again.idata.posterior["sigma"].values, first.idata.posterior["sigma"].values
    )


class _NoNumPyro(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        assert not module.startswith("numpyro"), f"{module}.{name}"
        return super().find_class(module, name)


def test_sampler_programs_load_without_numpyro(cache):
    """A warm process loads the sampler's programs without importing NumPyro: their saved
    output structures name none of its types (its import cost 0.2 s before sampling)."""
    import pandas as pd

    import hierlm as hl

    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(6), 5)
    data = pd.DataFrame({"g": g.astype(str), "y": rng.normal(g * 0.3, 1.0)})
    hl.Model("y ~ 1 + (1 | g)", data).fit(chains=2, draws=20, tune=20, seed=1)
    files = sorted((cache / "programs").glob("nuts_*.pkl"))
    assert [f.name.split("-")[0] for f in files] == ["nuts_chunk", "nuts_init"]
    for f in files:
        with f.open("rb") as fh:
            _NoNumPyro(fh).load()


def _group_data(seed: int):
    import pandas as pd

    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(6), 5)
    return pd.DataFrame({"g": g.astype(str), "y": rng.normal(g * 0.3, 1.0)})


def _fit_loading(monkeypatch, data):
    """Fit in a fresh 'process'; return the fit and which thread loaded each program.
    Reading the data waits for the loads started ahead, as reading a large table would."""
    import hierlm as hl

    _new_process(monkeypatch)
    ingest = hl.Model._ingest

    def slow_ingest(self, *args):
        for thread in compiled._prefetching:
            thread.join()
        return ingest(self, *args)

    monkeypatch.setattr(hl.Model, "_ingest", slow_ingest)
    loaded: dict[str, list[str]] = {}
    load = compiled._load

    def spy(path):
        loaded.setdefault(path.name.split("-")[0], []).append(threading.current_thread().name)
        return load(path)

    monkeypatch.setattr(compiled, "_load", spy)
    fit = hl.Model("y ~ 1 + (1 | g)", data).fit(chains=2, draws=30, tune=30, seed=2)
    return fit, loaded


def test_next_model_loads_its_programs_ahead(cache, monkeypatch):
    """A second model of the same formula loads the programs the first fit used while its
    data are read, and the fit takes them: the same draws as loading them on demand."""
    import hierlm as hl

    _fit_loading(monkeypatch, _group_data(1))
    # A second fit in the same process finds its programs built, and still lists them.
    hl.Model("y ~ 1 + (1 | g)", _group_data(2)).fit(chains=2, draws=30, tune=30, seed=2)
    (index,) = (cache / "programs").glob("recent-*.json")
    names = [e["file"].split("-")[0] for e in json.loads(index.read_text())]
    # In the order the next fit waits for them: the density (the mode search), the
    # sampler's, then any not run before sampling started (the downward pass's).
    assert names[:3] == ["logp", "nuts_init", "nuts_chunk"]
    assert names[3:] in ([], ["draws"])

    ahead, loaded = _fit_loading(monkeypatch, _group_data(7))
    assert all(loaded[n] == ["hierlm-prefetch"] for n in names)
    assert compiled._prefetched == {}  # every load started was taken

    index.unlink()
    on_demand, loaded = _fit_loading(monkeypatch, _group_data(7))
    assert all("hierlm-prefetch" not in threads for threads in loaded.values())
    for var in ("sigma", "sd_g", "beta_g"):
        np.testing.assert_array_equal(
            ahead.idata.posterior[var].values, on_demand.idata.posterior[var].values
        )


def test_a_wrong_or_stale_index_changes_nothing(cache, monkeypatch):
    """Loads started from an index that no longer matches (other shapes, a deleted file)
    are not taken: the fit loads its programs itself and draws the same."""
    first, _ = _fit_loading(monkeypatch, _group_data(1))
    (index,) = (cache / "programs").glob("recent-*.json")
    entries = json.loads(index.read_text())
    by_name = {e["file"].split("-")[0]: e for e in entries}
    by_name["logp"]["args"][0][0] = [by_name["logp"]["args"][0][0][0] + 1]  # another shape
    (cache / "programs" / by_name["nuts_init"]["file"]).unlink()
    for arg in by_name["nuts_chunk"]["args"]:  # compiled for other devices
        arg[2][0] = [i + len(arg[2][0]) for i in arg[2][0]]
    index.write_text(json.dumps(entries))

    again, loaded = _fit_loading(monkeypatch, _group_data(1))
    assert loaded["logp"] == ["hierlm-prefetch", "MainThread"]
    assert loaded["nuts_chunk"][0] == "hierlm-prefetch"
    assert loaded["nuts_chunk"][1].startswith("hierlm-compile")
    assert compiled._prefetched == {}
    np.testing.assert_array_equal(
        again.idata.posterior["sigma"].values, first.idata.posterior["sigma"].values
    )


def _unique_fn():
    """A toy function whose program no earlier run has compiled (a fresh compile)."""
    scale = 1.0 + uuid.uuid4().int % 10**6 / 10**7

    def fn(x, pair):
        return _fn(x * scale, pair)

    return fn, scale


def test_fresh_executable_is_saved_and_loaded_without_lowering(cache, monkeypatch):
    fn, _ = _unique_fn()
    args = _args()
    want = compiled.program("toy", fn, args, key="x")(*args)
    (file,) = (cache / "programs").glob("toy-*.pkl")
    saved = pickle.loads(file.read_bytes())
    assert "executable" in saved

    def no_lowering(*a):
        raise AssertionError("lowered the exported program")

    with monkeypatch.context() as patch:
        _new_process(patch)
        patch.setattr(compiled.export, "deserialize", no_lowering)
        got = compiled.program("toy", fn, args, key="x")(*args)
    np.testing.assert_array_equal(got["sum"], want["sum"])
    np.testing.assert_array_equal(got["scaled"], want["scaled"])

    # An executable that cannot be loaded (another jaxlib, a damaged file) is lowered again.
    _new_process(monkeypatch)
    file.write_bytes(pickle.dumps({**saved, "executable": (b"damaged", None, None)}))
    got = compiled.program("toy", fn, args, key="x")(*args)
    np.testing.assert_array_equal(got["sum"], want["sum"])


def test_executable_from_jax_cache_is_not_saved(cache, monkeypatch):
    """JAX's cache hands back executables that serialise into broken ones: only one that
    XLA compiled in this process is saved."""
    if not jax.config.jax_compilation_cache_dir:
        pytest.skip("JAX's persistent cache is off")
    fn, _ = _unique_fn()
    args = _args()
    before = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    try:
        want = compiled.program("toy", fn, args, key="x")(*args)  # compiled, and cached by JAX
        (file,) = (cache / "programs").glob("toy-*.pkl")
        saved = pickle.loads(file.read_bytes())
        assert "executable" in saved
        del saved["executable"], saved["devices"]
        file.write_bytes(pickle.dumps(saved))
        _new_process(monkeypatch)
        got = compiled.program("toy", fn, args, key="x")(*args)  # from JAX's cache
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before)
    assert "executable" not in pickle.loads(file.read_bytes())
    np.testing.assert_array_equal(got["sum"], want["sum"])
