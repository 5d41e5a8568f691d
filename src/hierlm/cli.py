"""The ``hierlm`` command line: thin wrappers over the Python API."""

from __future__ import annotations

import functools
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape

from .errors import ConvergenceWarning, HierlmError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Exact Bayesian hierarchical linear regression.\n\n"
    "Exit codes: 0 done; 1 an internal error (a bug: rerun with --debug and report it); "
    "2 bad input or usage; 3 --strict and the fit has a diagnostic finding; "
    "130 interrupted (Ctrl-C); 143 terminated (SIGTERM).",
)
out = Console(width=None if Console().is_terminal else 120)
err = Console(stderr=True)


class ExitCode(IntEnum):
    """The command's exit status, one per kind of ending."""

    OK = 0
    BUG = 1
    BAD_INPUT = 2
    FINDINGS = 3
    INTERRUPTED = 130
    TERMINATED = 143


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so files being written are cleaned up."""


_debug = False


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="On an error, also show the full Python traceback."),
    ] = False,
) -> None:
    global _debug
    _debug = debug


def _say(label: str, text: str) -> None:
    err.print(f"[bold red]{label}:[/bold red] {escape(text)}", highlight=False, soft_wrap=True)


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """Turn every way a command can end into an exit code and a short message; the
    traceback only with --debug."""
    try:
        yield
    except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException, click.Abort):
        raise
    except HierlmError as exc:
        if _debug:
            err.print(traceback.format_exc(), markup=False, highlight=False)
        _say("error", str(exc))
        raise typer.Exit(ExitCode.BAD_INPUT) from None
    except KeyboardInterrupt:
        _say("interrupted", "stopped before it finished; no partial output file was left.")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except Terminated:
        _say("terminated", "stopped by SIGTERM; no partial output file was left.")
        raise typer.Exit(ExitCode.TERMINATED) from None
    except Exception as exc:
        if _debug:
            err.print(traceback.format_exc(), markup=False, highlight=False)
        _say(
            "internal error",
            f"{type(exc).__name__}: {exc}\nThis is a bug in hierlm, not a problem with your "
            "input. Rerun the command with --debug (hierlm --debug <command> ...) to see the "
            "traceback, and report it with that output.",
        )
        raise typer.Exit(ExitCode.BUG) from None


def _guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command under :func:`_mapped_errors`."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        with _mapped_errors():
            return command(*args, **kwargs)

    return run


def _strict_exit(findings: list[str]) -> None:
    """Under --strict, end with :attr:`ExitCode.FINDINGS` when there is any finding."""
    if findings:
        for text in findings:
            _say("strict", text)
        raise typer.Exit(ExitCode.FINDINGS)


def _findings(fit: Any) -> list[str]:
    return [str(f) for f in fit.problems()]


def _read_table(path: Path):
    import pandas as pd

    from .errors import DataError

    if not path.exists():
        raise DataError(f"no data file at {path}")
    suffix = "".join(path.suffixes).lower()
    try:
        if suffix.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if suffix.endswith((".csv", ".csv.gz", ".txt")):
            return pd.read_csv(path)
        if suffix.endswith((".tsv", ".tsv.gz")):
            return pd.read_csv(path, sep="\t")
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    raise DataError(f"cannot tell the format of {path}; use a .csv, .tsv or .parquet file")


_IN_MEMORY_BYTES = 256 * 2**20


def _open_data(path: Path, sql: str | None, table: str | None):
    """A small single file is read with pandas (no DuckDB import: a tenth of a second per
    command, measured); globs, databases and large files go through DuckDB, which streams
    them."""
    from .source import open_source

    plain = sql is None and table is None and not any(ch in str(path) for ch in "*?[")
    if plain and path.exists() and path.stat().st_size <= _IN_MEMORY_BYTES:
        suffix = "".join(path.suffixes).lower()
        if suffix.endswith((".csv", ".csv.gz", ".txt", ".tsv", ".tsv.gz", ".parquet", ".pq")):
            return _read_table(path)
    return open_source(path, sql=sql, table=table)


@contextmanager
def _dask_client(address: str | None) -> Iterator[None]:
    if address is None:
        yield
        return
    from .dask_ingest import connect

    with connect(address):
        yield


@app.command()
@_guarded
def fit(
    data: Annotated[
        Path,
        typer.Argument(
            help="CSV, TSV or Parquet file or glob (data/*.parquet), or a DuckDB database "
            "with --table or --sql. Large data is streamed, not loaded."
        ),
    ],
    formula: Annotated[
        str, typer.Argument(help='e.g. "log_radon ~ floor + (1 + floor | state/county)"')
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the fit.")],
    prior: Annotated[
        list[str] | None, typer.Option("--prior", help='e.g. "sd(county) ~ halfnormal(1)"')
    ] = None,
    family: Annotated[
        str,
        typer.Option(help="gaussian, lognormal, student_t, bernoulli, binomial or poisson."),
    ] = "gaussian",
    pooling: Annotated[str, typer.Option(help="partial, none or complete.")] = "partial",
    engine: Annotated[
        str, typer.Option(help="auto (collapsed where it applies), collapsed or full.")
    ] = "auto",
    method: Annotated[
        str, typer.Option(help="nuts, or for comparison map, advi or metropolis.")
    ] = "nuts",
    parameterization: Annotated[
        str, typer.Option(help="Full engine: auto, centered or noncentered.")
    ] = "auto",
    chains: int = 4,
    draws: int = 1000,
    tune: int = 1000,
    seed: int = 0,
    target_accept: Annotated[float, typer.Option(help="NUTS target acceptance.")] = 0.8,
    na: Annotated[str, typer.Option(help="drop or error, for rows with missing values.")] = "drop",
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or summary.")] = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Exit with code 3 when the diagnostics find anything."),
    ] = False,
    sql: Annotated[
        str | None, typer.Option(help="Query of the DuckDB database DATA to fit to.")
    ] = None,
    table_name: Annotated[
        str | None, typer.Option("--table", help="Table of the DuckDB database DATA.")
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            metavar="ADDRESS",
            help="A Dask scheduler (tcp://host:port): its workers read DATA (a path they "
            "see too) and reduce it to the model's statistics.",
        ),
    ] = None,
) -> None:
    """Fit a model to a table and save it."""
    from .dask_ingest import read_dask
    from .model import Model
    from .present import render_summary
    from .priors import Priors

    if output.exists() and not force:
        raise HierlmError(f"{output} exists; pass --force to overwrite it")
    if na not in ("drop", "error"):
        raise HierlmError(f"--na must be 'drop' or 'error', got {na!r}")
    priors = Priors.from_strings(prior or [])
    with _dask_client(dask):
        table = read_dask(str(data)) if dask else _open_data(data, sql, table_name)
        model = Model(
            formula,
            table,
            family=family,
            priors=priors,
            pooling=pooling,
            na=na,  # type: ignore[arg-type]
            engine=engine,
            parameterization=parameterization,
        )
    result = model.fit(
        chains=chains,
        draws=draws,
        tune=tune,
        seed=seed,
        target_accept=target_accept,
        progress=not quiet and method == "nuts",
        method=method,
    )
    result.save(output)
    if not quiet:
        render_summary(result, out)
        out.print(f"saved to {output}")
    if strict:
        _strict_exit(_findings(result))


@app.command()
@_guarded
def summary(
    fit_path: Annotated[Path, typer.Argument(metavar="FIT", help="A file written by hierlm fit.")],
    groups: Annotated[
        bool, typer.Option("--groups", help="Also show every group's coefficients.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Exit with code 3 when the diagnostics find anything."),
    ] = False,
) -> None:
    """Print the summary of a saved fit."""
    from .fit import load
    from .present import render_summary

    result = load(fit_path)
    render_summary(result, out, groups=groups)
    if strict:
        _strict_exit(_findings(result))


def _write_table(frame, path: Path, force: bool) -> None:
    """Write a table to CSV/TSV/Parquet through a temporary file and a rename, so an
    interrupted or failed write never leaves a partial file."""
    import tempfile

    if path.exists() and not force:
        raise HierlmError(f"{path} exists; pass --force to overwrite it")
    suffix = "".join(path.suffixes).lower()
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", suffix=".part")
    os.close(fd)
    try:
        if suffix.endswith((".parquet", ".pq")):
            frame.to_parquet(tmp, index=False)
        else:
            sep = "\t" if suffix.endswith((".tsv", ".tsv.gz")) else ","
            frame.to_csv(tmp, sep=sep, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@app.command()
@_guarded
def predict(
    fit_path: Annotated[Path, typer.Argument(metavar="FIT", help="A file written by hierlm fit.")],
    data: Annotated[Path, typer.Argument(help="New rows: CSV, TSV or Parquet.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the predictions.")],
    kind: Annotated[str, typer.Option(help="mean, response or link.")] = "mean",
    new_groups: Annotated[
        str, typer.Option(help="sample, population or error, for groups not in the fit.")
    ] = "sample",
    hdi: Annotated[float, typer.Option(help="Mass of the interval.")] = 0.9,
    draws: Annotated[
        Path | None,
        typer.Option("--draws", help="Also write the raw predictive draws (rows x draws) here."),
    ] = None,
    n_draws: Annotated[
        int | None, typer.Option("--n-draws", help="Use this many posterior draws.")
    ] = None,
    seed: int = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
) -> None:
    """Predict for new rows (unseen groups too) and write them with mean, sd and interval."""
    import pandas as pd

    from .fit import load
    from .predict import summarise_draws

    for path in (output, draws):
        if path is not None and path.exists() and not force:
            raise HierlmError(f"{path} exists; pass --force to overwrite it")
    if not 0 < hdi < 1:
        raise HierlmError(f"--hdi must be in (0, 1), got {hdi!r}")
    result = load(fit_path)
    table = _read_table(data)
    raw = None
    if draws is None:
        # Summaries only: predict() works through the rows in memory-bounded chunks.
        summary = result.predict(table, kind, new_groups, hdi, seed, n_draws)
        counts = summary.attrs.get("new_groups", {})
    else:
        pred = result.predict_draws(table, kind, new_groups, seed, n_draws)
        summary = summarise_draws(pred, hdi, table.index)
        counts = pred.new_groups
        raw = pd.DataFrame(
            pred.draws.T,
            index=table.index,
            columns=[f"draw_{i}" for i in range(len(pred.draws))],
        )
    if set(summary.columns) & set(table.columns):
        # The input already has such columns (an earlier output, say): keep both.
        summary = summary.add_prefix("pred_")
    _write_table(pd.concat([table, summary], axis=1), output, force)
    if draws is not None and raw is not None:
        _write_table(raw, draws, force)
    new = ", ".join(f"{n} new {level}" for level, n in counts.items())
    out.print(f"{len(table):,} predictions written to {output}" + (f" ({new})" if new else ""))


@app.command()
@_guarded
def compare(
    fit_path: Annotated[Path, typer.Argument(metavar="FIT", help="A file written by hierlm fit.")],
    level: Annotated[
        str | None, typer.Option(help="Level to leave out group by group (default the deepest).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="The rows, when the fit did not keep them (over 1e6).")
    ] = None,
) -> None:
    """Refit with pooling partial, none and complete; compare by LOO and leave-one-group-out."""
    from .fit import load
    from .present import render_comparison

    result = load(fit_path)
    table = _read_table(data) if data is not None else None
    comparison = result.compare_pooling(level=level, data=table)
    render_comparison(comparison, out)


@app.command()
@_guarded
def check(
    fit_path: Annotated[Path, typer.Argument(metavar="FIT", help="A file written by hierlm fit.")],
    draws: Annotated[int, typer.Option(help="Replicated data sets.")] = 500,
    sensitivity: Annotated[
        bool,
        typer.Option("--sensitivity", help="Also refit with each prior class 2x wider/narrower."),
    ] = False,
    data: Annotated[
        Path | None, typer.Option(help="The rows, when the fit did not keep them (over 1e6).")
    ] = None,
    seed: int = 0,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit with code 3 on any diagnostic finding or extreme predictive p-value.",
        ),
    ] = False,
) -> None:
    """Posterior predictive check (and prior sensitivity): could the data come from the fit?"""
    from .fit import load
    from .present import render_check, render_sensitivity

    result = load(fit_path)
    table = _read_table(data) if data is not None else None
    checked = result.ppc(data=table, draws=draws, seed=seed)
    render_check(checked, out)
    found = checked.extreme()
    if sensitivity:
        shifts = result.sensitivity(data=table)
        render_sensitivity(shifts, out)
        found += shifts.findings
    if strict:
        _strict_exit(_findings(result) + found)


@app.command()
@_guarded
def report(
    fit_path: Annotated[Path, typer.Argument(metavar="FIT", help="A file written by hierlm fit.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the HTML.")],
    compare: Annotated[
        bool, typer.Option("--compare", help="Also refit with every pooling mode and compare.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT.")] = False,
    seed: int = 0,
) -> None:
    """Write a self-contained HTML report of a fit."""
    from .fit import load

    if output.exists() and not force:
        raise HierlmError(f"{output} exists; pass --force to overwrite it")
    result = load(fit_path)
    comparison = result.compare_pooling() if compare else None
    result.report(output, comparison=comparison, seed=seed)
    out.print(f"report written to {output}")


@app.command()
@_guarded
def demo(
    seed: int = 0,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Also save the fit here.")
    ] = None,
) -> None:
    """Fit log_radon ~ floor + (1 + floor | state/county) on the bundled radon data."""
    from . import datasets
    from .model import Model
    from .present import render_summary

    formula = "log_radon ~ floor + (1 + floor | state/county)"
    out.print(f"Bundled radon survey (Gelman & Hill), all states: {formula}")
    model = Model(formula, datasets.radon())
    result = model.fit(seed=seed, progress=True)
    if output is not None:
        result.save(output)
    render_summary(result, out)


def _raise_terminated(signum: int, frame: Any) -> None:
    # Python runs this in the main thread between bytecodes; the sampler returns to Python
    # after every chunk of iterations, so the cleanup of files being written runs promptly.
    raise Terminated


def main() -> None:
    """Entry point of the ``hierlm`` command.

    Once the command is done, every file written and closed and its output flushed, the
    process ends without the interpreter's teardown: with JAX, XLA and ArviZ loaded that
    teardown takes about a second, a fifth of a warm radon fit (measured).
    """
    # This process only runs hierlm, which uses none of ArviZ's numba paths; with numba
    # installed (PyMC users have it), ArviZ's import would compile numba kernels, half a
    # second per command (measured). Blocking the import makes ArviZ use its NumPy paths.
    sys.modules.setdefault("numba", None)  # type: ignore[arg-type]
    # The summary prints every finding, with its fix; the warning would repeat them.
    warnings.simplefilter("ignore", ConvergenceWarning)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        app()
        code: int | str | None = 0
    except SystemExit as exc:
        code = exc.code
    if isinstance(code, str):
        err.print(code, highlight=False, markup=False)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
