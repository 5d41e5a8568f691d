"""How the command line ends: one exit code and one short message per kind of ending,
tracebacks only with --debug, --strict on diagnostic findings, and SIGINT/SIGTERM mid-fit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hierlm.fit
from hierlm.cli import ExitCode, app
from hierlm.errors import DataError, FormulaError, HierlmError, PriorError

runner = CliRunner()
EXE = Path(sys.executable).with_name("hierlm")


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory, small_df):
    path = tmp_path_factory.mktemp("cli_errors") / "data.csv"
    small_df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("raised", "code", "fragment"),
    [
        (FormulaError("bad formula here"), ExitCode.BAD_INPUT, "error: bad formula here"),
        (DataError("column 'q' is missing"), ExitCode.BAD_INPUT, "error: column 'q' is missing"),
        (PriorError("unknown prior"), ExitCode.BAD_INPUT, "error: unknown prior"),
        (HierlmError("plain hierlm error"), ExitCode.BAD_INPUT, "error: plain hierlm error"),
        (RuntimeError("kaboom"), ExitCode.BUG, "This is a bug in hierlm"),
        (ZeroDivisionError("division by zero"), ExitCode.BUG, "rerun the command with --debug"),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED, "interrupted: stopped before it finished"),
    ],
)
def test_every_exception_maps_to_a_code_and_a_message(monkeypatch, raised, code, fragment):
    def load(path):
        raise raised

    monkeypatch.setattr(hierlm.fit, "load", load)
    result = runner.invoke(app, ["summary", "any.hlm"])
    assert result.exit_code == code
    assert fragment.lower() in result.output.lower()
    assert "Traceback" not in result.output
    debug = runner.invoke(app, ["--debug", "summary", "any.hlm"])
    assert debug.exit_code == code
    if code in (ExitCode.BAD_INPUT, ExitCode.BUG):
        assert "Traceback (most recent call last)" in debug.output
        assert f"{type(raised).__name__}" in debug.output


def test_exit_codes_are_documented_in_help():
    shown = runner.invoke(app, ["--help"])
    assert shown.exit_code == 0
    for text in ("--debug", "2 bad input", "3 --strict", "130 interrupted", "143 terminated"):
        assert text in " ".join(shown.output.split()), text


def _hierlm_with_broken_load(*argv: str) -> subprocess.CompletedProcess:
    """The installed entry point (main(), which ends with os._exit) with load() broken."""
    script = (
        "import sys, hierlm.fit, hierlm.cli\n"
        "def load(path):\n"
        "    raise AssertionError('an internal invariant failed')\n"
        "hierlm.fit.load = load\n"
        f"sys.argv = ['hierlm', *{list(argv)!r}]\n"
        "hierlm.cli.main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )


def test_internal_error_in_a_real_process_is_a_short_paragraph():
    done = _hierlm_with_broken_load("summary", "x.hlm")
    assert done.returncode == ExitCode.BUG
    assert "internal error: AssertionError: an internal invariant failed" in done.stderr
    assert "This is a bug in hierlm" in done.stderr and "--debug" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    debug = _hierlm_with_broken_load("--debug", "summary", "x.hlm")
    assert debug.returncode == ExitCode.BUG
    assert "Traceback (most recent call last)" in debug.stderr


# --------------------------------------------------------------------------- --strict


@pytest.mark.slow
def test_strict_exits_3_on_findings_and_0_without(csv_path, tmp_path):
    base = ["fit", str(csv_path), "y ~ x + (1 | a)", "--quiet", "--strict"]
    short = tmp_path / "short.hlm"
    few = runner.invoke(app, [*base, "-o", str(short), "--chains", "2", *_n(50, 50)])
    assert few.exit_code == ExitCode.FINDINGS, few.output
    assert "strict: Few effective draws" in few.output and "below 400" in few.output
    assert short.exists()  # the fit is saved; --strict only changes the exit code
    again = runner.invoke(app, ["summary", str(short), "--strict"])
    assert again.exit_code == ExitCode.FINDINGS
    assert "smallest bulk ESS" in again.output and "divergent of 100 draws" in again.output
    assert runner.invoke(app, ["summary", str(short)]).exit_code == 0
    good = tmp_path / "good.hlm"
    fine = runner.invoke(app, [*base, "-o", str(good), "--chains", "4", *_n(500, 500)])
    assert fine.exit_code == 0, fine.output
    assert runner.invoke(app, ["summary", str(good), "--strict"]).exit_code == 0


def _n(draws: int, tune: int) -> list[str]:
    return ["--draws", str(draws), "--tune", str(tune)]


# --------------------------------------------------------------------------- signals


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code", "fragment"),
    [
        (signal.SIGINT, ExitCode.INTERRUPTED, "interrupted: stopped before it finished"),
        (signal.SIGTERM, ExitCode.TERMINATED, "terminated: stopped by SIGTERM"),
    ],
)
def test_signal_mid_fit_leaves_no_file(csv_path, tmp_path, sig, code, fragment):
    out = tmp_path / "m.hlm"
    # Far more draws than the run below allows: the signal lands mid-run.
    argv = [str(EXE), "fit", str(csv_path), "y ~ x + (1 + x | a/b)", "-o", str(out)]
    argv += ["--chains", "2", "--draws", "200000", "--tune", "100"]
    # FORCE_COLOR: rich draws the bar live into the pipe, so the test sees sampling start
    # (a fixed wait raced cold compiles on a loaded machine).
    env = dict(os.environ, FORCE_COLOR="1")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(fd, 65536), b"")))
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while b"warmup" not in b"".join(chunks):
            assert proc.poll() is None, "the fit ended before the signal"
            assert time.monotonic() < deadline, "sampling did not start within 300 s"
            time.sleep(0.2)
        time.sleep(1.0)
        assert proc.poll() is None, "the fit ended before the signal"
        sent = time.perf_counter()
        proc.send_signal(sig)
        proc.wait(timeout=30)
        waited = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join()
        proc.stderr.close()
    stderr = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode())
    assert proc.returncode == code, stderr
    assert fragment in stderr
    # (The progress bar was drawn: the wait above saw its warm-up.)
    assert "Traceback" not in stderr
    assert waited < 5.0, f"the process took {waited:.1f} s to end after the signal"
    assert sorted(os.listdir(tmp_path)) == []  # neither m.hlm nor any *.part


# --------------------------------------------------------------------------- a failed start


def test_a_fit_that_cannot_start_names_the_parameter(csv_path, tmp_path, monkeypatch):
    import numpy as np

    from hierlm.laplace import LogDensity

    real = LogDensity.__call__

    def broken_gradient(self, thetas):
        values, grads = real(self, thetas)
        grads[:, 1] = np.nan  # θ[1] is log sd_a[Intercept]
        return values, grads

    monkeypatch.setattr(LogDensity, "__call__", broken_gradient)
    out = tmp_path / "m.hlm"
    argv = ["fit", str(csv_path), "y ~ x + (1 | a/b)", "-o", str(out), "--quiet"]
    result = runner.invoke(app, [*argv, "--chains", "2", *_n(20, 20)])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    text = " ".join(result.output.split())
    assert "error: the sampler cannot start" in text
    assert (
        "the log density is finite there but its gradient is not, for log sd_a[Intercept]" in text
    )
    assert "Traceback" not in result.output and not out.exists()

    def nan_density(self, thetas):
        values, grads = real(self, thetas)
        return np.full_like(values, np.nan), np.full_like(grads, np.nan)

    monkeypatch.setattr(LogDensity, "__call__", nan_density)
    result = runner.invoke(app, [*argv, "--chains", "2", *_n(20, 20)])
    assert result.exit_code == ExitCode.BAD_INPUT
    text = " ".join(result.output.split())
    assert "the log density is nan there, for log sigma, log sd_a[Intercept], log sd_b" in text
