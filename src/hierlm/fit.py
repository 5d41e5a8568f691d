"""A fitted model: the posterior, its summary and diagnostics, and saving to one file."""

from __future__ import annotations

import functools
import json
import os
import pickle
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .assemble import PriorStatement
from .design import Design
from .diagnostics import Convergence, Finding, convergence, diagnose, divergences_by_level
from .errors import HierlmError
from .parameterization import LevelChoice
from .suffstats import SuffStats
from .summary import posterior_table

if TYPE_CHECKING:
    import arviz as az
    import numpy as np

__all__ = ["FORMAT_VERSION", "KEEP_DATA_ROWS", "Fit", "FitInfo", "library_versions", "load"]

FORMAT_VERSION = 4

KEEP_DATA_ROWS = 1_000_000
"""A fit keeps (and saves) its rows up to this many, for checks, comparisons and refits."""


@dataclass(frozen=True)
class FitInfo:
    """How the fit was run, and what happened to the data."""

    chains: int
    draws: int
    tune: int
    seed: int
    target_accept: float
    max_tree_depth: int
    n_rows: int
    n_dropped: int
    dropped_by_column: dict[str, int]
    priors: tuple[PriorStatement, ...]
    timings: dict[str, float] = field(default_factory=dict)
    mode_converged: bool = True
    mode_iterations: int = 0
    engine: str = "collapsed"
    parameterization: tuple[LevelChoice, ...] = ()
    method: str = "nuts"
    options: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    dropped_groups: dict[str, int] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """The versions of hierlm and of the libraries that decide its draws."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    out = {"hierlm": __version__}
    for name in ("jax", "jaxlib", "numpyro", "arviz"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass(frozen=True)
class Fit:
    """The result of :meth:`hierlm.Model.fit`.

    Attributes
    ----------
    idata
        ArviZ InferenceData (see :mod:`hierlm.posterior` for the variable contract).
    design
        The frozen design: encoding, group tree, scaling.
    stats
        The standardised leaf statistics the fit used.
    info
        Sampler settings, row counts, priors and timings.
    data
        The rows the model was fitted to (the columns it reads, after dropping missing
        values), kept for checks and refits when there are at most
        :data:`KEEP_DATA_ROWS` of them; otherwise None, and the methods that
        need rows take them as ``data``.
    pooling_factors
        Per level, each group's pooling factor for the coefficients that vary there
        (G_l, q_l), the posterior mean over all draws (collapsed Gaussian fits; None
        otherwise). :meth:`pooling` reports them.
    """

    idata: az.InferenceData
    design: Design
    stats: SuffStats
    info: FitInfo
    data: pd.DataFrame | None = None
    pooling_factors: tuple[np.ndarray, ...] | None = None

    @property
    def _posterior(self) -> Any:
        return self.idata["posterior"]

    @property
    def spec(self):
        """The model specification."""
        return self.design.spec

    @property
    def plot(self) -> Any:
        """The fit's plots (:class:`hierlm.plots.FitPlots`): ``fit.plot.trace()``,
        ``forest(level)``, ``shrinkage()``, ``fitted_lines(x)``, ``ppc()``,
        ``funnel(level)`` and ``pair()``, each returning a matplotlib Figure."""
        from .plots import FitPlots

        return FitPlots(self)

    def report(
        self,
        path: str | os.PathLike[str],
        comparison: Any = None,
        overwrite: bool = True,
        seed: int = 0,
    ) -> Path:
        """Write a self-contained HTML report (images embedded, no network needed): data
        and hierarchy, model and priors, diagnostics, parameter tables, every plot, the
        posterior predictive check, variance decomposition and pooling, and ``comparison``
        (a :meth:`compare_pooling` result) when given. Written atomically."""
        from .report import write_report

        return write_report(self, path, comparison, overwrite, seed)

    def _repr_html_(self) -> str:
        """The summary as HTML, for notebooks."""
        from .display import fit_html

        return fit_html(self)

    def draws_of(self, name: str, index: Any = None) -> Any:
        """A posterior variable's draws with chains and draws flattened into one leading
        axis, optionally only those at ``index``."""
        a = self._posterior[name].values
        flat = a.reshape(-1, *a.shape[2:])
        return flat if index is None else flat[index]

    def main_vars(self) -> list[str]:
        """Population and variance parameters (not the per-group coefficients)."""
        return [v for v in self._posterior.data_vars if not _is_group_var(str(v), self.design)]

    def summary(
        self, var_names: list[str] | None = None, groups: bool = False, hdi_prob: float = 0.9
    ) -> pd.DataFrame:
        """Posterior table: mean, sd, HDI, R-hat and bulk/tail ESS.

        Parameters
        ----------
        var_names
            Variables to include; default the population and variance parameters, plus the
            group coefficients when ``groups`` is true.
        groups
            Include ``beta_<level>`` for every group.
        hdi_prob
            Mass of the highest-density interval.
        """
        if var_names is None:
            var_names = list(self._posterior.data_vars) if groups else self.main_vars()
        table = posterior_table(self._posterior, var_names, hdi_prob)
        return _drop_fixed_entries(table)

    @functools.cached_property
    def _convergence_table(self) -> pd.DataFrame:
        # R-hat and ESS of the main parameters: the warning after a fit, the summary's
        # line and its findings all read them (computed once, 0.1 s for radon).
        return _drop_fixed_entries(posterior_table(self._posterior, self.main_vars(), stats=False))

    def convergence(self) -> Convergence:
        """The largest R-hat and smallest bulk and tail ESS over the population and variance
        parameters, and the number of divergent draws: shown in every summary, findings or
        not."""
        table = self._convergence_table
        return convergence(table, self.idata["sample_stats"]["diverging"].values)

    def problems(self) -> list[Finding]:
        """The findings of :meth:`diagnose` that need action (empty for a clean fit)."""
        return [f for f in self.diagnose() if f.severity != "ok"]

    def diagnose(self) -> list[Finding]:
        """Convergence findings in plain words, each with a fix."""
        table = self._convergence_table
        ss = self.idata["sample_stats"]
        findings = diagnose(
            table, ss["diverging"].values, ss["tree_depth"].values, self.info.max_tree_depth
        )
        sds, sd_names, mixing = {}, {}, {}
        for lv in self.design.levels:
            if f"sd_{lv.name}" not in self._posterior:
                continue
            da = self._posterior[f"sd_{lv.name}"]
            sds[lv.name] = da.values
            sd_names[lv.name] = [f"sd_{lv.name}[{c}]" for c in da.coords[f"coef_{lv.name}"].values]
            rows = table[table.index.str.startswith(f"sd_{lv.name}[")]
            mixing[lv.name] = (float(rows["r_hat"].max()), float(rows["ess_bulk"].min()))
        centered = {c.level: c.centered for c in self.info.parameterization}
        findings += divergences_by_level(sds, ss["diverging"].values, centered, mixing, sd_names)
        first: list[Finding] = []
        if not self.info.mode_converged:
            first.append(
                Finding(
                    "warning",
                    "The search for the posterior mode of the variance parameters stopped after "
                    f"{self.info.mode_iterations} Newton steps without converging. NUTS was "
                    "preconditioned there anyway: the draws are valid when R-hat and ESS are fine, "
                    "but sampling may have been slow.",
                    "check for a variance parameter the data barely identify (a level with very "
                    "few groups), or give it a tighter prior.",
                )
            )
        if self.info.method in ("map", "advi"):
            first.append(
                Finding(
                    "warning",
                    f"These draws come from an approximation (method={self.info.method!r}), so "
                    "R-hat and ESS only describe its independent draws: they cannot show how "
                    "far the approximation is from the posterior.",
                    "fit with method='nuts' to get the posterior itself, or to check this one.",
                )
            )
        if first and all(f.severity == "ok" for f in findings):
            findings = []  # "no problems found" no longer holds
        return first + findings

    def predict(
        self,
        new_data: Any,
        kind: str = "mean",
        new_groups: str = "sample",
        hdi: float = 0.9,
        seed: int = 0,
        draws: int | None = None,
    ) -> pd.DataFrame:
        """Predict for new rows, including groups the fit never saw.

        Parameters
        ----------
        new_data
            pandas or polars table with the predictors and grouping columns (and the
            trials, offset or standard-error column where the model has one).
        kind
            ``"mean"``: the expected response given the parameters (for lognormal
            ``exp(η + σ²/2)``; for binomial ``trials × p``); ``"response"``: draws of new
            observations (posterior predictive); ``"link"``: the linear predictor η.
        new_groups
            For a row whose group is not in the fit: ``"sample"`` (default) starts from its
            deepest known ancestor's coefficients (the population for a new top-level group)
            and adds an independent draw from each lower level's distribution, one per new
            group and posterior draw; ``"population"`` uses the known ancestor's
            coefficients as they are; ``"error"`` refuses such rows.
        hdi
            Mass of the highest-density interval.
        seed
            Seed for the new groups' and the responses' draws.
        draws
            Use this many posterior draws (a random subset; default all).

        Returns
        -------
        DataFrame
            Indexed like ``new_data``: ``mean``, ``sd``, the HDI bounds, and
            ``known_level``, the deepest level of each row's path found in the fit
            (``"population"`` for a new top-level group; one ``known_<level>`` column per
            crossed grouping).
        """
        from .predict import predict

        return predict(self, new_data, kind, new_groups, hdi, seed, draws)  # type: ignore[arg-type]

    def predict_draws(
        self,
        new_data: Any,
        kind: str = "mean",
        new_groups: str = "sample",
        seed: int = 0,
        draws: int | None = None,
    ) -> Any:
        """The raw predictive draws behind :meth:`predict`: a
        :class:`hierlm.predict.Predictions` with ``draws`` of shape (draws, rows)."""
        from .predict import predict_draws

        return predict_draws(self, new_data, kind, new_groups, seed, draws)  # type: ignore[arg-type]

    def ppc(self, data: Any = None, draws: int | None = 500, seed: int = 0) -> Any:
        """Posterior predictive check: replicated data sets and test statistics.

        Parameters
        ----------
        data
            Rows to replicate; default the rows the model was fitted to.
        draws
            Replicated data sets (a random subset of the posterior draws; None for all),
            at most 50 million values in all (fewer replicates for very many rows).
        seed
            Seed for the replicates.

        Returns
        -------
        hierlm.check.PredictiveCheck
            ``replicated`` (draws, rows) and ``statistics``: mean, sd, min, max and the sd
            of the group means at every level, each with its posterior predictive p-value.
        """
        from .check import frame_for, predictive_check

        return predictive_check(self, frame_for(self, data), draws, seed)

    def compare_pooling(
        self, level: str | None = None, data: Any = None, **fit_settings: Any
    ) -> Any:
        """Refit this model with pooling ``partial``, ``none`` and ``complete`` and compare
        them by PSIS-LOO over rows and by leave-one-group-out over ``level``.

        Parameters
        ----------
        level
            The level whose groups are left out one at a time (default the deepest).
        data
            The rows; default the rows the model was fitted to.
        **fit_settings
            Passed to :meth:`hierlm.Model.fit` for the refits (default this fit's chains,
            draws, tune and seed); when given, this fit is refitted too.

        Returns
        -------
        hierlm.compare.Comparison
            ``table`` (elpd, differences to the best and their SEs, Pareto k̂ counts),
            ``logo_method`` (which route LOGO took), ``warnings`` and ``fits``.
        """
        from .check import frame_for
        from .compare import compare_pooling

        return compare_pooling(self, frame_for(self, data), level, fit_settings or None)

    def pooling(self) -> Any:
        """Variance decomposition and pooling factors.

        Returns
        -------
        hierlm.pooling.Pooling
            ``levels``: per level and varying coefficient, the posterior mean sd and, for
            the intercept, its share of the variance (ICC); ``groups``: per group, its rows
            and its pooling factor per varying coefficient (0: its own data decide; 1:
            pooled completely into its parent).
        """
        from .pooling import pooling

        return pooling(self)

    def sensitivity(self, data: Any = None, threshold: float = 0.25, **fit_settings: Any) -> Any:
        """Prior sensitivity: refit with each prior class 2x wider and 2x narrower.

        Classes are the population slopes, the intercept, the group sds, the residual sd
        and the correlations (those the model has), defaults included.

        Returns
        -------
        hierlm.sensitivity.Sensitivity
            ``table`` of posterior-mean shifts in posterior sds, and ``findings``: every
            parameter whose mean moved by more than ``threshold`` sds, in plain words.
        """
        from .check import frame_for
        from .sensitivity import sensitivity

        return sensitivity(self, frame_for(self, data), threshold=threshold, settings=fit_settings)

    def notes(self) -> list[str]:
        """What the model did with the data: dropped rows, repeated labels."""
        out = []
        if self.info.method != "nuts":
            out.append(_METHOD_NOTES[self.info.method])
        if self.info.n_dropped:
            cols = ", ".join(f"{c}: {n}" for c, n in self.info.dropped_by_column.items())
            out.append(f"{self.info.n_dropped} rows with missing values were dropped ({cols}).")
            if self.info.dropped_groups:
                groups = ", ".join(f"{n} in {lv}" for lv, n in self.info.dropped_groups.items())
                out.append(f"Groups that lost rows: {groups}.")
        repeated = [rep for tree in self.design.trees for rep in tree.repeated]
        out += [str(rep) for rep in repeated[:10]]
        if len(repeated) > 10:
            out.append(f"... and {len(repeated) - 10} more repeated labels.")
        return out

    def save(self, path: str | os.PathLike[str], overwrite: bool = True) -> Path:
        """Write the fit to one file (a zip of the InferenceData as netCDF and the design).

        The file is written to a temporary name and moved into place, so a failure never
        leaves a half-written file.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise HierlmError(f"{path} exists; pass overwrite=True (--force) to replace it")
        with tempfile.TemporaryDirectory() as tmp:
            nc = Path(tmp) / "idata.nc"
            # Uncompressed: draws barely compress (measured 2%) and compressing cost a
            # tenth of a second per fit.
            self.idata.to_netcdf(str(nc), compress=False)
            # The rows go in the pickle too: writing them as Parquet imported pyarrow, a
            # sixth of a second per saved fit (measured).
            state = pickle.dumps(
                {
                    "design": self.design,
                    "stats": self.stats,
                    "info": self.info,
                    "data": self.data,
                    "pooling_factors": self.pooling_factors,
                }
            )
            meta = {
                "format": "hierlm-fit",
                "format_version": FORMAT_VERSION,
                "formula": self.spec.formula,
                "seed": self.info.seed,
                "versions": self.info.versions,
            }
            fd, tmp_out = tempfile.mkstemp(
                dir=path.parent if str(path.parent) else ".", suffix=".part"
            )
            os.close(fd)
            try:
                with zipfile.ZipFile(tmp_out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                    zf.writestr("meta.json", json.dumps(meta))
                    zf.write(nc, "idata.nc", compress_type=zipfile.ZIP_STORED)
                    zf.writestr("state.pkl", state)
                os.replace(tmp_out, path)
            except BaseException:
                Path(tmp_out).unlink(missing_ok=True)
                raise
        return path


_METHOD_NOTES = {
    "map": (
        "method='map': the variance parameters are at their marginal posterior mode, with "
        "uncertainty from a Gaussian (Laplace) approximation there; the group coefficients "
        "are drawn exactly given each draw. Intervals for sds near zero or skewed are "
        "approximate; use NUTS for the exact posterior."
    ),
    "advi": (
        "method='advi': draws come from a mean-field normal approximation fitted by "
        "variational inference. Its intervals are too narrow wherever parameters are "
        "correlated (a level's sd and its groups), and R-hat and ESS describe the "
        "approximation's independent draws, not convergence; use NUTS for the posterior."
    ),
    "metropolis": (
        "method='metropolis': random-walk Metropolis, shown for comparison. Its draws are "
        "strongly autocorrelated; trust them only as far as R-hat and ESS allow."
    ),
}


def load(path: str | os.PathLike[str]) -> Fit:
    """Load a fit written by :meth:`Fit.save`.

    Only load files you trust: the design is stored with pickle.
    """
    path = Path(path)
    if not path.exists():
        raise HierlmError(f"no fit file at {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("meta.json"))
            if not isinstance(meta, dict) or meta.get("format") != "hierlm-fit":
                raise HierlmError(f"{path} is not a hierlm fit file")
            _check_format_version(path, meta.get("format_version"))
            nc_bytes = zf.read("idata.nc")
            state = pickle.loads(zf.read("state.pkl"))
    except HierlmError:
        raise
    except (
        zipfile.BadZipFile,
        KeyError,
        EOFError,
        OSError,
        ValueError,  # JSON, Unicode and zlib decoding errors among them
        pickle.UnpicklingError,
        zlib.error,
    ) as exc:
        raise HierlmError(
            f"{path} is not a hierlm fit file or is corrupted ({exc}); fit the model again"
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        nc = Path(tmp) / "idata.nc"
        nc.write_bytes(nc_bytes)
        import arviz as az

        try:
            lazy = az.from_netcdf(str(nc))
        except (OSError, ValueError) as exc:
            raise HierlmError(
                f"{path} is corrupted: its posterior cannot be read ({exc}); fit the model again"
            ) from None
        # Every group read into memory and detached from the file, which is deleted below:
        # a lazily backed fit could not be saved again.
        idata = az.InferenceData(**{g: lazy[g].load().copy(deep=True) for g in lazy.groups()})
        for g in lazy.groups():
            lazy[g].close()
    return Fit(
        idata=idata,
        design=state["design"],
        stats=state["stats"],
        info=state["info"],
        data=state.get("data"),
        pooling_factors=state.get("pooling_factors"),
    )


def _check_format_version(path: Path, version: Any) -> None:
    if version == FORMAT_VERSION:
        return
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise HierlmError(
            f"{path} was written by a newer hierlm (fit format version {version}; this one "
            f"reads version {FORMAT_VERSION}); upgrade hierlm to read it"
        )
    raise HierlmError(
        f"{path} has fit format version {version}, written by an older hierlm, but this one "
        f"reads version {FORMAT_VERSION}; refit the model with this version of hierlm"
    )


def _is_group_var(name: str, design: Design) -> bool:
    return any(name == f"beta_{lv}" for lv in design.level_names)


def _drop_fixed_entries(table: pd.DataFrame) -> pd.DataFrame:
    """Drop rows that are constants by construction: a correlation's diagonal, its upper
    triangle (a repeat of the lower one), and cross-block correlations fixed at 0."""
    labels = set(table.index)
    keep = []
    for label in table.index:
        if label.startswith("corr_"):
            a, _, b = label[label.index("[") + 1 : -1].partition(", ")
            if a == b or table.loc[label, "r_hat"] != table.loc[label, "r_hat"]:
                keep.append(False)
                continue
            name = label[: label.index("[")]
            if f"{name}[{b}, {a}]" in labels and (a, b) > (b, a):
                keep.append(False)
                continue
        keep.append(True)
    return table[keep]
