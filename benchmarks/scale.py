"""hierlm at scale: model B from Parquet on disk at 1e6-1e8 rows, streamed and in memory,
and a wide tree of 100,000 leaves over five levels. Writes ``benchmarks/SCALE.md``.

::

    python benchmarks/scale.py --workdir /tmp/bs                 # 1e6, 1e7, 1e8 rows + wide
    python benchmarks/scale.py --workdir /tmp/bs --sizes 1e6 --in-memory-max 1e6

Each fit runs in its own process; the parent measures its wall time and peak RSS
(``wait4``). Inside, the worker records when sampling started (the sampler's first progress
call), measured from the moment the parent started the process. The Parquet files are made
once per work directory (model B from ``simulate.py``, 1e6-row row groups).

Runs, in order, with one compile cache for all of them:

1. streamed 1e6 rows (cold: empty compile cache);
2. streamed, a different 1e6-row data set of the same shape (warm: "a second fit of a
   same-sized model in a new process" — its time before sampling is the figure);
3. for every size: streamed from Parquet (``hl.Model(path)``: DuckDB) and, up to
   ``--in-memory-max`` rows, in memory (``pd.read_parquet`` then ``hl.Model(frame)``);
4. the wide tree (``--wide-rows`` rows over 100,000 leaves), streamed;
5. the peers (``--peers``: PyMC + nutpie, NumPyro full-latent; ``peers.py``) on the same
   Parquet files, read into memory: model B at every size, then the wide tree, each with
   ``--peer-timeout`` (15 minutes). A peer that does not finish, or runs out of memory, at
   one size is recorded as such and not run at the larger ones.

``--skip-hierlm`` runs only the peers (with ``--out`` elsewhere, to keep SCALE.md whole).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
FORMULA_B = "y ~ x + (1 + x | a/b/c)"
# Five levels, 5 > 10 > 20 > 10 > 10 groups per parent: 100,000 leaves. Intercept and
# slope vary (correlated) at the top two levels, the intercept below.
WIDE_SIZES = (5, 10, 20, 10, 10)
FORMULA_WIDE = "y ~ x + (1 + x | l1/l2) + (1 | l1:l2:l3) + (1 | l1:l2:l3:l4) + (1 | l1:l2:l3:l4:l5)"


# --------------------------------------------------------------------------- data


def write_model_b(path: Path, rows: int, seed: int) -> None:
    """Model B (``simulate.py``), 1e6 rows at a time, into one Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(HERE))
    from simulate import simulate

    chunk = 1_000_000
    tmp = path.with_suffix(".part")
    with pq.ParquetWriter(tmp, _schema("a", "b", "c")) as writer:
        for k, start in enumerate(range(0, rows, chunk)):
            m = min(chunk, rows - start)
            frame = simulate(m, seed=seed, chunk=m, row_seed=seed + 1 + k).frame
            table = pa.table(
                {
                    "y": frame["y"].to_numpy(),
                    "x": frame["x"].to_numpy(),
                    **{g: frame[g].cat.codes.to_numpy() for g in "abc"},
                },
                schema=_schema("a", "b", "c"),
            )
            writer.write_table(table)
    tmp.rename(path)


def write_wide(path: Path, rows: int, seed: int) -> None:
    """Five nested levels (``WIDE_SIZES`` per parent), 1e6 rows at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    counts = np.cumprod(WIDE_SIZES)
    n_leaves = int(counts[-1])
    sds = (0.5, 0.3, 0.2, 0.15, 0.1)
    coef = np.tile(np.array([1.0, 0.5]), (n_leaves, 1))
    leaf = np.arange(n_leaves)
    for k, n in enumerate(counts):
        per_group = n_leaves // int(n)
        effect = rng.normal(0, sds[k], (int(n), 2))
        if k >= 2:
            effect[:, 1] = 0.0
        coef += effect[leaf // per_group]
    names = [f"l{k + 1}" for k in range(len(WIDE_SIZES))]
    schema = _schema(*names)
    tmp = path.with_suffix(".part")
    row_rng = np.random.default_rng(seed + 1)
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, rows, 1_000_000):
            m = min(1_000_000, rows - start)
            g = row_rng.integers(0, n_leaves, m)
            x = row_rng.standard_normal(m)
            y = coef[g, 0] + coef[g, 1] * x + row_rng.standard_normal(m)
            cols: dict[str, Any] = {"y": y, "x": x}
            for k, name in enumerate(names):
                per_group = n_leaves // int(counts[k])
                cols[name] = ((g // per_group) % WIDE_SIZES[k]).astype(np.int8)
            writer.write_table(pa.table(cols, schema=schema))
    tmp.rename(path)


def _schema(*groups: str):
    import pyarrow as pa

    return pa.schema([("y", pa.float64()), ("x", pa.float64()), *[(g, pa.int8()) for g in groups]])


# --------------------------------------------------------------------------- worker


def worker(args: argparse.Namespace) -> None:
    """One fit; metrics to ``--json``."""
    import resource

    started_at = float(args.started_at)
    import hierlm as hl

    t_import = time.time() - started_at
    sampling_at: list[float] = []

    def progress(done: int, total: int, phase: str) -> None:
        if not sampling_at:
            sampling_at.append(time.time())

    t0 = time.perf_counter()
    if args.mode == "memory":
        import pandas as pd

        data: Any = pd.read_parquet(args.path)
        t_read = time.perf_counter() - t0
    else:
        data, t_read = args.path, 0.0
    model = hl.Model(args.formula, data)
    t_model = time.perf_counter() - t0
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del data
    fit = model.fit(chains=4, draws=1000, tune=1000, seed=1, progress=progress)
    end_to_end = time.perf_counter() - t0
    summary = fit.summary()
    post = fit.idata.posterior
    main = [v for v in post.data_vars if not str(v).startswith("beta_")]
    import arviz as az

    ess = az.ess(post[main])
    rhat = az.rhat(post[main])
    result = {
        "mode": args.mode,
        "rows": int(fit.info.n_rows),
        "groups": dict(zip(fit.design.tree.level_names, fit.design.tree.sizes, strict=True)),
        "import_s": t_import,
        "read_s": t_read,
        "model_s": t_model,
        "before_sampling_s": (sampling_at[0] - started_at) if sampling_at else None,
        "end_to_end_s": end_to_end,
        "timings": dict(fit.info.timings),
        "rss_after_model_mb": rss_model,
        "max_rhat": float(max(float(rhat[v].max()) for v in rhat.data_vars)),
        "min_ess": float(min(float(ess[v].min()) for v in ess.data_vars if ess[v].size)),
        "divergences": int(fit.idata.sample_stats["diverging"].values.sum()),
        "params": len(summary),
    }
    Path(args.json).write_text(json.dumps(result))


def run_worker(
    mode: str,
    path: Path,
    formula: str,
    env: dict[str, str],
    workdir: Path,
    name: str,
    timeout: float,
) -> dict[str, Any]:
    out = workdir / f"{name}.json"
    started = time.time()
    cmd = [sys.executable, __file__, "--worker", mode, str(path), formula, str(out)]
    return run_process([*cmd, f"{started:.6f}"], env, workdir, name, out, timeout)


def run_process(
    cmd: list[str], env: dict[str, str], workdir: Path, name: str, out: Path, timeout: float
) -> dict[str, Any]:
    """Run ``cmd``, which writes its metrics to ``out``; kill it after ``timeout`` seconds.
    Wall time and peak RSS come from ``wait4``."""
    out.unlink(missing_ok=True)
    log = (workdir / f"{name}.log").open("w")
    started = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = started + timeout
    status, usage = 0, None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.time() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.1)
    wall = time.time() - started
    log.close()
    res: dict[str, Any] = {
        "name": name,
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "load": os.getloadavg()[0],
        "rc": os.waitstatus_to_exitcode(status),
    }
    text = (workdir / f"{name}.log").read_text(errors="replace")
    if out.exists():
        res.update(json.loads(out.read_text()))
    elif wall >= timeout:
        res["outcome"] = "did not finish in " + (
            f"{timeout / 60:.0f} min" if timeout >= 120 else f"{timeout:.0f} s"
        )
    elif res["rc"] == -9 or "MemoryError" in text or "RESOURCE_EXHAUSTED" in text:
        res["outcome"] = "out of memory"
    else:
        res["outcome"] = f"failed (exit {res['rc']}; see {name}.log)"
    return res


PEERS = {"pymc": "PyMC + nutpie", "numpyro": "NumPyro"}


def run_peer(
    tool: str,
    path: Path,
    levels: str,
    intercept_only: str,
    workdir: Path,
    name: str,
    timeout: float,
) -> dict[str, Any]:
    """One peer fit (``peers.py``, full-latent non-centred) on a Parquet file, in memory."""
    out = workdir / f"{name}.json"
    cmd = [sys.executable, str(HERE / "peers.py"), tool, "parquet", "--data", str(path)]
    cmd += ["--levels", levels, "--intercept-only", intercept_only, "--json", str(out)]
    cmd += ["--jax-cache", str(workdir / "cache-peers-jax")] if tool == "numpyro" else []
    env = dict(
        os.environ,
        PYTENSOR_FLAGS=f"compiledir={workdir / 'cache-peers-pytensor'}",
        NUMBA_CACHE_DIR=str(workdir / "cache-peers-numba"),
    )
    res = run_process(cmd, env, workdir, name, out, timeout)
    if "rows" in res:  # finished: map peers.py's metrics onto the table's columns
        t = res["timings"]
        res["timings"] = {"nuts": t.get("sample", t.get("compile_and_sample"))}
        res["max_rhat"] = res.get("rhat_max_all")
        res["min_ess"] = res.get("ess_bulk_min_main")
    return res


# --------------------------------------------------------------------------- report


def machine() -> list[str]:
    import hierlm

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores",
        f"- RAM: {mem:.1f} GiB",
        f"- Python {platform.python_version()}, hierlm {hierlm.__version__}",
    ]


def fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


def report(results: list[dict[str, Any]], started: str, argv: list[str]) -> str:
    lines = [
        "# hierlm at scale",
        "",
        f"Generated by `python benchmarks/{' '.join([Path(argv[0]).name, *argv[1:]])}`, started {started} UTC.",
        "",
        "## Machine",
        "",
        *machine(),
        "",
        (
            "One process per row; the parent measures wall time (process start to fit done) and "
            "the process's peak RSS. Before sampling = process start to the sampler's first "
            "iteration (imports, reading, statistics, mode search, compiling). Streamed = "
            "`hl.Model(path)` (DuckDB reads the Parquet file in record batches); in memory = "
            "`pd.read_parquet` then `hl.Model(frame)`. 4 chains, 1000 tune + 1000 draws. ESS and "
            "R-hat over beta, sigma, every sd and correlation. Load = 1-minute load average when "
            "the process ended (2 cores: above 2 the machine was shared). Peers: the full-latent "
            "non-centred model of `peers.py` (PyMC + nutpie with numba; NumPyro vectorised "
            "chains, float32) on the same file read into memory, empty compile caches; their "
            "sampling column includes compiling (NumPyro) and their min ESS is over the "
            "parameters only."
        ),
        "",
        (
            "| run | rows | groups | wall (s) | before sampling (s) | read + statistics (s) | "
            "sampling (s) | peak RSS (MB) | max R-hat | min ESS | div. | load | outcome |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t = r.get("timings", {})
        groups = " > ".join(f"{v:,}" for v in r.get("groups", {}).values()) or "—"
        lines.append(
            "| "
            + " | ".join(
                [
                    r["name"],
                    fmt(r.get("rows")),
                    groups,
                    fmt(r["wall_s"]),
                    fmt(r.get("before_sampling_s"), 2),
                    fmt(r.get("model_s")),
                    fmt(t.get("nuts")),
                    fmt(r["peak_rss_mb"], 0),
                    fmt(r.get("max_rhat"), 3),
                    fmt(r.get("min_ess"), 0),
                    fmt(r.get("divergences")),
                    fmt(r["load"], 2),
                    r.get("outcome", "ok"),
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hierlm-scale"))
    parser.add_argument("--sizes", default="1e6,1e7,1e8")
    parser.add_argument("--in-memory-max", type=float, default=1e7)
    parser.add_argument("--wide-rows", type=float, default=1e6)
    parser.add_argument("--skip-wide", action="store_true")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--peers", default="pymc,numpyro", help="comma list; empty for none")
    parser.add_argument("--peer-timeout", type=float, default=900)
    parser.add_argument("--skip-hierlm", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "SCALE.md")
    parser.add_argument("--worker", nargs=5, metavar=("MODE", "PATH", "FORMULA", "JSON", "T0"))
    args = parser.parse_args()
    if args.worker:
        mode, path, formula, out, t0 = args.worker
        worker(argparse.Namespace(mode=mode, path=path, formula=formula, json=out, started_at=t0))
        return
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HIERLM_CACHE_DIR=str(work / "cache"))
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    subprocess.run(["rm", "-rf", str(work / "cache")], check=True)

    def data(rows: int, seed: int = 1) -> Path:
        path = work / f"b_{rows:.0e}_s{seed}.parquet"
        if not path.exists():
            write_model_b(path, rows, seed)
        return path

    results = []

    def record(res: dict[str, Any]) -> None:
        results.append(res)
        print(json.dumps(res), flush=True)
        args.out.write_text(report(results, started, sys.argv))

    def run(mode: str, path: Path, formula: str, name: str) -> None:
        record(run_worker(mode, path, formula, env, work, name, args.timeout))

    def peer(tool: str, path: Path, levels: str, only: str, name: str) -> str:
        res = run_peer(tool, path, levels, only, work, name, args.peer_timeout)
        record(res)
        return res.get("outcome", "ok")

    sizes = [int(float(x)) for x in args.sizes.split(",")]
    wide = work / f"wide_{int(args.wide_rows):.0e}.parquet"
    if not args.skip_wide and not wide.exists():
        write_wide(wide, int(args.wide_rows), seed=5)
    if not args.skip_hierlm:
        run("stream", data(1_000_000), FORMULA_B, "model B, streamed, cold cache")
        run("stream", data(1_000_000, seed=2), FORMULA_B, "model B, streamed, new data, warm cache")
        for rows in sizes:
            run("stream", data(rows), FORMULA_B, f"model B {rows:.0e}, streamed")
            if rows <= args.in_memory_max:
                run("memory", data(rows), FORMULA_B, f"model B {rows:.0e}, in memory")
        if not args.skip_wide:
            run("stream", wide, FORMULA_WIDE, "wide: 100,000 leaves, 5 levels, streamed")

    for tool in (t for t in args.peers.split(",") if t):
        # Once a peer does not finish at one size, the larger ones are recorded, not run.
        stopped = ""
        for rows in sizes:
            name = f"{PEERS[tool]}: model B {rows:.0e}, in memory"
            if stopped:
                record(
                    {
                        "name": name,
                        "wall_s": None,
                        "peak_rss_mb": None,
                        "load": None,
                        "outcome": f"not run ({stopped})",
                    }
                )
                continue
            outcome = peer(tool, data(rows), "a,b,c", "", name)
            if outcome != "ok":
                stopped = f"{outcome} at {rows:.0e} rows"
        if not args.skip_wide:
            levels = ",".join(f"l{k + 1}" for k in range(len(WIDE_SIZES)))
            peer(tool, wide, levels, "l3,l4,l5", f"{PEERS[tool]}: wide, 100,000 leaves, in memory")


if __name__ == "__main__":
    main()
