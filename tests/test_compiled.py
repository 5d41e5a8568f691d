"""Compiled programs saved next to the compilation cache and loaded without tracing."""

from __future__ import annotations

import pickle

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
    monkeypatch.setattr(compiled, "_built", {})
    return tmp_path


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
