"""Predictions for new rows: known groups, new groups under a known parent, new top-level
groups; calibration on simulated and real data; bad input; the CLI; save and load.

Exact checks compare the predictive draws with the posterior draws they are built from
(``beta_<level>``, ``sd_<level>``, ``corr_<level>``): with ``new_groups="population"`` a
row's draws are its deepest known group's linear predictor exactly, and with ``"sample"``
the difference to that is a new group's deviation, N(0, uᵀ D R D u) per posterior draw.
Monte Carlo tolerances are 4 standard errors.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import hierlm as hl
from hierlm.cli import app

runner = CliRunner()

RADON_FORMULA = "log_radon ~ floor + (1 + floor | county)"
RADON_COLUMNS = ["mean", "sd", "hdi_5%", "hdi_95%", "known_level"]


# --------------------------------------------------------------------------- helpers


def flat(fit: hl.Fit, name: str) -> np.ndarray:
    """Posterior draws of ``name`` with chain and draw merged (chain-major)."""
    values = fit.idata["posterior"][name].values
    return values.reshape(-1, *values.shape[2:])


def design_rows(coef_names, frame: pd.DataFrame) -> np.ndarray:
    """X for ``frame`` built by hand from the coefficient names (``Intercept``, numeric
    columns and ``col[T.level]`` treatment contrasts)."""
    cols = []
    for name in coef_names:
        if name == "Intercept":
            cols.append(np.ones(len(frame)))
        elif "[T." in name:
            col, level = name[:-1].split("[T.")
            cols.append((frame[col].astype(str) == level).to_numpy(np.float64))
        else:
            cols.append(frame[name].to_numpy(np.float64))
    return np.column_stack(cols)


def level_variance(fit: hl.Fit, level: str, frame: pd.DataFrame) -> np.ndarray:
    """(S, n): per posterior draw, the variance uᵀ D R D u that a new group of ``level``
    adds to each row's linear predictor (u: the row's varying predictors)."""
    post = fit.idata["posterior"]
    coefs = [str(c) for c in post[f"sd_{level}"].coords[f"coef_{level}"].values]
    u = design_rows(coefs, frame)  # (n, q)
    sd = flat(fit, f"sd_{level}")  # (S, q)
    if f"corr_{level}" in post:
        corr = flat(fit, f"corr_{level}")
    else:
        corr = np.broadcast_to(np.eye(len(coefs)), (len(sd), len(coefs), len(coefs)))
    cov = sd[:, :, None] * corr * sd[:, None, :]
    return np.einsum("nq,sqr,nr->sn", u, cov, u)


def group_eta(fit: hl.Fit, level: str, labels, frame: pd.DataFrame) -> np.ndarray:
    """(S, n): the linear predictor of each row with the coefficients of its group
    ``labels[i]`` of ``level`` (``beta_<level>`` holds the full coefficient vectors)."""
    da = fit.idata["posterior"][f"beta_{level}"]
    names = [str(c) for c in da.coords[level].values]
    coef = flat(fit, f"beta_{level}")[:, [names.index(lab) for lab in labels]]  # (S, n, p)
    return np.einsum("snp,np->sn", coef, design_rows(fit.design.coef_names, frame))


def population_eta(fit: hl.Fit, frame: pd.DataFrame) -> np.ndarray:
    return flat(fit, "beta") @ design_rows(fit.design.coef_names, frame).T


def covered(y, table: pd.DataFrame) -> np.ndarray:
    y = np.asarray(y)
    return (y >= table["hdi_5%"].to_numpy()) & (y <= table["hdi_95%"].to_numpy())


# --------------------------------------------------------------------------- fixtures

FAR_A = 10.0  # intercept of group a0; the other top-level intercepts are N(0, 1)


def simulate_far(seed: int = 11, n_a: int = 8, n_b: int = 4, rows: int = 6) -> pd.DataFrame:
    """``y ~ x + k + (1 + x | a/b)``: top-level intercepts N(0, 1) except a0 at +10, b
    labels repeated under every a, a categorical ``k`` with levels p, q, r."""
    rng = np.random.default_rng(seed)
    u_a = np.column_stack([rng.normal(0, 1, n_a), rng.normal(0, 0.2, n_a)])
    u_a[0, 0] = FAR_A
    u_b = np.column_stack([rng.normal(0, 0.5, n_a * n_b), rng.normal(0, 0.2, n_a * n_b)])
    ia = np.repeat(np.arange(n_a), n_b * rows)
    ib = np.repeat(np.arange(n_a * n_b), rows)
    x = rng.normal(0, 1, len(ia))
    k = rng.choice(["p", "q", "r"], len(ia))
    k_effect = pd.Series(k).map({"p": 0.0, "q": 0.4, "r": -0.3}).to_numpy()
    u = u_a[ia] + u_b[ib]
    y = 1.0 + u[:, 0] + (0.5 + u[:, 1]) * x + k_effect + rng.normal(0, 0.5, len(ia))
    return pd.DataFrame(
        {"y": y, "x": x, "k": k, "a": [f"a{i}" for i in ia], "b": [f"b{j % n_b}" for j in ib]}
    )


@pytest.fixture(scope="module")
def far_fit() -> hl.Fit:
    return hl.Model("y ~ x + k + (1 + x | a/b)", simulate_far()).fit(
        chains=2, draws=300, tune=300, seed=3
    )


@pytest.fixture(scope="module")
def radon_fit(radon_mn) -> hl.Fit:
    return hl.Model(RADON_FORMULA, radon_mn).fit(chains=2, draws=300, tune=300, seed=1)


@pytest.fixture(scope="module")
def radon_new() -> pd.DataFrame:
    """Two known counties and two new ones, with a non-default index and extra columns."""
    return pd.DataFrame(
        {
            "state": "MN",
            "county": ["AITKIN", "HENNEPIN", "NOWHERE", "ELSEWHERE", "NOWHERE"],
            "floor": [0, 1, 0, 1, 1],
            "note": list("abcde"),
        },
        index=[10, 11, 12, 13, 14],
    )


def rows(n: int, seed: int, **columns) -> pd.DataFrame:
    """``n`` rows with x ~ N(0, 1), k cycling through p, q, r, and the given columns."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(0, 1, n), "k": np.resize(["p", "q", "r"], n)})
    return frame.assign(**columns)


# --------------------------------------------------------------------------- new groups


def test_new_child_of_a_far_parent_starts_from_the_parent(far_fit):
    new = rows(40, 1, a="a0", b=[f"new{i}" for i in range(40)])
    sample = far_fit.predict_draws(new, kind="mean", new_groups="sample", seed=4)
    parent_only = far_fit.predict_draws(new, kind="mean", new_groups="population")
    s = sample.draws.shape[0]
    assert sample.draws.shape == (600, 40)
    assert list(sample.known_level) == ["known_level"]
    assert (sample.known_level["known_level"] == "a").all()
    assert sample.new_groups == {"b": 40}

    # Without sampling the new b, each draw is exactly a0's linear predictor.
    parent = group_eta(far_fit, "a", ["a0"] * len(new), new)
    np.testing.assert_allclose(parent_only.draws, parent, rtol=0, atol=1e-9)
    # With sampling, centred on a0 (within Monte Carlo error), far from the population.
    mc = 4 * sample.draws.std(axis=0) / np.sqrt(s)
    assert np.all(np.abs(sample.draws.mean(axis=0) - parent.mean(axis=0)) < mc)
    assert np.all(sample.draws.mean(axis=0) - population_eta(far_fit, new).mean(axis=0) > 5)
    # The deviation is N(0, uᵀΣ_b u) per draw: standardised squares average to 1 ...
    dev = sample.draws - parent
    ratio = np.mean(dev**2 / level_variance(far_fit, "b", new))
    assert abs(ratio - 1) < 4 * np.sqrt(2 / dev.size), ratio
    # ... and independent between new groups (a shared draw would correlate them fully).
    z = dev / np.sqrt(level_variance(far_fit, "b", new))
    r = np.corrcoef(z.T)[np.triu_indices(len(new), 1)]
    assert np.abs(r).max() < 0.25 and abs(r.mean()) < 4 / np.sqrt(s * r.size) + 0.01


def test_rows_of_one_new_group_share_its_draw(far_fit):
    new = pd.DataFrame(
        {
            "x": 0.7,
            "k": "q",
            "a": ["a1", "a1", "a1", "a2"],
            "b": ["fresh", "fresh", "other", "fresh"],
        }
    )
    pred = far_fit.predict_draws(new, new_groups="sample", seed=0)
    # Two rows of one new group with the same predictors: one deviation, the same draws.
    np.testing.assert_array_equal(pred.draws[:, 0], pred.draws[:, 1])
    # "other" under a1 and "fresh" under a2 are two more groups, each its own draw.
    assert pred.new_groups == {"b": 3}
    parent = group_eta(far_fit, "a", ["a1", "a1", "a1", "a2"], new)
    z = (pred.draws - parent) / np.sqrt(level_variance(far_fit, "b", new))
    r = np.corrcoef(z[:, [0, 2, 3]].T)[np.triu_indices(3, 1)]
    assert np.abs(r).max() < 4 / np.sqrt(len(z)), r


def test_known_groups_use_their_own_coefficients(far_fit):
    new = rows(6, 3, a=["a0", "a1", "a2", "a3", "a0", "a5"], b=["b0", "b1", "b2", "b3", "b3", "b0"])
    pred = far_fit.predict_draws(new, kind="mean", seed=0)
    labels = [f"{a}/{b}" for a, b in zip(new["a"], new["b"], strict=True)]
    np.testing.assert_allclose(pred.draws, group_eta(far_fit, "b", labels, new), atol=1e-9)
    assert (pred.known_level["known_level"] == "b").all()
    assert pred.new_groups == {}
    # No randomness for known groups on the mean scale: every seed agrees.
    again = far_fit.predict_draws(new, kind="mean", seed=99)
    np.testing.assert_array_equal(pred.draws, again.draws)
    # For a gaussian model, mean and link are the same; the response adds N(0, sigma).
    link = far_fit.predict_draws(new, kind="link", seed=0)
    np.testing.assert_array_equal(pred.draws, link.draws)
    resp = far_fit.predict_draws(new, kind="response", seed=0)
    z = (resp.draws - pred.draws) / flat(far_fit, "sigma")[:, None]
    assert abs(np.mean(z**2) - 1) < 4 * np.sqrt(2 / z.size)
    assert abs(np.mean(z)) < 4 / np.sqrt(z.size)


def test_new_top_level_group_draws_from_the_population(far_fit):
    n = 40
    new = rows(n, 5, a=[f"anew{i}" for i in range(n)], b="b0")  # b0 exists, but not here
    sample = far_fit.predict_draws(new, kind="mean", seed=6)
    assert (sample.known_level["known_level"] == "population").all()
    assert sample.new_groups == {"a": n, "b": n}
    pop = population_eta(far_fit, new)
    np.testing.assert_allclose(
        far_fit.predict_draws(new, new_groups="population").draws, pop, atol=1e-9
    )
    mc = 4 * sample.draws.std(axis=0) / np.sqrt(len(pop))
    assert np.all(np.abs(sample.draws.mean(axis=0) - pop.mean(axis=0)) < mc)
    # A new a and its new b both vary: the deviation's variance is the sum of the levels'.
    dev = sample.draws - pop
    var = level_variance(far_fit, "a", new) + level_variance(far_fit, "b", new)
    ratio = np.mean(dev**2 / var)
    assert abs(ratio - 1) < 4 * np.sqrt(2 / dev.size), ratio


def test_intervals_widen_with_what_is_unknown(far_fit):
    base = rows(1, 7).iloc[[0, 0, 0]].reset_index(drop=True)
    new = base.assign(a=["a1", "a1", "anew"], b=["b1", "bnew", "bnew"])
    table = far_fit.predict(new, kind="mean", hdi=0.9, seed=0)
    assert list(table.columns) == RADON_COLUMNS
    assert list(table["known_level"]) == ["b", "a", "population"]
    width = (table["hdi_95%"] - table["hdi_5%"]).to_numpy()
    assert width[0] < width[1] < width[2]
    # The top-level sd is inflated by a0 (about 3.5): the new a's interval is that wide.
    assert width[2] > 2 * width[1]
    assert abs(table["mean"].iloc[2] - population_eta(far_fit, new).mean()) < 4 * table["sd"].iloc[
        2
    ] / np.sqrt(600)


def test_predict_table_matches_the_draws(far_fit):
    new = rows(5, 8, a=["a0", "a1", "zz", "a2", "a2"], b=["b0", "q", "q", "b1", "b2"])
    new.index = pd.Index([101, 7, 55, 3, 9], name="row")
    table = far_fit.predict(new, kind="response", hdi=0.8, seed=12, draws=250)
    pred = far_fit.predict_draws(new, kind="response", seed=12, draws=250)
    assert pred.draws.shape == (250, 5)
    assert list(table.columns) == ["mean", "sd", "hdi_10%", "hdi_90%", "known_level"]
    assert table.index.equals(new.index)
    np.testing.assert_allclose(table["mean"], pred.draws.mean(axis=0))
    np.testing.assert_allclose(table["sd"], pred.draws.std(axis=0, ddof=1))
    inside = (pred.draws >= table["hdi_10%"].to_numpy()) & (
        pred.draws <= table["hdi_90%"].to_numpy()
    )
    assert np.all(np.abs(inside.mean(axis=0) - 0.8) < 0.02)
    assert list(table["known_level"]) == ["b", "a", "population", "b", "b"]
    other = far_fit.predict(new, kind="response", hdi=0.8, seed=13, draws=250)
    assert not np.allclose(table["mean"], other["mean"])


def test_polars_input_gives_the_same_predictions(far_fit):
    pl = pytest.importorskip("polars")
    new = rows(4, 9, a=["a0", "a1", "zz", "a3"], b=["b0", "n", "n", "b1"])
    a = far_fit.predict(new, kind="response", seed=2)
    b = far_fit.predict(pl.from_pandas(new), kind="response", seed=2)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        (lambda d: d.drop(columns="floor"), hl.DataError, ["'floor'", "no column"]),
        (lambda d: d.drop(columns="county"), hl.DataError, ["'county'", "no column"]),
        (
            lambda d: d.assign(floor=["basement", "first"] * 2 + ["first"]),
            hl.DataError,
            ["'floor'"],
        ),
        (
            lambda d: d.assign(floor=[0.0, np.nan, 1.0, np.nan, 0.0]),
            hl.DataError,
            ["'floor'", "2 rows", "rows 11, 13"],
        ),
        (
            lambda d: d.assign(floor=[0.0, 1.0, np.inf, 0.0, 1.0]),
            hl.DataError,
            ["'floor'", "row 12"],
        ),
        (
            lambda d: d.assign(county=["AITKIN", None, "X", "Y", "Z"]),
            hl.DataError,
            ["'county'", "row 11"],
        ),
        (lambda d: d.iloc[:0], hl.DataError, ["no rows"]),
    ],
)
def test_bad_new_data_is_refused_with_the_column_named(radon_fit, radon_new, change, error, words):
    with pytest.raises(error) as info:
        radon_fit.predict(change(radon_new))
    for w in words:
        assert w in str(info.value), str(info.value)


def test_unseen_groups_refused_when_asked(radon_fit, radon_new):
    with pytest.raises(hl.DataError, match=r"level 'county' has 2 groups .*'NOWHERE'"):
        radon_fit.predict(radon_new, new_groups="error")
    known = radon_new[radon_new["county"].isin(["AITKIN", "HENNEPIN"])]
    table = radon_fit.predict(known, new_groups="error")
    assert list(table["known_level"]) == ["county", "county"]


def test_unseen_category_is_refused(far_fit):
    new = rows(3, 10, a="a1", b="b1")
    new["k"] = ["p", "s", "q"]
    with pytest.raises(hl.DataError, match=r"column 'k' has the category 's'"):
        far_fit.predict(new)
    new["k"] = ["p", None, "q"]
    with pytest.raises(hl.DataError, match=r"'k'.*row 1"):
        far_fit.predict(new)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"kind": "median"}, "kind must be"),
        ({"new_groups": "drop"}, "new_groups must be"),
        ({"hdi": 1.0}, "hdi must be"),
        ({"draws": 0}, "draws must be"),
    ],
)
def test_bad_options_are_refused(radon_fit, radon_new, kwargs, words):
    with pytest.raises(hl.HierlmError, match=words):
        radon_fit.predict(radon_new, **kwargs)


def test_all_missing_predictor_is_a_data_error(radon_fit, radon_new):
    with pytest.raises(hl.DataError, match="'floor'"):
        radon_fit.predict(radon_new.assign(floor=[None] * len(radon_new)))


def test_bool_predictor_fitted_and_predicted(radon_fit, radon_mn):
    data = radon_mn.assign(upstairs=radon_mn["floor"] == 1)
    fit = hl.Model("log_radon ~ upstairs + (1 | county)", data).fit(
        chains=1, draws=50, tune=50, seed=0
    )
    assert fit.predict(data.head(3))["known_level"].eq("county").all()


# --------------------------------------------------------------------------- save, load, CLI


@pytest.fixture(scope="module")
def radon_fit_path(radon_fit, tmp_path_factory) -> Path:
    return radon_fit.save(tmp_path_factory.mktemp("predict") / "radon.hlm")


def test_save_load_predict_identical(radon_fit, radon_fit_path, radon_new):
    loaded = hl.load(radon_fit_path)
    for kind in ("mean", "response"):
        before = radon_fit.predict(radon_new, kind=kind, seed=5, draws=200)
        after = loaded.predict(radon_new, kind=kind, seed=5, draws=200)
        pd.testing.assert_frame_equal(before, after)
    a = radon_fit.predict_draws(radon_new, kind="response", seed=5)
    b = loaded.predict_draws(radon_new, kind="response", seed=5)
    np.testing.assert_array_equal(a.draws, b.draws)
    assert a.new_groups == b.new_groups == {"county": 2}


def test_cli_predict_writes_table_and_draws(radon_fit, radon_fit_path, radon_new, tmp_path):
    data = tmp_path / "new.csv"
    radon_new.to_csv(data, index=False)
    out, raw = tmp_path / "pred.csv", tmp_path / "draws.csv"
    exe = Path(sys.executable).with_name("hierlm")
    argv = [str(exe), "predict", str(radon_fit_path), str(data), "-o", str(out)]
    argv += ["--draws", str(raw), "--n-draws", "50", "--seed", "3"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "5 predictions written" in done.stdout and "2 new county" in done.stdout
    table = pd.read_csv(out)
    assert list(table.columns) == [*radon_new.columns, *RADON_COLUMNS]
    assert list(table["known_level"]) == ["county", "county", "population"] * 1 + [
        "population",
        "population",
    ]
    expected = radon_fit.predict(radon_new, seed=3, draws=50)
    np.testing.assert_allclose(table["mean"], expected["mean"], rtol=1e-12)
    np.testing.assert_allclose(table["hdi_95%"], expected["hdi_95%"], rtol=1e-12)
    draws = pd.read_csv(raw)
    assert draws.shape == (len(radon_new), 50)
    assert list(draws.columns[:2]) == ["draw_0", "draw_1"]
    np.testing.assert_allclose(draws.mean(axis=1), table["mean"], rtol=1e-12)

    # Existing outputs are kept unless --force.
    before = out.read_bytes()
    args = ["predict", str(radon_fit_path), str(data), "-o", str(out), "--seed", "4"]
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "exists; pass --force" in again.output
    assert out.read_bytes() == before
    only_draws = runner.invoke(app, [*args, "-o", str(tmp_path / "p2.csv"), "--draws", str(raw)])
    assert only_draws.exit_code == 2 and "draws.csv exists" in only_draws.output
    assert not (tmp_path / "p2.csv").exists()
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert out.read_bytes() != before


def test_cli_predict_bad_data_leaves_no_output(radon_fit_path, radon_new, tmp_path):
    data = tmp_path / "bad.csv"
    radon_new.assign(county=["AITKIN", None, "X", "Y", "Z"]).to_csv(data, index=False)
    out, raw = tmp_path / "pred.csv", tmp_path / "draws.csv"
    exe = Path(sys.executable).with_name("hierlm")
    argv = [str(exe), "predict", str(radon_fit_path), str(data), "-o", str(out)]
    done = subprocess.run([*argv, "--draws", str(raw)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "error:" in done.stderr and "'county'" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not out.exists() and not raw.exists()
    assert not list(tmp_path.glob("*.part"))
    # Other refusals go the same way.
    good = tmp_path / "good.csv"
    radon_new.to_csv(good, index=False)
    for extra, words in [
        (["--new-groups", "error"], "not in the fit"),
        (["--kind", "median"], "kind must be"),
        (["--hdi", "2"], "--hdi must be"),
    ]:
        res = runner.invoke(
            app, ["predict", str(radon_fit_path), str(good), "-o", str(out), *extra]
        )
        assert res.exit_code == 2 and words in res.output, res.output
        assert not out.exists()


# --------------------------------------------------------------------------- calibration

N_A, N_B, N_C, ROWS = 8, 4, 4, 3
SDS = {"a": (0.7, 0.3), "b": (0.5, 0.2), "c": (0.5, 0.2)}  # (intercept, slope) per level
SIGMA, BETA = 0.5, (1.0, 0.5)


def _frame(ia, ib, ic, x, y, prefix: str = "") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "a": [f"{prefix}a{i}" for i in ia],
            "b": [f"b{j}" for j in ib],
            "c": [f"c{k}" for k in ic],
        }
    )


@pytest.mark.slow
def test_simulated_coverage_of_known_and_new_groups():
    """``y ~ x + (1 + x || a/b/c)``, 8 > 4 > 4 groups and 3 rows a leaf, over 20 simulated
    data sets (same tree and x, so the compiled programs are reused). Held out per data set:
    2 new rows of every leaf (320), 2 rows of each of 4 new c under every b (256 rows, 128
    groups), 2 rows of each of 200 new a (each with a new b and c). Pooled, each category
    has over 5,000 rows from over 2,500 groups; the per-data-set coverage of new a varies
    most (sd about 0.05, from the 8 top-level groups), so the pooled mean has an sd of about
    0.01 and must lie in [0.85, 0.95]. With 8 top-level groups the sd of a is uncertain and
    the intervals of new a are slightly conservative (measured 0.92)."""
    xr = np.random.default_rng(0)
    ia = np.repeat(np.arange(N_A), N_B * N_C * ROWS)
    ib = np.repeat(np.arange(N_A * N_B), N_C * ROWS)
    ic = np.repeat(np.arange(N_A * N_B * N_C), ROWS)
    x_fit = xr.normal(0, 1, len(ia))
    hits: dict[str, list[np.ndarray]] = {"known": [], "new_c": [], "new_a": []}
    for rep in range(20):
        rng = np.random.default_rng(100 + rep)

        def effects(n, level, rng=rng):
            return rng.normal(0, 1, (n, 2)) * np.array(SDS[level])

        def draw_y(u, x, rng=rng):
            return BETA[0] + u[:, 0] + (BETA[1] + u[:, 1]) * x + rng.normal(0, SIGMA, len(x))

        ua, ub = effects(N_A, "a"), effects(N_A * N_B, "b")
        uc = effects(N_A * N_B * N_C, "c")
        data = _frame(ia, ib % N_B, ic % N_C, x_fit, draw_y(ua[ia] + ub[ib] + uc[ic], x_fit))
        fit = hl.Model("y ~ x + (1 + x || a/b/c)", data).fit(
            chains=2, draws=500, tune=500, seed=rep
        )
        leaf = np.repeat(np.arange(N_A * N_B * N_C), 2)
        la, lb = leaf // (N_B * N_C), leaf // N_C
        x = rng.normal(0, 1, len(leaf))
        known = _frame(la, lb % N_B, leaf % N_C, x, draw_y(ua[la] + ub[lb] + uc[leaf], x))
        nb = np.repeat(np.arange(N_A * N_B), 4 * 2)
        nc = np.repeat(np.arange(N_A * N_B * 4), 2)
        u_new_c = effects(N_A * N_B * 4, "c")
        x = rng.normal(0, 1, len(nb))
        y = draw_y(ua[nb // N_B] + ub[nb] + u_new_c[nc], x)
        new_c = _frame(nb // N_B, nb % N_B, N_C + nc % 4, x, y)
        na = np.repeat(np.arange(200), 2)
        u = effects(200, "a") + effects(200, "b") + effects(200, "c")
        x = rng.normal(0, 1, len(na))
        zeros = np.zeros_like(na)
        new_a = _frame(na, zeros, zeros, x, draw_y(u[na], x), prefix="new")
        for name, frame, level in (
            ("known", known, "c"),
            ("new_c", new_c, "b"),
            ("new_a", new_a, "population"),
        ):
            table = fit.predict(frame, kind="response", hdi=0.9, seed=rep)
            assert (table["known_level"] == level).all()
            hits[name].append(covered(frame["y"], table))
    rates = {name: float(np.concatenate(h).mean()) for name, h in hits.items()}
    assert all(0.85 <= rate <= 0.95 for rate in rates.values()), rates


@pytest.mark.slow
def test_king_county_new_zipcodes_are_covered():
    """``log(price) ~ log_sqft_living + (1 + log_sqft_living | zipcode)`` with every sale of
    5 zip codes held out (every 14th zip code in sorted order, starting at the 8th; the
    other 13 such folds are checked pooled). The held-out zip codes are new groups, so their
    intervals come from the zip-code distribution: a single fold's coverage depends on its
    5 zip codes (0.80-0.98 over the 14 folds), the pooled one is close to nominal."""
    kc = hl.datasets.kc_house()
    zips = sorted(kc["zipcode"].unique())
    formula = "log(price) ~ log_sqft_living + (1 + log_sqft_living | zipcode)"
    pooled = []
    for start in [7, *(s for s in range(14) if s != 7)]:
        held = zips[start::14][:5]
        test = kc[kc["zipcode"].isin(held)]
        fit = hl.Model(formula, kc[~kc["zipcode"].isin(held)]).fit(
            chains=2, draws=500, tune=500, seed=0
        )
        pred = fit.predict_draws(test, kind="response", seed=1)
        table = fit.predict(test, kind="response", hdi=0.9, seed=1)
        assert pred.new_groups == {"zipcode": 5}
        assert (table["known_level"] == "population").all()
        inside = covered(test["price"], table)
        pooled.append(inside)
        if start != 7:
            continue
        assert 0.83 <= inside.mean() <= 0.97, inside.mean()
        # Responses are on the price scale: log(response) - link ~ N(0, sigma) (the
        # new zip codes' draws are the same for one seed), and mean = exp(link + σ²/2).
        link = fit.predict_draws(test, kind="link", seed=1).draws
        sigma = flat(fit, "sigma")[:, None]
        assert pred.draws.min() > 0
        z = (np.log(pred.draws) - link) / sigma
        assert abs(np.mean(z**2) - 1) < 4 * np.sqrt(2 / z.size)
        mean = fit.predict_draws(test, kind="mean", seed=1).draws
        np.testing.assert_allclose(mean, np.exp(link + sigma**2 / 2), rtol=1e-12)
        np.testing.assert_allclose(table["mean"], pred.draws.mean(axis=0))
    rate = np.concatenate(pooled).mean()
    assert 0.87 <= rate <= 0.95, rate


def test_integer_groups_are_found_when_the_column_turned_float(radon_mn):
    # A CSV with a gap reads an integer column as float; 27001.0 must still be county 27001.
    fit = hl.Model("log_radon ~ floor + (1 | county_fips)", radon_mn).fit(
        chains=1, draws=50, tune=50, seed=0
    )
    rows = radon_mn.head(4)
    as_float = rows.assign(county_fips=rows["county_fips"].astype(float))
    a = fit.predict(rows, new_groups="error")
    b = fit.predict(as_float, new_groups="error")
    pd.testing.assert_frame_equal(a, b)
    assert (b["known_level"] == "county_fips").all()


def test_new_group_without_pooling_draws_from_the_fixed_prior(radon_mn):
    """pooling='none' gives each county its own coefficients under a fixed wide prior (no
    shared sd): a new county's draws are the population value plus that prior's spread."""
    fit = hl.Model(RADON_FORMULA, radon_mn, pooling="none").fit(
        chains=1, draws=200, tune=200, seed=0
    )
    prior_sd = fit.idata["constant_data"]["prior_sd_county"].values
    new = pd.DataFrame({"county": ["NOWHERE"] * 2, "floor": [0, 1]})
    pred = fit.predict_draws(new, kind="link", seed=1)
    dev = pred.draws - population_eta(fit, new)
    u = design_rows(["Intercept", "floor"], new)
    want = np.sqrt((u**2) @ prior_sd**2)
    np.testing.assert_allclose(dev.std(axis=0), want, rtol=0.15)
    # Far wider than partial pooling's new-county spread on the same data.
    partial = hl.Model(RADON_FORMULA, radon_mn).fit(chains=1, draws=200, tune=200, seed=0)
    spread = partial.predict_draws(new, kind="link", seed=1).draws.std(axis=0)
    assert (dev.std(axis=0) > 3 * spread).all()


def test_complete_pooling_predicts_every_group_as_the_population(radon_mn):
    fit = hl.Model(RADON_FORMULA, radon_mn, pooling="complete").fit(
        chains=1, draws=100, tune=100, seed=0
    )
    rows = pd.DataFrame({"county": ["AITKIN", "NOWHERE"], "floor": [1, 1]})
    pred = fit.predict_draws(rows, kind="link")
    np.testing.assert_allclose(pred.draws[:, 0], pred.draws[:, 1])
    np.testing.assert_allclose(pred.draws, population_eta(fit, rows))


def test_predict_in_chunks_gives_the_same_summaries(radon_fit, radon_mn, monkeypatch):
    from hierlm import predict as predict_module

    rows = radon_mn.head(10)[["county", "floor"]]
    whole = radon_fit.predict(rows)
    # Three rows at a time: known groups' mean predictions are deterministic given the
    # draws, so the chunked table must match exactly.
    monkeypatch.setattr(predict_module, "_SUMMARY_ELEMENTS", 3 * 600)
    chunked = radon_fit.predict(rows)
    pd.testing.assert_frame_equal(whole, chunked)
    new = pd.DataFrame({"county": ["NEW1", "NEW2"] * 20, "floor": [0, 1] * 20})
    a = radon_fit.predict(new).attrs["new_groups"]
    assert a == {"county": 2}
    table = radon_fit.predict(new, seed=3)
    # Rows of the same new group have the same predictive distribution in every chunk.
    by_group = table.groupby(new["county"].to_numpy())["mean"]
    assert by_group.std().max() < 4 * table["sd"].mean() / np.sqrt(600)
