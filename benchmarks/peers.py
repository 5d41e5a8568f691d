"""Peer workers: the same hierarchical model in PyMC + nutpie and in NumPyro.

Both are the textbook full-latent, non-centred parameterisation: every group has a
standard-normal latent ``z`` (group, 2), scaled by the Cholesky factor of its level's 2x2
covariance, ``u = z @ (diag(sd) L)ᵀ``, with ``L ~ LKJCholesky(2, eta=2)``. The priors are
the ones hierlm prints for the same data (rstanarm-style autoscale), so all three tools
fit the same posterior:

- intercept at the predictor's mean ~ Normal(mean y, 2.5 sd y); slope ~ Normal(0, 2.5 sd y / sd x);
- sigma ~ Exponential(rate 1 / sd y);
- group sds ~ HalfStudentT(3, 2.5 sd y) for the intercept, HalfStudentT(3, 2.5 sd y / sd x)
  for the slope; correlations ~ LKJ(2).

Usage (one fit per process, so the caller times the whole process)::

    python benchmarks/peers.py pymc radon --data radon_mn.csv --json out.json
    python benchmarks/peers.py numpyro radon --data radon_mn.csv --json out.json
    python benchmarks/peers.py pymc synthetic --rows 10000 --json out.json
    python benchmarks/peers.py numpyro parquet --data wide.parquet --levels l1,l2,l3,l4,l5 \
        --intercept-only l3,l4,l5 --json out.json     # scale.py's files

A level in ``--intercept-only`` has a varying intercept only: ``z`` is (group, 1) with a
HalfStudentT sd and no correlation.

The worker prints the parameter summary, records the time at that moment (what the caller
reports as process wall time), and only then computes the extra metrics (ESS of every
group coefficient), which are not timed.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from common import convergence, cpu_seconds, lower_triangle, peak_rss_mb, stamp, write_json

CHAINS, TUNE, DRAWS = 4, 1000, 1000


@dataclass(frozen=True)
class Data:
    """Rows, and for each level (top first) each row's global group index."""

    y: np.ndarray
    x: np.ndarray
    levels: list[str]
    index: dict[str, np.ndarray]  # level -> (n,) group index
    sizes: dict[str, int]
    ancestors: dict[str, dict[str, np.ndarray]]  # level -> {upper level -> (G_level,) index}
    intercept_only: frozenset[str] = frozenset()

    def k(self, level: str) -> int:
        """Number of coefficients varying at ``level`` (intercept, then slope)."""
        return 1 if level in self.intercept_only else 2

    def prior_scales(self) -> dict[str, float]:
        sy = float(np.std(self.y, ddof=1))
        sx = float(np.std(self.x, ddof=1))
        return {
            "mean_y": float(np.mean(self.y)),
            "mean_x": float(np.mean(self.x)),
            "intercept_sd": 2.5 * sy,
            "slope_sd": 2.5 * sy / sx,
            "sigma_rate": 1.0 / sy,
        }


def radon_data(path: str) -> Data:
    import pandas as pd

    frame = pd.read_csv(path)
    codes, _ = pd.factorize(frame["county"], sort=True)
    n = int(codes.max()) + 1
    return Data(
        y=frame["log_radon"].to_numpy(np.float64),
        x=frame["floor"].to_numpy(np.float64),
        levels=["county"],
        index={"county": codes.astype(np.int64)},
        sizes={"county": n},
        ancestors={"county": {"county": np.arange(n)}},
    )


def synthetic_data(rows: int) -> Data:
    from simulate import simulate

    sim = simulate(rows)
    idx = sim.level_index()
    leaf_anc = sim.ancestors()
    b_anc = {"a": np.arange(sim.n_groups["b"]) // (sim.n_groups["b"] // sim.n_groups["a"])}
    return Data(
        y=sim.frame["y"].to_numpy(),
        x=sim.frame["x"].to_numpy(),
        levels=["a", "b", "c"],
        index=idx,
        sizes=sim.n_groups,
        ancestors={
            "a": {"a": np.arange(sim.n_groups["a"])},
            "b": {**b_anc, "b": np.arange(sim.n_groups["b"])},
            "c": leaf_anc,
        },
    )


def parquet_data(path: str, levels: list[str], intercept_only: set[str]) -> Data:
    """``y``, ``x`` and nested group columns (top first) from one of ``scale.py``'s files;
    a group is its full path, as hierlm keys it."""
    import pandas as pd

    frame = pd.read_parquet(path, columns=["y", "x", *levels])
    index: dict[str, np.ndarray] = {}
    ancestors: dict[str, dict[str, np.ndarray]] = {}
    for depth, lv in enumerate(levels):
        codes = frame.groupby(levels[: depth + 1], sort=True, observed=True).ngroup()
        index[lv] = codes.to_numpy(np.int64)
        first = np.unique(index[lv], return_index=True)[1]  # a row of each group
        ancestors[lv] = {up: index[up][first] for up in levels[: depth + 1]}
    sizes = {lv: int(index[lv].max()) + 1 for lv in levels}
    return Data(
        y=frame["y"].to_numpy(np.float64),
        x=frame["x"].to_numpy(np.float64),
        levels=levels,
        index=index,
        sizes=sizes,
        ancestors=ancestors,
        intercept_only=frozenset(intercept_only),
    )


# --------------------------------------------------------------------------- PyMC + nutpie


def fit_pymc(data: Data, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    import arviz as az
    import nutpie
    import pymc as pm
    import pytensor.tensor as pt

    t_import = time.perf_counter() - t0
    ps = data.prior_scales()
    scales = np.array([ps["intercept_sd"], ps["slope_sd"]])
    t1 = time.perf_counter()
    with pm.Model() as model:
        alpha_c = pm.Normal("alpha_c", ps["mean_y"], ps["intercept_sd"])
        slope = pm.Normal("slope", 0.0, ps["slope_sd"])
        beta = pm.Deterministic("beta", pt.stack([alpha_c - slope * ps["mean_x"], slope]))
        sigma = pm.Exponential("sigma", ps["sigma_rate"])
        x = pt.as_tensor_variable(data.x)
        icpt = beta[0] + pt.zeros_like(x)
        slp = beta[1] + pt.zeros_like(x)
        for lv in data.levels:
            idx = data.index[lv]
            if data.k(lv) == 1:
                sd1 = pm.HalfStudentT(f"sd_{lv}", nu=3, sigma=scales[0])
                z1 = pm.Normal(f"z_{lv}", 0.0, 1.0, shape=data.sizes[lv])
                icpt = icpt + (z1 * sd1)[idx]
                continue
            # Independent sds and an LKJ correlation. (LKJCholeskyCov with a HalfStudentT
            # sd_dist fails in nutpie's initial-point function with this numpy/pytensor.)
            sd = pm.HalfStudentT(f"sd_{lv}", nu=3, sigma=scales, shape=2)
            r = pm.LKJCorr(f"corr_{lv}", n=2, eta=2.0)[0]
            chol = pt.stack(
                [pt.stack([sd[0], 0.0]), pt.stack([sd[1] * r, sd[1] * pt.sqrt(1 - r**2)])]
            )
            z = pm.Normal(f"z_{lv}", 0.0, 1.0, shape=(data.sizes[lv], 2))
            u = z @ chol.T
            icpt = icpt + u[idx, 0]
            slp = slp + u[idx, 1]
        pm.Normal("y", icpt + slp * x, sigma, observed=data.y)
    t_build = time.perf_counter() - t1
    t2 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)  # default backend: numba
    t_compile = time.perf_counter() - t2
    t3 = time.perf_counter()
    idata = nutpie.sample(
        compiled, chains=CHAINS, tune=TUNE, draws=DRAWS, seed=seed, progress_bar=False
    )
    t_sample = time.perf_counter() - t3
    main_names = ["beta", "sigma"] + [f"sd_{lv}" for lv in data.levels]
    main_names += [f"corr_{lv}" for lv in data.levels if data.k(lv) == 2]
    print(az.summary(idata, var_names=main_names).to_string())
    sys.stdout.flush()
    printed = stamp()

    post = idata.posterior
    main = {
        "beta": post["beta"].values,
        "sigma": post["sigma"].values,
    }
    chols = {}
    for lv in data.levels:
        sd = post[f"sd_{lv}"].values
        main[f"sd_{lv}"] = sd
        if data.k(lv) == 1:
            chols[lv] = sd[..., None, None]
            continue
        r = post[f"corr_{lv}"].values[..., 0]
        chol = np.zeros((*r.shape, 2, 2))
        chol[..., 0, 0] = sd[..., 0]
        chol[..., 1, 0] = sd[..., 1] * r
        chol[..., 1, 1] = sd[..., 1] * np.sqrt(1 - r**2)
        chols[lv] = chol
        main[f"corr_{lv}"] = r[..., None]
    zs = {
        lv: post[f"z_{lv}"].values.reshape(*main["sigma"].shape, data.sizes[lv], -1)
        for lv in data.levels
    }
    groups = group_coefficients(data, main["beta"], zs, chols)
    diverging = int(np.asarray(idata.sample_stats["diverging"].values).sum())
    n_steps = idata.sample_stats.get("n_steps")
    return {
        "mean_leapfrog_steps": float(n_steps.values.mean()) if n_steps is not None else None,
        "timings": {
            "import": t_import,
            "build": t_build,
            "compile": t_compile,
            "sample": t_sample,
        },
        "printed": printed,
        "divergences": diverging,
        **convergence(main, groups),
        "dtype": "float64",
        "chain_method": "nutpie threads (default cores)",
    }


# --------------------------------------------------------------------------- NumPyro


def fit_numpyro(data: Data, seed: int, chain_method: str, cache_dir: str | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    import arviz as az
    import jax

    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    if chain_method == "parallel":
        numpyro.set_host_device_count(CHAINS)
    t_import = time.perf_counter() - t0
    ps = data.prior_scales()
    scales = jnp.array([ps["intercept_sd"], ps["slope_sd"]])
    x = jnp.asarray(data.x)
    y = jnp.asarray(data.y)
    index = {lv: jnp.asarray(data.index[lv]) for lv in data.levels}

    def model():
        alpha_c = numpyro.sample("alpha_c", dist.Normal(ps["mean_y"], ps["intercept_sd"]))
        slope = numpyro.sample("slope", dist.Normal(0.0, ps["slope_sd"]))
        sigma = numpyro.sample("sigma", dist.Exponential(ps["sigma_rate"]))
        icpt = alpha_c - slope * ps["mean_x"]
        slp = slope
        for lv in data.levels:
            if data.k(lv) == 1:
                sd1 = numpyro.sample(
                    f"sd_{lv}", dist.FoldedDistribution(dist.StudentT(3.0, 0.0, scales[0]))
                )
                z1 = numpyro.sample(f"z_{lv}", dist.Normal(0.0, 1.0).expand([data.sizes[lv]]))
                icpt = icpt + (z1 * sd1)[index[lv]]
                continue
            sd = numpyro.sample(
                f"sd_{lv}", dist.FoldedDistribution(dist.StudentT(3.0, 0.0, scales)).to_event(1)
            )
            L = numpyro.sample(f"L_{lv}", dist.LKJCholesky(2, 2.0))
            z = numpyro.sample(f"z_{lv}", dist.Normal(0.0, 1.0).expand([data.sizes[lv], 2]))
            u = z @ (sd[:, None] * L).T
            icpt = icpt + u[index[lv], 0]
            slp = slp + u[index[lv], 1]
        numpyro.sample("y", dist.Normal(icpt + slp * x, sigma), obs=y)

    mcmc = MCMC(
        NUTS(model),
        num_warmup=TUNE,
        num_samples=DRAWS,
        num_chains=CHAINS,
        chain_method=chain_method,
        progress_bar=False,
    )
    t1 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), extra_fields=("diverging", "num_steps"))
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    t_run = time.perf_counter() - t1
    beta = np.stack(
        [samples["alpha_c"] - samples["slope"] * ps["mean_x"], samples["slope"]], axis=-1
    )
    main = {"beta": beta, "sigma": samples["sigma"]}
    chols = {}
    for lv in data.levels:
        sd = samples[f"sd_{lv}"]
        main[f"sd_{lv}"] = sd
        if data.k(lv) == 1:
            chols[lv] = sd[..., None, None]
            continue
        L = samples[f"L_{lv}"]
        chols[lv] = sd[..., :, None] * L
        main[f"corr_{lv}"] = lower_triangle(L @ np.swapaxes(L, -1, -2))
    print(az.summary(az.convert_to_dataset(main)).to_string())
    sys.stdout.flush()
    printed = stamp()

    zs = {lv: samples[f"z_{lv}"].reshape(*beta.shape[:2], data.sizes[lv], -1) for lv in data.levels}
    groups = group_coefficients(data, beta, zs, chols)
    extra = mcmc.get_extra_fields()
    diverging = int(np.asarray(extra["diverging"]).sum())
    return {
        "mean_leapfrog_steps": float(np.asarray(extra["num_steps"]).mean()),
        "timings": {"import": t_import, "compile_and_sample": t_run},
        "printed": printed,
        "divergences": diverging,
        **convergence(main, groups),
        "dtype": str(jnp.zeros(1).dtype),
        "chain_method": chain_method,
    }


def group_coefficients(
    data: Data, beta: np.ndarray, zs: dict[str, np.ndarray], chols: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Each group's full coefficient vector (beta plus the effects of it and its ancestors),
    as hierlm reports ``beta_<level>``: (chain, draw, group, 2)."""
    u = {}
    for lv in data.levels:
        effect = np.einsum("cdgk,cdjk->cdgj", zs[lv], chols[lv])
        pad = 2 - effect.shape[-1]  # intercept-only levels: no slope effect
        u[lv] = np.concatenate([effect, np.zeros((*effect.shape[:-1], pad))], axis=-1)
    out = {}
    for lv in data.levels:
        total = np.repeat(beta[:, :, None, :], data.sizes[lv], axis=2)
        for upper, idx in data.ancestors[lv].items():
            total = total + u[upper][:, :, idx, :]
        out[f"beta_{lv}"] = total
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Fit one peer model and write its metrics.")
    parser.add_argument("tool", choices=["pymc", "numpyro"])
    parser.add_argument("model", choices=["radon", "synthetic", "parquet"])
    parser.add_argument("--data", help="CSV (radon) or Parquet (parquet)")
    parser.add_argument("--levels", help="nested group columns, top first (parquet)")
    parser.add_argument("--intercept-only", default="", help="levels without a varying slope")
    parser.add_argument("--rows", type=float, help="rows (synthetic)")
    parser.add_argument("--json", help="where to write the metrics")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chain-method", default="vectorized", help="NumPyro chain_method")
    parser.add_argument("--jax-cache", help="JAX persistent compilation cache dir (NumPyro)")
    args = parser.parse_args()

    started = stamp()
    if args.model == "radon":
        data = radon_data(args.data)
    elif args.model == "parquet":
        only = {lv for lv in args.intercept_only.split(",") if lv}
        data = parquet_data(args.data, args.levels.split(","), only)
    else:
        data = synthetic_data(int(args.rows))
    if args.tool == "pymc":
        result = fit_pymc(data, args.seed)
    else:
        result = fit_numpyro(data, args.seed, args.chain_method, args.jax_cache)
    result.update(
        tool=args.tool,
        model=args.model,
        rows=len(data.y),
        worker_started=started,
        peak_rss_mb=peak_rss_mb(),
        cpu_s_total=cpu_seconds(),
    )
    write_json(args.json, result)


if __name__ == "__main__":
    main()
