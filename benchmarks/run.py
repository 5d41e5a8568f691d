"""Run hierlm and its peers side by side and write ``benchmarks/RESULTS.md``.

Model A, radon (Minnesota): ``log_radon ~ floor + (1 + floor | county)``, 919 rows, 85
counties, 4 chains x (1000 tune + 1000 draws), fitted by

- hierlm, through its command line (``hierlm fit data.csv FORMULA -o fit.hlm``, summary
  printed);
- PyMC + nutpie (numba backend), non-centred (``peers.py pymc``);
- NumPyro NUTS, full latent, non-centred (``peers.py numpyro``).

Each fit runs in its own process. Wall time is measured here, from just before the process
starts to the moment its summary is printed (for hierlm: the process exit, which follows
the summary). "cold" runs get fresh, empty compile caches; "warm" runs reuse them.

Model B, synthetic: ``y ~ x + (1 + x | a/b/c)`` with 2 > 50 > 20 nested groups (2,000
leaves), at several sizes (``--sizes``); hierlm at every size and PyMC + nutpie at the
sizes in ``--peer-sizes``. One process per size, for its peak RSS.

Usage::

    python benchmarks/run.py                 # everything (about half an hour on 2 cores)
    python benchmarks/run.py --quick         # model A only
    python benchmarks/run.py --sizes 1e4,1e5 --peer-sizes ""
    python benchmarks/run.py --report-from /tmp/b   # re-render from an earlier --workdir
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FORMULA_A = "log_radon ~ floor + (1 + floor | county)"
FORMULA_B = "y ~ x + (1 + x | a/b/c)"
PACKAGES = [
    "hierlm",
    "jax",
    "jaxlib",
    "numpyro",
    "pymc",
    "pytensor",
    "nutpie",
    "numba",
    "arviz",
    "numpy",
    "pandas",
]
TOOL_NAMES = {
    "hierlm": "hierlm (CLI)",
    "pymc": "PyMC + nutpie",
    "numpyro": "NumPyro",
}

# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = float("nan")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 1024**2
    except OSError:
        pass
    os_name = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip().strip('"')
                os_name = f"{pretty} ({platform.release()})"
    except OSError:
        pass
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": mem_gb,
        "os": os_name,
        "python": platform.python_version(),
        "versions": versions,
    }


# --------------------------------------------------------------------------- processes


def run_process(
    name: str, cmd: list[str], env: dict[str, str], workdir: Path, timeout: float
) -> dict[str, Any]:
    """Run one worker; time it from just before it starts; collect its JSON if any."""
    json_path = workdir / f"{name}.json"
    json_path.unlink(missing_ok=True)
    cmd = [c.replace("{json}", str(json_path)) for c in cmd]
    out_path, err_path = workdir / f"{name}.out", workdir / f"{name}.err"
    load = os.getloadavg()[0]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(cmd)}", flush=True)
    start_epoch = time.time()
    t0 = time.perf_counter()
    timed_out = False
    rc: int | None
    with out_path.open("w") as out, err_path.open("w") as err:
        try:
            rc = subprocess.run(
                cmd, env=env, stdout=out, stderr=err, timeout=timeout, cwd=workdir
            ).returncode
        except subprocess.TimeoutExpired:
            rc, timed_out = None, True
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    result: dict[str, Any] = {
        "name": name,
        "rc": rc,
        "timed_out": timed_out,
        "wall_process_s": wall,
        "cpu_process_s": cpu,
        "load1_at_start": load,
        "start_epoch": start_epoch,
    }
    if json_path.exists():
        result.update(json.loads(json_path.read_text()))
    if "printed" in result:
        result["wall_to_summary_s"] = result["printed"]["epoch"] - start_epoch
        result["cpu_to_summary_s"] = result["printed"]["cpu_s"]
    if rc != 0:
        tail = err_path.read_text()[-2000:] if err_path.exists() else ""
        result["error"] = "timed out" if timed_out else f"exit code {rc}: {tail.strip()[-600:]}"
        print(f"    FAILED: {result['error']}", flush=True)
    else:
        print(f"    {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    return result


def hierlm_command() -> list[str]:
    exe = Path(sys.executable).with_name("hierlm")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from hierlm.cli import main; main()"]


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# --------------------------------------------------------------------------- model A


def model_a(workdir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    import hierlm as hl

    csv = workdir / "radon_mn.csv"
    hl.datasets.radon("MN").to_csv(csv, index=False)
    py = sys.executable
    caches = {
        "hierlm": workdir / "cache-a-hierlm",
        "pymc": workdir / "cache-a-pytensor",
        "numpyro": workdir / "cache-a-jax",
    }
    tools = ["hierlm"] if args.skip_peers else ["hierlm", "pymc", "numpyro"]

    def command(tool: str) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        cache = caches[tool]
        if tool == "hierlm":
            env["HIERLM_CACHE_DIR"] = str(cache)
            cmd = [*hierlm_command(), "fit", str(csv), FORMULA_A, "-o", "radon.hlm"]
            return [*cmd, "--force", "--seed", "1"], env
        peer = [py, str(HERE / "peers.py"), tool, "radon", "--data", str(csv), "--json", "{json}"]
        if tool == "pymc":
            env["PYTENSOR_FLAGS"] = f"compiledir={cache / 'pytensor'}"
            env["NUMBA_CACHE_DIR"] = str(cache / "numba")
            return peer, env
        return [*peer, "--jax-cache", str(cache), "--chain-method", args.chain_method], env

    results = []
    for phase in ["cold"] + ["warm"] * args.repeat:
        for tool in tools:
            if phase == "cold":
                fresh(caches[tool])
            cmd, env = command(tool)
            n = sum(r["tool"] == tool and r["phase"] == phase for r in results)
            name = f"A-{tool}-{phase}{n + 1 if args.repeat > 1 and phase == 'warm' else ''}"
            res = run_process(name, cmd, env, workdir, args.timeout_a)
            res.update(tool=tool, phase=phase)
            if tool == "hierlm" and res["rc"] == 0:
                res["wall_to_summary_s"] = res["wall_process_s"]
                res["cpu_to_summary_s"] = res["cpu_process_s"]
                metrics = run_process(
                    f"{name}-metrics",
                    [
                        py,
                        str(HERE / "hierlm_worker.py"),
                        "metrics",
                        "radon.hlm",
                        "--json",
                        "{json}",
                    ],
                    dict(os.environ),
                    workdir,
                    args.timeout_a,
                )
                res.update({k: v for k, v in metrics.items() if k not in res or k == "tool"})
            results.append(res)
    return results


# --------------------------------------------------------------------------- model B


def model_b(workdir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    peer_sizes = [int(float(s)) for s in args.peer_sizes.split(",") if s.strip()]
    py = sys.executable
    cache = fresh(workdir / "cache-b-hierlm")
    results = []

    def hierlm_run(rows: int, phase: str) -> None:
        env = dict(os.environ, HIERLM_CACHE_DIR=str(cache))
        cmd = [py, str(HERE / "hierlm_worker.py"), "synthetic", "--rows", str(rows)]
        res = run_process(
            f"B-hierlm-{rows:.0e}-{phase}", [*cmd, "--json", "{json}"], env, workdir, args.timeout
        )
        res.update(tool="hierlm", phase=phase, rows=rows)
        results.append(res)

    if sizes:
        # The first fit compiles the programs; every later size reuses them from the cache
        # (same group counts, so the same compiled programs).
        hierlm_run(min(sizes), "cold")
    for rows in sizes:
        hierlm_run(rows, "warm")
    if not args.skip_peers:
        for rows in peer_sizes:
            pcache = fresh(workdir / f"cache-b-pytensor-{rows}")
            env = dict(
                os.environ,
                PYTENSOR_FLAGS=f"compiledir={pcache / 'pytensor'}",
                NUMBA_CACHE_DIR=str(pcache / "numba"),
            )
            cmd = [py, str(HERE / "peers.py"), "pymc", "synthetic", "--rows", str(rows)]
            res = run_process(
                f"B-pymc-{rows:.0e}-cold", [*cmd, "--json", "{json}"], env, workdir, args.timeout
            )
            res.update(tool="pymc", phase="cold", rows=rows)
            results.append(res)
    return results


# --------------------------------------------------------------------------- report


def fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if x != x:
        return "—"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def splits(r: dict[str, Any]) -> str:
    if r["tool"] == "hierlm":
        t = r.get("fit_timings") or {}
        return ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in t.items())
    t = r.get("timings") or {}
    return ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in t.items())


def convergence_ok(r: dict[str, Any]) -> bool:
    return (
        r.get("rc") == 0
        and r.get("rhat_max_all", 9) < 1.01
        and r.get("ess_bulk_min_all", 0) >= 400
        and r.get("divergences", 1) == 0
    )


def report_a(results: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    lines = [
        "## Model A: radon, Minnesota",
        "",
        f"`{FORMULA_A}`: 919 rows, 85 counties, 4 chains, 1000 tune + 1000 draws.",
        "",
        (
            "Wall = process start to summary printed, measured by `run.py` around the process "
            "(for hierlm this includes writing the fit file, which the CLI does before printing). "
            "CPU = user + system CPU seconds of the process up to that point. ESS = ArviZ bulk "
            "ESS; R-hat = rank-normalised split R-hat, both over beta, sigma, the county sds, "
            "the correlation, and all 170 county coefficients (beta + county effect)."
        ),
        "",
    ]
    rows = []
    for r in results:
        ok = r.get("rc") == 0
        rows.append(
            [
                TOOL_NAMES[r["tool"]],
                r["phase"],
                fmt(r.get("wall_to_summary_s")) if ok else r.get("error", "failed")[:60],
                fmt(r.get("cpu_to_summary_s")),
                fmt(r.get("load1_at_start"), 1),
                splits(r),
                fmt(r.get("ess_bulk_min_main"), 0),
                fmt(r.get("ess_bulk_min_groups"), 0),
                fmt(r.get("rhat_max_all"), 3),
                fmt(r.get("divergences")),
                fmt(r.get("mean_leapfrog_steps"), 1),
            ]
        )
    lines += table(
        [
            "tool",
            "caches",
            "wall (s)",
            "CPU (s)",
            "load avg",
            "time splits (s)",
            "min ESS (params)",
            "min ESS (170 county coefs)",
            "max R-hat",
            "divergences",
            "leapfrog steps / draw",
        ],
        rows,
    )
    lines.append("")
    verdicts = []
    ratio_rows = []
    for phase in ("cold", "warm"):
        mine = [
            r for r in results if r["tool"] == "hierlm" and r["phase"] == phase and r["rc"] == 0
        ]
        peers = [
            r for r in results if r["tool"] != "hierlm" and r["phase"] == phase and r["rc"] == 0
        ]
        if not mine or not peers:
            continue
        h = min(r["wall_to_summary_s"] for r in mine)
        hc = min(r["cpu_to_summary_s"] for r in mine)
        best = min(peers, key=lambda r: r["wall_to_summary_s"])
        best_cpu = min(peers, key=lambda r: r["cpu_to_summary_s"])
        ratio = best["wall_to_summary_s"] / h
        ratio_cpu = best_cpu["cpu_to_summary_s"] / hc
        # Min bulk ESS (over everything) per wall second, best run of each tool.
        h_eps = max(r["ess_bulk_min_all"] / r["wall_to_summary_s"] for r in mine)
        p_eps = max(r["ess_bulk_min_all"] / r["wall_to_summary_s"] for r in peers)
        ratio_rows.append(
            [
                phase,
                fmt(h),
                f"{TOOL_NAMES[best['tool']]} {fmt(best['wall_to_summary_s'])}",
                f"{ratio:.2f}x",
                f"{ratio_cpu:.2f}x ({TOOL_NAMES[best_cpu['tool']]})",
                f"{h_eps:.0f} vs {p_eps:.0f} ({h_eps / p_eps:.1f}x)",
                "yes" if ratio >= 3 else "no",
            ]
        )
        verdicts.append(
            f"- {phase}: hierlm {'meets' if ratio >= 3 else 'does not meet'} the >= 3x target "
            f"({ratio:.2f}x the fastest peer, {TOOL_NAMES[best['tool']]}, by wall time; "
            f"{ratio_cpu:.2f}x by CPU time)."
        )
    if ratio_rows:
        lines += ["### hierlm vs the fastest peer, same run", ""]
        lines += table(
            [
                "caches",
                "hierlm wall (s)",
                "fastest peer wall (s)",
                "speed-up (wall)",
                "speed-up (CPU)",
                "min ESS per wall second, hierlm vs best peer",
                ">= 3x (wall)?",
            ],
            ratio_rows,
        )
        lines.append("")
    return lines, verdicts


def report_b(results: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    lines = [
        "## Model B: synthetic, three nested levels",
        "",
        (
            f"`{FORMULA_B}`: 2 > 50 > 20 groups (2 + 100 + 2,000), intercept and slope "
            "correlated at every level, sigma = 1, x ~ N(0, 1), fixed seed (`simulate.py`). "
            "4 chains, 1000 tune + 1000 draws. One process per row. "
            "The hierlm 'cold' row compiles its programs into an empty cache; the 'warm' rows "
            "reuse that cache (the group counts, so the programs, are the same at every size)."
        ),
        "",
        (
            "Sampling = hierlm's `fit.info.timings['nuts']`, warm-up included "
            "(nutpie: `nutpie.sample`). Leapfrog steps / draw: mean over the kept draws. "
            "Laplace converged: whether hierlm's Newton search for the mode of θ met its tolerance. "
            "End to end = data frame in memory to fit done, in the process "
            "(hierlm: `hl.Model(...)` + `.fit()`; nutpie: model build + compile + sample). "
            "Ingest = `hl.Model(...)` (design, group tree, sufficient statistics). "
            "ESS / R-hat over beta, sigma, sd_*, corr_* (params) and over every group's "
            "coefficient vector at every level (4,204 coefficients)."
        ),
        "",
    ]
    rows = []
    for r in results:
        ok = r.get("rc") == 0
        if r["tool"] == "hierlm":
            t = r.get("fit_timings") or {}
            sampling = t.get("nuts")
            other = (
                f"ingest {fmt(r.get('model_s'))}, laplace {fmt(t.get('laplace'))}, "
                f"NUTS compile {fmt(t.get('nuts_compile'))}, draws {fmt(t.get('draws'))}"
            )
            e2e = r.get("end_to_end_s")
        else:
            t = r.get("timings") or {}
            sampling = t.get("sample")
            other = f"build {fmt(t.get('build'))}, compile {fmt(t.get('compile'))}"
            e2e = sum(t.get(k, 0.0) for k in ("build", "compile", "sample")) if t else None
        rows.append(
            [
                f"{r['rows']:.0e}",
                TOOL_NAMES[r["tool"]].replace(" (CLI)", ""),
                r["phase"],
                fmt(r.get("rhat_max_all"), 3) if ok else r.get("error", "failed")[:60],
                fmt(r.get("ess_bulk_min_main"), 0),
                fmt(r.get("ess_bulk_min_groups"), 0),
                fmt(r.get("divergences")),
                fmt(r.get("mean_leapfrog_steps"), 1),
                {True: "yes", False: "**no**"}.get(r.get("laplace_converged"), "—"),
                fmt(sampling),
                other if ok else "",
                fmt(e2e),
                fmt(r.get("wall_process_s")),
                fmt(r.get("peak_rss_mb"), 0),
                fmt(r.get("rss_after_data_mb"), 0),
                fmt(r.get("load1_at_start"), 1),
            ]
        )
    lines += table(
        [
            "rows",
            "tool",
            "caches",
            "max R-hat",
            "min ESS (params)",
            "min ESS (group coefs)",
            "div.",
            "leapfrog steps / draw",
            "Laplace converged",
            "sampling (s)",
            "other (s)",
            "end to end (s)",
            "process wall (s)",
            "peak RSS (MB)",
            "RSS with data, before fit (MB)",
            "load avg",
        ],
        rows,
    )
    lines.append("")
    verdicts = []
    warm = [r for r in results if r["tool"] == "hierlm" and r["phase"] == "warm"]
    done = [r for r in warm if r.get("rc") == 0]
    for r in warm:
        if r.get("rc") != 0:
            verdicts.append(f"- {r['rows']:.0e} rows: hierlm did not finish ({r.get('error')}).")
    if done:
        conv = [r for r in done if not convergence_ok(r)]
        verdicts.append(
            "- R-hat < 1.01, min bulk ESS >= 400 and no divergences at every size: "
            + (
                "holds."
                if not conv
                else "fails at " + ", ".join(f"{r['rows']:.0e}" for r in conv) + "."
            )
        )
        nuts = {r["rows"]: r["fit_timings"]["nuts"] for r in done}
        lo, hi = min(nuts), max(nuts)
        if lo != hi:
            ratio = nuts[hi] / nuts[lo]
            spread = max(nuts.values()) / min(nuts.values())
            verdicts.append(
                f"- Sampling time flat in rows (within 25% from {lo:.0e} to {hi:.0e}): "
                f"{nuts[lo]:.1f} s -> {nuts[hi]:.1f} s, ratio {ratio:.2f} "
                f"(max/min over sizes {spread:.2f}): "
                + ("holds." if abs(ratio - 1) <= 0.25 else "does not hold.")
            )
        bad = [r for r in done if r.get("laplace_converged") is False]
        if bad:
            verdicts.append(
                "- hierlm's Laplace step (Newton search for the mode of θ) did not converge at "
                + ", ".join(f"{r['rows']:.0e}" for r in bad)
                + " rows; NUTS still converged, but the warm-up starts from, and is "
                "preconditioned at, a point that is not the mode."
            )
        big = [r for r in done if r["rows"] >= 10**7]
        for r in big:
            e2e, rss = r["end_to_end_s"], r["peak_rss_mb"]
            verdicts.append(
                f"- {r['rows']:.0e} rows end to end under 60 s: {e2e:.1f} s, "
                + ("holds" if e2e < 60 else "does not hold")
                + f"; peak RSS under 2 GB (2048 MiB): {rss:.0f} MiB, "
                + ("holds." if rss < 2048 else "does not hold.")
            )
    return lines, verdicts


def write_report(
    path: Path,
    info: dict[str, Any],
    res_a: list[dict[str, Any]],
    res_b: list[dict[str, Any]],
    started: dt.datetime,
    loads: tuple[tuple[float, ...], tuple[float, ...]],
    argv: list[str],
    chain_method: str,
    finished: dt.datetime,
) -> None:
    v = info["versions"]
    lines = [
        "# hierlm benchmarks",
        "",
        (
            f"Generated by `python benchmarks/{Path(argv[0]).name} {' '.join(argv[1:])}`, "
            f"started {started.strftime('%Y-%m-%d %H:%M %Z').strip()} and finished "
            f"{finished.strftime('%Y-%m-%d %H:%M %Z').strip()}."
        ),
        "",
        "## Machine",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} logical cores"
        + (f" ({info['affinity']} usable)" if info.get("affinity") else ""),
        f"- RAM: {info['ram_gb']:.1f} GiB",
        f"- OS: {info['os']}",
        f"- Python {info['python']}",
        "- " + ", ".join(f"{k} {val}" for k, val in v.items()),
        (
            f"- Load average (1, 5, 15 min) at start: {', '.join(f'{x:.2f}' for x in loads[0])}; "
            f"at end: {', '.join(f'{x:.2f}' for x in loads[1])}. "
            "Each table row also gives the 1-minute load average when its process started: "
            "above the core count the machine was shared with other work, which inflates wall "
            "times; CPU times are the steadier comparison."
        ),
        "",
        (
            "Settings: hierlm defaults (float64; on CPU one device per chain, chains in parallel); PyMC + nutpie defaults "
            "(numba backend, float64, chains on threads); NumPyro NUTS with "
            f'`chain_method="{chain_method}"` and its default float32. All three use the same '
            "priors (the ones hierlm prints). Cold = empty compile caches (`HIERLM_CACHE_DIR`; "
            "`PYTENSOR_FLAGS=compiledir=...` and `NUMBA_CACHE_DIR`; the JAX persistent cache "
            "for NumPyro); warm = the same caches on a second run. The OS file cache is warm "
            "in both."
        ),
        "",
    ]
    verdicts: list[str] = []
    if res_a:
        a_lines, a_verdicts = report_a(res_a)
        lines += a_lines
        verdicts += a_verdicts
    if res_b:
        b_lines, b_verdicts = report_b(res_b)
        lines += b_lines
        verdicts += b_verdicts
    lines += ["## Targets", "", *verdicts, ""]
    lines += [
        (
            "Data at scale (1e6-1e8 rows from Parquet, streamed and in memory; 100,000 leaves over "
            "five levels) is measured by `benchmarks/scale.py`, in `SCALE.md`."
        ),
        "",
    ]
    path.write_text("\n".join(lines))


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description="hierlm vs PyMC + nutpie vs NumPyro.")
    parser.add_argument("--quick", action="store_true", help="model A only")
    parser.add_argument("--sizes", default="1e4,1e5,1e6,1e7", help="model B sizes (hierlm)")
    parser.add_argument("--peer-sizes", default="1e4", help="model B sizes for PyMC + nutpie")
    parser.add_argument("--skip-peers", action="store_true", help="hierlm only")
    parser.add_argument("--repeat", type=int, default=1, help="warm runs per tool (model A)")
    parser.add_argument("--chain-method", default="vectorized", help="NumPyro chain_method")
    parser.add_argument("--timeout", type=float, default=300, help="per process, model B (s)")
    parser.add_argument("--timeout-a", type=float, default=600, help="per process, model A (s)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--workdir", type=Path, help="keep logs and caches here")
    parser.add_argument(
        "--report-from",
        type=Path,
        help="only rewrite the report from the results.json of an earlier --workdir",
    )
    args = parser.parse_args()

    if args.report_from:
        saved = json.loads((args.report_from / "results.json").read_text())
        meta = saved["meta"]
        write_report(
            args.out,
            meta["info"],
            saved["a"],
            saved["b"],
            dt.datetime.fromisoformat(meta["started"]),
            (tuple(meta["load_start"]), tuple(meta["load_end"])),
            meta["argv"],
            meta["chain_method"],
            finished=dt.datetime.fromisoformat(meta["finished"]),
        )
        print(f"wrote {args.out}")
        return

    started = dt.datetime.now().astimezone()
    load_start = os.getloadavg()
    info = machine_info()
    print(f"{info['cpu']}, {info['cores']} cores, {info['ram_gb']:.1f} GiB", flush=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hierlm-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"logs and caches in {workdir}", flush=True)
    res_a = model_a(workdir, args)
    res_b = [] if args.quick else model_b(workdir, args)
    finished = dt.datetime.now().astimezone()
    load_end = os.getloadavg()
    meta = {
        "info": info,
        "started": started.isoformat(),
        "finished": finished.isoformat(),
        "load_start": load_start,
        "load_end": load_end,
        "argv": sys.argv,
        "chain_method": args.chain_method,
    }
    (workdir / "results.json").write_text(
        json.dumps({"meta": meta, "a": res_a, "b": res_b}, indent=2)
    )
    write_report(
        args.out,
        info,
        res_a,
        res_b,
        started,
        (load_start, load_end),
        sys.argv,
        args.chain_method,
        finished=finished,
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
