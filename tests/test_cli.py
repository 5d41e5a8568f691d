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
    ],
)
def test_errors_are_clear(argv, message, csv_path, tmp_path):
    argv = [a.format(csv=csv_path, out=tmp_path / "o.hlm") for a in argv]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.hlm").exists()
