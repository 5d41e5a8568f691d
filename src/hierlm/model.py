"""The user-facing model: a formula on a table, fitted exactly by collapsing."""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from . import _jax, compiled
from .assemble import Problem, assemble
from .errors import ConvergenceWarning, HierlmError
from .fit import KEEP_DATA_ROWS, Fit, FitInfo, library_versions
from .formula import parse_formula
from .ingest import Ingested, ingest
from .priors import Priors
from .spec import ModelSpec
from .table import NaPolicy

__all__ = ["METHODS", "Model"]

METHODS = ("nuts", "map", "advi", "metropolis")

Progress = Callable[[int, int, str], None]


class Model:
    """A Bayesian hierarchical linear model.

    Parameters
    ----------
    formula
        ``y ~ fixed + (varying | g1/g2/...)``; see :func:`hierlm.formula.parse_formula`.
    data
        pandas or polars table.
    family
        ``"gaussian"`` or ``"lognormal"`` (the same as ``log(y)`` on the left).
    priors
        Priors on the original scale; unset ones default to weakly informative priors
        scaled to the data.
    pooling
        ``"partial"`` (default), ``"none"`` or ``"complete"``.
    na
        ``"drop"`` rows with missing values (counted in the summary) or ``"error"``.
    engine
        ``"auto"`` (default): the exact collapsed engine wherever it applies (Gaussian and
        lognormal families), the full-latent engine otherwise. ``"collapsed"`` or
        ``"full"`` force one; ``"full"`` samples every group coefficient, for comparison.
    parameterization
        For the full-latent engine: ``"auto"`` (default; chosen per level from the data),
        ``"centered"`` or ``"noncentered"``, or a dict from level name to one of these.

    Examples
    --------
    >>> import hierlm as hl
    >>> model = hl.Model("log_radon ~ floor + (1 + floor | county)", hl.datasets.radon("MN"))
    >>> model.n_groups
    {'county': 85}
    """

    def __init__(
        self,
        formula: str,
        data: Any,
        family: str = "gaussian",
        priors: Priors | None = None,
        pooling: str = "partial",
        na: NaPolicy = "drop",
        engine: str = "auto",
        parameterization: str | dict[str, str] = "auto",
    ):
        if na not in ("drop", "error"):
            raise HierlmError(f"na must be 'drop' or 'error', got {na!r}")
        if engine not in ("auto", "collapsed", "full"):
            raise HierlmError(f"engine must be 'auto', 'collapsed' or 'full', got {engine!r}")
        if priors is not None and not isinstance(priors, Priors):
            raise HierlmError(f"priors must be a hierlm.Priors, got {type(priors).__name__}")
        _jax.configure()
        self.spec: ModelSpec = parse_formula(formula, family=family, pooling=pooling)
        if engine == "collapsed" and not self.spec.collapsible:
            why = (
                "crossed groupings"
                if self.spec.crossed and self.spec.family in ("gaussian", "lognormal")
                else f"the family {self.spec.family!r}"
            )
            raise HierlmError(
                f"the collapsed engine needs a gaussian or lognormal model with one nesting "
                f"chain, and this one has {why}; use engine='auto' or 'full'"
            )
        if self.spec.crossed and pooling != "partial":
            raise HierlmError(
                f"pooling={pooling!r} is defined for one nesting chain; with crossed groupings "
                "use pooling='partial', or drop the crossed grouping"
            )
        self.engine = "collapsed" if engine != "full" and self.spec.collapsible else "full"
        self.options: dict[str, Any] = {
            "family": family,
            "priors": priors,
            "pooling": pooling,
            "na": na,
            "engine": engine,
            "parameterization": parameterization,
        }
        self.parameterization = parameterization
        self.priors = priors or Priors()
        # The programs a fit of the same formula and options last used, loaded meanwhile.
        self._programs_tag = repr((formula, sorted(self.options.items())))
        if self.engine == "collapsed":
            compiled.prefetch(self._programs_tag)
        self.data: Ingested = self._ingest(data, na)
        self.problem: Problem = assemble(self.data.design, self.data.stats, self.priors)

    def _ingest(self, data: Any, na: NaPolicy) -> Ingested:
        """In memory; through DuckDB for paths, globs and relations; on the cluster for Dask
        DataFrames. Up to ``KEEP_DATA_ROWS`` complete rows (or for models that need the rows)
        the needed columns are read into memory; beyond that the statistics are accumulated
        batch by batch (DuckDB) or reduced over the partitions (Dask)."""
        from .dask_ingest import count_dask_rows, ingest_dask, is_dask
        from .ingest import _needed_columns
        from .source import DuckSource, is_source, open_source, quote
        from .stream import count_rows, ingest_source

        stream = self.engine == "collapsed" and self.spec.se is None
        if is_dask(data):
            dask_counts = count_dask_rows(data, self.spec)
            if stream and dask_counts[0] - dask_counts[1] > KEEP_DATA_ROWS:
                return ingest_dask(self.spec, data, na=na, counts=dask_counts)
            data = data[_needed_columns(self.spec)].compute()
        if isinstance(data, DuckSource) or is_source(data):
            source = data if isinstance(data, DuckSource) else open_source(data)
            needed = _needed_columns(self.spec)
            if source.counted and source.row_count() <= KEEP_DATA_ROWS:
                # Few enough rows to read whatever is missing, counted from the Parquet
                # metadata: no scan to count the missing values (1e6 rows: 0.03-0.05 s).
                source.check_columns(needed)
            else:
                counts = count_rows(source, self.spec)
                total, dropped = counts[0], counts[1]
                if stream and total - dropped > KEEP_DATA_ROWS:
                    return ingest_source(self.spec, source, na=na, counts=counts)
            columns = ", ".join(quote(c) for c in dict.fromkeys(needed))
            data = source.query(f"SELECT {columns} FROM rows")
        return ingest(
            self.spec,
            data,
            na=na,
            keep_rows=self.engine == "full",
            keep_frame_rows=KEEP_DATA_ROWS,
        )

    @property
    def n_groups(self) -> dict[str, int]:
        """Number of groups per level."""
        design = self.data.design
        sizes = [len(labels) for labels in design.level_labels]
        return dict(zip(design.level_names, sizes, strict=True))

    def log_density(self, theta):
        """The collapsed log density of θ (unconstrained), for tests and advanced use.

        Compiled once per model structure (it traces and differentiates like any JAX
        function); run op by op, one evaluation took seconds.
        """
        from .density import log_density_jit

        return log_density_jit(theta, self.problem.args, self.problem.layout)

    def prior_predictive(self, draws: int = 500, seed: int = 0) -> Any:
        """Prior predictive check: data sets drawn from the priors alone, no sampling.

        Every parameter and group coefficient is drawn directly from its prior, then a
        response for every row of the data, and the test statistics of
        :meth:`hierlm.Fit.ppc` are compared with the observed data.

        Returns
        -------
        hierlm.check.PredictiveCheck
        """
        import numpy as np

        from .check import predictive_check
        from .posterior import build_idata
        from .prior_sample import sample_prior
        from .sampler import plain_draws

        if not isinstance(draws, int) or draws < 2:
            raise HierlmError(f"draws must be an integer >= 2, got {draws!r}")
        d = self.data
        if d.frame is None:
            raise HierlmError(
                f"a prior predictive check replicates every row, and this model has "
                f"{d.n_rows:,}; build the model on a sample of them, e.g. "
                f"hl.Model(formula, df.sample({KEEP_DATA_ROWS // 10:_}))"
            )
        coefs = sample_prior(d.design, self.problem, draws, seed)
        run = plain_draws(np.zeros((1, draws, 0)), np.zeros((1, draws)))
        idata = build_idata(d.design, self.problem, run, coefs, d.n_rows, d.sum_log_response)
        settings: dict[str, Any] = {"chains": 1, "draws": draws, "tune": 0, "seed": seed}
        settings |= {"target_accept": 0.0, "max_tree_depth": 0}
        prior = Fit(idata, d.design, d.stats, self._info(settings, {}, method="prior"), d.frame)
        return predictive_check(prior, d.frame, None, seed, source="prior")

    def fit(
        self,
        chains: int = 4,
        draws: int = 1000,
        tune: int = 1000,
        seed: int = 0,
        target_accept: float = 0.8,
        max_tree_depth: int = 10,
        progress: bool | Progress = False,
        method: str = "nuts",
        advi_steps: int = 10_000,
    ) -> Fit:
        """Sample θ with NUTS and draw every group coefficient exactly.

        Parameters
        ----------
        chains, draws, tune
            Number of chains, kept draws per chain and warm-up iterations per chain.
        seed
            Random seed; the same seed gives the same draws.
        target_accept
            NUTS target acceptance probability.
        max_tree_depth
            NUTS maximum tree depth.
        progress
            ``True`` for a progress bar on stderr, or a callable ``(done, total, phase)``.
        method
            ``"nuts"`` (default); ``"map"``: the marginal posterior mode of θ with a Laplace
            approximation around it, every group coefficient drawn exactly given each θ
            draw (collapsed engine only); ``"advi"``: mean-field variational inference
            (NumPyro's ``AutoNormal``); ``"metropolis"``: random-walk Metropolis with an
            adaptive scale. The last three are for comparison; each fit says what its
            uncertainty means (:meth:`Fit.notes`).
        advi_steps
            Optimisation steps for ``method="advi"``.
        """
        for name, value, low in (("chains", chains, 1), ("draws", draws, 1), ("tune", tune, 0)):
            if not isinstance(value, int) or value < low:
                raise HierlmError(f"{name} must be an integer >= {low}, got {value!r}")
        if not 0 < target_accept < 1:
            raise HierlmError(f"target_accept must be in (0, 1), got {target_accept!r}")
        if method not in METHODS:
            raise HierlmError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if method == "map" and self.engine == "full":
            raise HierlmError(
                "method='map' is the marginal mode of the variance parameters, with the group "
                "coefficients integrated out; that needs the collapsed engine (a gaussian or "
                "lognormal model with engine='auto'). The joint mode of a full-latent model "
                "puts every group sd at zero; use method='nuts' or 'advi'."
            )
        settings = {
            "chains": chains,
            "draws": draws,
            "tune": tune,
            "seed": seed,
            "target_accept": target_accept,
            "max_tree_depth": max_tree_depth,
        }
        callback, close = _progress(progress)
        try:
            if self.engine == "full":
                fit = self._fit_latent(settings, callback, method, advi_steps)
            elif method != "nuts":
                fit = self._fit_collapsed_other(settings, method, advi_steps)
            else:
                fit = self._fit_collapsed(settings, callback)
        finally:
            close()
        _warn_on_findings(fit)
        return fit

    def _fit_collapsed(self, settings: dict[str, Any], callback: Progress | None) -> Fit:
        from .laplace import LogDensity, find_laplace
        from .posterior import draw_coefficients
        from .sampler import (
            collapsed_start,
            collapsed_target,
            compile_nuts,
            run_nuts,
            theta_draws,
        )

        problem = self.problem
        chains, draws, seed = settings["chains"], settings["draws"], settings["seed"]
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        since = compiled.mark()
        # The sampler's programs need only shapes: another thread builds them (XLA releases
        # the GIL) while this one finds the mode (then see _draws_program). A cold radon fit
        # measured 0.5 s faster than building them in sequence; more threads only contend
        # for the GIL and two cores.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hierlm-compile")
        try:
            nuts_future = pool.submit(
                compile_nuts,
                collapsed_target(problem.layout, problem.args, None),
                chains=chains,
                tune=settings["tune"],
                target_accept=settings["target_accept"],
                max_tree_depth=settings["max_tree_depth"],
            )
            logp = LogDensity(problem.layout, problem.args)
            laplace = find_laplace(problem.layout, problem.args, logp=logp)
            timings["laplace"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            draws_program = _draws_program(pool, nuts_future, problem, chains * draws)
            nuts_programs = nuts_future.result()
            timings["nuts_compile"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            target = collapsed_target(problem.layout, problem.args, laplace)
            nuts = run_nuts(
                nuts_programs,
                target.data,
                collapsed_start(laplace, logp, chains, seed, self._theta_labels()),
                draws=draws,
                seed=seed,
                progress=_on_start(callback, self._programs_tag, since),
            )
            timings["nuts"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            theta = theta_draws(nuts, laplace)
            coefs = draw_coefficients(
                problem, theta, seed + 1, self.data.design.original_affine(), draws_program.result()
            )
            coefs["theta"] = theta.reshape(-1, theta.shape[-1])
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return self._finish(
            settings,
            timings,
            nuts,
            coefs,
            t2,
            mode_converged=laplace.converged,
            mode_iterations=laplace.iterations,
        )

    def _fit_collapsed_other(self, settings: dict[str, Any], method: str, advi_steps: int) -> Fit:
        """θ by MAP + Laplace, Metropolis or ADVI; group coefficients exact given θ."""
        import numpy as np

        from .laplace import LogDensity, find_laplace
        from .posterior import draw_coefficients
        from .sampler import collapsed_start, collapsed_target, plain_draws, theta_draws

        problem = self.problem
        chains, draws, seed = settings["chains"], settings["draws"], settings["seed"]
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        _import_in_background(*_AFTER_SAMPLING)
        logp = LogDensity(problem.layout, problem.args)
        laplace = find_laplace(problem.layout, problem.args, logp=logp)
        timings["laplace"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        target = collapsed_target(problem.layout, problem.args, laplace)
        if method == "map":
            theta = _laplace_draws(laplace, chains * draws, seed).reshape(chains, draws, -1)
            lp = logp(theta.reshape(-1, theta.shape[-1]))[0].reshape(chains, draws)
            run = plain_draws(theta, lp)
        elif method == "metropolis":
            from .metropolis import run_metropolis

            x0 = collapsed_start(laplace, logp, chains, seed, self._theta_labels())[0]
            run = run_metropolis(target, x0, draws=draws, tune=settings["tune"], seed=seed)
            theta = theta_draws(run, laplace)
        else:
            from .advi import run_advi

            x0 = np.zeros(problem.layout.size)
            run = run_advi(target, x0, chains=chains, draws=draws, steps=advi_steps, seed=seed)
            theta = theta_draws(run, laplace)
        timings[method] = time.perf_counter() - t1
        t2 = time.perf_counter()
        coefs = draw_coefficients(problem, theta, seed + 1, self.data.design.original_affine())
        coefs["theta"] = theta.reshape(-1, theta.shape[-1])
        return self._finish(
            settings,
            timings,
            run,
            coefs,
            t2,
            mode_converged=laplace.converged,
            mode_iterations=laplace.iterations,
            method=method,
        )

    def _fit_latent(
        self,
        settings: dict[str, Any],
        callback: Progress | None,
        method: str = "nuts",
        advi_steps: int = 10_000,
    ) -> Fit:
        import numpy as np

        from .latent_fit import latent_labels, latent_problem, sample_latent

        problem = self.problem
        timings: dict[str, float] = {}
        extra: dict[str, Any] = {}
        pilot = None
        if self.spec.collapsible:
            # The collapsed mode of θ: a pilot for the parameterisation and a start.
            from .laplace import find_laplace

            t0 = time.perf_counter()
            laplace = find_laplace(problem.layout, problem.args)
            pilot = laplace.mode
            extra = {"mode_converged": laplace.converged, "mode_iterations": laplace.iterations}
            timings["laplace"] = time.perf_counter() - t0
        _import_in_background(*_AFTER_SAMPLING)
        lat, data, choices = latent_problem(self.data, problem, self.parameterization, pilot)
        theta0 = pilot if pilot is not None else np.zeros(problem.layout.size)
        run = sample_latent(
            lat,
            data,
            choices,
            theta0,
            progress=callback,
            timings=timings,
            method=method,
            advi_steps=advi_steps,
            labels=latent_labels(lat, self.data.design.level_names, self.data.design.coef_names),
            **settings,
        )
        return self._finish(
            settings,
            timings,
            run.nuts,
            run.coefs,
            None,
            engine="full",
            parameterization=choices,
            method=method,
            **extra,
        )

    def _theta_labels(self) -> list[str]:
        from .density import theta_labels

        design = self.data.design
        return theta_labels(self.problem.layout, design.level_names, design.coef_names)

    def _finish(
        self,
        settings: dict[str, Any],
        timings: dict[str, float],
        draws: Any,
        coefs: dict[str, Any],
        started: float | None,
        **more: Any,
    ) -> Fit:
        """The Fit from θ (or parameter) draws and group coefficients; ``started`` is when
        the coefficient draws began, for the ``draws`` timing (None: already timed)."""
        from .posterior import build_idata

        _await_imports()
        d = self.data
        idata = build_idata(
            d.design, self.problem, draws, coefs, d.n_rows, d.sum_log_response, d.log_weight
        )
        if started is not None:
            timings["draws"] = time.perf_counter() - started
        return Fit(
            idata=idata,
            design=d.design,
            stats=d.stats,
            info=self._info(settings, timings, **more),
            data=d.frame,
            pooling_factors=_pooling_factors(coefs),
        )

    def _info(self, settings: dict[str, Any], timings: dict[str, float], **more: Any) -> FitInfo:
        d = self.data
        return FitInfo(
            **settings,
            n_rows=d.n_rows,
            n_dropped=d.n_dropped,
            dropped_by_column=d.dropped_by_column,
            dropped_groups=d.dropped_groups,
            priors=self.problem.priors,
            timings=timings,
            options=self.options,
            versions=library_versions(),
            **more,
        )


def _warn_on_findings(fit: Fit) -> None:
    """A :class:`ConvergenceWarning` when a sampler's draws raise a finding (R-hat, ESS,
    divergences, tree depth), so a doubtful fit is never silent in a script or notebook."""
    if fit.info.method not in ("nuts", "metropolis"):
        return
    findings = fit.problems()
    if findings:
        text = " ".join(str(f) for f in findings)
        warnings.warn(ConvergenceWarning(f"{text} (Fit.diagnose() lists these.)"), stacklevel=3)


def _pooling_factors(coefs: dict[str, Any]) -> tuple[Any, ...] | None:
    import numpy as np

    pools = coefs.get("pooling")
    return None if pools is None else tuple(np.asarray(p) for p in pools)


def _laplace_draws(laplace: Any, n: int, seed: int) -> Any:
    """θ draws from the Laplace approximation ``N(mode, H⁻¹)`` (the exact Hessian)."""
    import numpy as np

    H = laplace.hessian
    if H is None or not laplace.converged:
        raise HierlmError(
            "method='map' needs the posterior mode of the variance parameters, but the search "
            "for it did not converge; use method='nuts'"
        )
    w, V = np.linalg.eigh(H)
    if w.min() <= 0:
        raise HierlmError(
            "the log posterior is not curved downward at its mode in every direction, so a "
            "Laplace approximation has no covariance there (a variance parameter the data do "
            "not identify); use method='nuts'"
        )
    root = V / np.sqrt(w)[None, :]
    z = np.random.default_rng([seed, 4]).standard_normal((n, H.shape[0]))
    return laplace.mode + z @ root.T


# Imported on a thread once a fit starts: ArviZ (over a second) builds the posterior; a
# fit is then usually saved (the CLI always saves), and the netCDF writer imports h5netcdf
# and, where Dask is installed, dask (xarray asks it for a scheduler): 0.4 s more when
# saving a warm radon fit, measured.
_AFTER_SAMPLING = ("arviz", "h5netcdf", "dask.base")
_importing: list[threading.Thread] = []
# How long a finished mode search waits for the sampler's programs before building the
# downward pass's itself: on a warm start they are done within about 0.2 s.
_NUTS_WAIT_S = 0.5


def _import_in_background(*modules: str) -> None:
    """Start importing ``modules`` in order on one thread (once per process). Sampling runs
    in XLA with the GIL released, so slow imports needed only afterwards overlap it."""
    if not _importing:
        thread = threading.Thread(target=_import_all, args=(modules,), daemon=True)
        _importing.append(thread)
        thread.start()


def _await_imports() -> None:
    """Wait for :func:`_import_in_background`. The main thread must not import the same
    modules meanwhile: where two threads' imports wait on each other, Python hands one of
    them a partially initialised module (seen: ``dask.base`` without its functions)."""
    for thread in _importing:
        thread.join()


def _on_start(callback: Progress | None, tag: str, since: int) -> Progress:
    """``callback``, which also, as sampling starts, remembers the programs loaded so far
    for the next process (:func:`hierlm.compiled.prefetch`) and starts the imports of
    :data:`_AFTER_SAMPLING`: started before, their second of Python held the GIL while the
    mode search ran and the sampler's programs were loaded (see :func:`_draws_program` for
    the numbers)."""
    started: list[bool] = []

    def progress(done: int, total: int, phase: str) -> None:
        if not started:
            started.append(True)
            compiled.remember(tag, since)
        _import_in_background(*_AFTER_SAMPLING)
        if callback is not None:
            callback(done, total, phase)

    return progress


def _draws_program(
    pool: ThreadPoolExecutor, nuts: Future[Any], problem: Problem, n_draws: int
) -> Future[Any]:
    """The downward pass's program, built where it delays sampling least.

    When the sampler's programs are (nearly) ready, as on a warm start, it is built on
    their thread while the chains run; otherwise this thread would only wait for them and
    builds it meanwhile (a cold start). With the imports of :func:`_on_start`,
    a warm fit of model B (1e6 rows) in a new process spent 0.96 s instead of 1.47 s from
    the model to sampling (mean of five interleaved runs each).
    """
    from .posterior import compile_draws

    try:
        nuts.result(timeout=_NUTS_WAIT_S)
    except FutureTimeout:
        done: Future[Any] = Future()
        done.set_result(compile_draws(problem, n_draws))
        return done
    return pool.submit(compile_draws, problem, n_draws)


def _import_all(modules: tuple[str, ...]) -> None:
    for module in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


def _progress(progress: bool | Progress) -> tuple[Progress | None, Callable[[], None]]:
    if callable(progress):
        return progress, lambda: None
    if not progress:
        return None, lambda: None
    from .progress import sampling_progress

    bar = sampling_progress()
    return bar.update, bar.close
