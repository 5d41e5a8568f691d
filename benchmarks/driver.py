"""Which NUTS drives hierlm's collapsed density: NumPyro in one compiled program, or nutpie
calling the compiled JAX log density from Rust?

Both sample the same θ posterior (radon Minnesota, varying intercept and slope; 4 chains,
1000 tune + 1000 draws) in the same Laplace-preconditioned coordinates ``u``. The table
gives the sampling time (programs already compiled), bulk ESS of θ and leapfrog steps.

    python benchmarks/driver.py        # needs the bench extra (nutpie)
"""

from __future__ import annotations

import time

import numpy as np

import hierlm as hl
from hierlm.laplace import LogDensity, find_laplace
from hierlm.sampler import collapsed_start, collapsed_target, compile_nuts, run_nuts


def main() -> None:
    import arviz as az
    import nutpie
    from nutpie.compiled_pyfunc import from_pyfunc

    model = hl.Model("log_radon ~ floor + (1 + floor | county)", hl.datasets.radon("MN"))
    layout, args = model.problem.layout, model.problem.args
    lap = find_laplace(layout, args)
    logp = LogDensity(layout, args)
    mode, C = lap.mode, lap.root_cov
    d = layout.size

    target = collapsed_target(layout, args, lap)
    programs = compile_nuts(target, chains=4, tune=1000)
    start = collapsed_start(lap, logp, 4, 0)
    run_nuts(programs, target.data, start, draws=1000, seed=0)  # warm up
    t = time.perf_counter()
    draws = run_nuts(programs, target.data, start, draws=1000, seed=1)
    numpyro_s = time.perf_counter() - t
    numpyro_ess = float(np.min(az.ess(az.convert_to_dataset(draws.x)).x.values))
    numpyro_steps = float(draws.n_steps.mean())

    def make_logp():
        def f(u):
            v, g = logp(mode + (C @ u)[None])
            return float(v[0]), C.T @ g[0]

        return f

    def make_expand(seed1, seed2, chain):
        return lambda u: {"u": np.asarray(u)}

    pyfunc = from_pyfunc(d, make_logp, make_expand, [np.dtype("float64")], [(d,)], ["u"])
    nutpie.sample(pyfunc, chains=4, tune=50, draws=50, seed=0, progress_bar=False)
    t = time.perf_counter()
    trace = nutpie.sample(pyfunc, chains=4, tune=1000, draws=1000, seed=1, progress_bar=False)
    nutpie_s = time.perf_counter() - t
    nutpie_ess = float(np.min(az.ess(trace).u.values))
    nutpie_steps = float(trace.sample_stats.n_steps.values.mean())

    print("| driver | sampling (s) | min bulk ESS of u | leapfrog steps / draw |")
    print("|---|---|---|---|")
    print(f"| NumPyro NUTS, compiled | {numpyro_s:.2f} | {numpyro_ess:.0f} | {numpyro_steps:.1f} |")
    print(f"| nutpie, JAX callback | {nutpie_s:.2f} | {nutpie_ess:.0f} | {nutpie_steps:.1f} |")


if __name__ == "__main__":
    main()
