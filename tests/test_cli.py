"""The command line: fit, summary, and clean errors without tracebacks."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hierlm.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory, small_df):
    path = tmp_path_factory.mktemp("cli") / "data.csv"
    small_df.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_fit_then_summary(csv_path, tmp_path):
    out = tmp_path / "m.hlm"
    args = [
        "fit",
        str(csv_path),
        "y ~ x + (1 | a/b)",
        "-o",
        str(out),
        "--chains",
        "2",
        "--draws",
        "200",
    ]
    args += ["--tune", "200", "--prior", "sd(b) ~ halfnormal(2)", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.exists()
    shown = runner.invoke(app, ["summary", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "beta[x]" in shown.output and "sd_b[Intercept]" in shown.output
    assert "Variance by level" in shown.output and "share of variance" in shown.output
    compared = runner.invoke(app, ["compare", str(out), "--level", "a"])
    assert compared.exit_code == 0, compared.output
    for mode in ("partial", "none", "complete"):
        assert mode in compared.output
    assert "leave one a out: exact given the variance parameters" in compared.output
    assert "Best at predicting a new a: pooling=" in compared.output
    wrong = runner.invoke(app, ["compare", str(out), "--level", "zip"])
    assert wrong.exit_code == 2 and "no level named 'zip'" in wrong.output
    assert "HalfNormal(2)" in shown.output
    assert "b: 'b0' occurs under 4 as, treated as 4 groups" in shown.output
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "exists; pass --force" in again.output


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "nope.csv", "y ~ x", "-o", "o.hlm"], "no data file at nope.csv"),
        (["fit", "{csv}", "y ~ x + (1 | a", "-o", "{out}"], "^"),
        (["fit", "{csv}", "y ~ q + (1 | a)", "-o", "{out}"], "column 'q' is not in the data"),
        (
            ["fit", "{csv}", "y ~ x + (1 | a)", "-o", "{out}", "--prior", "sd ~ foo(1)"],
            "unknown distribution",
        ),
        (["summary", "missing.hlm"], "no fit file at missing.hlm"),
        (["fit", "{csv}", "y ~ x + (1 | a)", "-o", "{out}", "--method", "gibbs"], "method must be"),
        (
            ["fit", "{csv}", "y ~ x + (1 | a)", "-o", "{out}", "--family", "binomial"],
            "needs the number of trials",
        ),
        (
            [
                "fit",
                "{csv}",
                "y ~ x + (1 | a)",
                "-o",
                "{out}",
                "--engine",
                "collapsed",
                "--family",
                "student_t",
            ],
            "collapsed engine needs a gaussian",
        ),
    ],
)
def test_errors_are_clear(argv, message, csv_path, tmp_path):
    argv = [a.format(csv=csv_path, out=tmp_path / "o.hlm") for a in argv]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.hlm").exists()


def test_installed_command_exit_codes_and_output(csv_path, tmp_path):
    """The console script ends the process itself (skipping teardown): its output must
    still arrive whole, its file be written, and its exit codes be kept."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("hierlm")
    assert exe.exists(), "the package's console script is not installed"
    out = tmp_path / "m.hlm"
    argv = [str(exe), "fit", str(csv_path), "y ~ x + (1 | a)", "-o", str(out)]
    argv += ["--chains", "1", "--draws", "30", "--tune", "30"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "sd_a[Intercept]" in done.stdout and done.stdout.rstrip().endswith(str(out))
    assert out.stat().st_size > 0
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "exists; pass --force" in again.stderr
    assert "Traceback" not in again.stderr
    usage = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and "fit" in usage.stdout
