"""hierlm workers: metrics of a saved fit (model A), and one synthetic fit (model B).

::

    python benchmarks/hierlm_worker.py metrics radon.hlm --json out.json
    python benchmarks/hierlm_worker.py synthetic --rows 1e6 --json out.json

``metrics`` reads a fit written by ``hierlm fit`` (the CLI run that ``run.py`` times) and
reports convergence over every posterior variable, group coefficients included.

``synthetic`` simulates model B in memory, then times ``hl.Model(...)`` + ``.fit(...)``
(end to end: data in memory to fit done) and records the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from common import convergence, cpu_seconds, lower_triangle, peak_rss_mb, stamp, write_json

FORMULA_B = "y ~ x + (1 + x | a/b/c)"


def fit_metrics(fit: Any) -> dict[str, Any]:
    """Convergence over all of ``fit.idata.posterior``, sampler statistics and timings."""
    post = fit.idata.posterior
    group_vars = {f"beta_{lv}" for lv in fit.design.tree.level_names}
    main: dict[str, np.ndarray] = {}
    groups: dict[str, np.ndarray] = {}
    for name in post.data_vars:
        values = post[name].values
        if str(name).startswith("corr_"):
            values = lower_triangle(values)
            if np.all(np.ptp(values, axis=(0, 1)) == 0):
                continue  # fixed at 0 by construction (uncorrelated blocks)
        (groups if name in group_vars else main)[str(name)] = values
    ss = fit.idata.sample_stats
    return {
        **convergence(main, groups),
        "divergences": int(ss["diverging"].values.sum()),
        "mean_leapfrog_steps": float(ss["n_steps"].values.mean()),
        "mean_tree_depth": float(ss["tree_depth"].values.mean()),
        "fit_timings": dict(fit.info.timings),
        "rows": int(fit.info.n_rows),
        "groups": dict(zip(fit.design.tree.level_names, fit.design.tree.sizes, strict=True)),
    }


def cmd_metrics(path: str, json_path: str | None) -> None:
    import hierlm as hl

    write_json(json_path, {"tool": "hierlm", **fit_metrics(hl.load(path))})


def cmd_synthetic(rows: int, json_path: str | None, seed: int) -> None:
    started = stamp()
    t = time.perf_counter()
    import hierlm as hl

    t_import = time.perf_counter() - t
    rss_import = peak_rss_mb()
    from simulate import simulate

    t = time.perf_counter()
    sim = simulate(rows)
    t_simulate = time.perf_counter() - t
    rss_data = peak_rss_mb()

    t0 = time.perf_counter()
    model = hl.Model(FORMULA_B, sim.frame)
    t_model = time.perf_counter() - t0
    rss_model = peak_rss_mb()
    fit = model.fit(chains=4, draws=1000, tune=1000, seed=seed)
    end_to_end = time.perf_counter() - t0
    rss_peak = peak_rss_mb()
    cpu = cpu_seconds()
    print(fit.summary().to_string())
    result = {
        "laplace_converged": bool(fit.info.mode_converged),
        "tool": "hierlm",
        "model": "synthetic",
        "worker_started": started,
        "import_s": t_import,
        "simulate_s": t_simulate,
        "model_s": t_model,
        "end_to_end_s": end_to_end,
        "cpu_s_at_fit_done": cpu,
        "rss_after_import_mb": rss_import,
        "rss_after_data_mb": rss_data,
        "rss_after_model_mb": rss_model,
        "peak_rss_mb": rss_peak,
        **fit_metrics(fit),
    }
    write_json(json_path, result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("metrics", help="metrics of a saved fit")
    m.add_argument("fit")
    m.add_argument("--json")
    s = sub.add_parser("synthetic", help="simulate and fit model B")
    s.add_argument("--rows", type=float, required=True)
    s.add_argument("--json")
    s.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.cmd == "metrics":
        cmd_metrics(args.fit, args.json)
    else:
        cmd_synthetic(int(args.rows), args.json, args.seed)


if __name__ == "__main__":
    main()
