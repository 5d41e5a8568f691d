"""The HTML report: self-contained, complete, and rendered by a real browser."""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import hierlm as hl
from hierlm.cli import app

FAST = {"chains": 2, "draws": 200, "tune": 200}

SECTIONS = [
    "Data and hierarchy",
    "Model and priors",
    "Diagnostics",
    "Parameters",
    "Plots",
    "Posterior predictive check",
    "Variance decomposition and pooling",
]


@pytest.fixture(scope="module")
def radon_fit(radon_mn):
    return hl.Model("log_radon ~ floor + (1 + floor | county)", radon_mn).fit(**FAST, seed=1)


@pytest.fixture(scope="module")
def report_path(radon_fit, tmp_path_factory) -> Path:
    return radon_fit.report(tmp_path_factory.mktemp("report") / "radon.html")


def test_report_is_self_contained_and_has_every_section(report_path):
    html = report_path.read_text(encoding="utf-8")
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html
    assert "<script" not in html
    # Nothing is fetched: every image is an embedded PNG, no stylesheet or link leaves the page.
    sources = re.findall(r'src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(href|src)="(https?:)?//', html)
    assert "sd_county[floor]" in html and "county: 'WASHINGTON'" not in html
    assert "Group coefficients: county" in html and "Showing 50 of 85 groups" in html
    # Trace, pair, forest, shrinkage, fitted lines, funnel and PPC figures.
    assert len(sources) >= 7


def test_report_on_three_levels_with_a_comparison(tmp_path):
    df = hl.datasets.simulate_nested(levels={"a": 3, "b": 3, "c": 4}, rows=(3, 8), seed=2)
    fit = hl.Model("y ~ x + (1 + x | a/b/c)", df).fit(**FAST, seed=2)
    comparison = fit.compare_pooling(level="b")
    path = fit.report(tmp_path / "three.html", comparison=comparison)
    html = path.read_text(encoding="utf-8")
    assert "<h2>Pooling comparison</h2>" in html and "Leave one b out" in html
    for level in ("a", "b", "c"):
        assert f"Group coefficients: {level}" in html


def test_cli_report_refuses_to_overwrite_and_writes_atomically(radon_fit, tmp_path):
    runner = CliRunner()
    fit_path = radon_fit.save(tmp_path / "radon.hlm")
    out = tmp_path / "report.html"
    done = runner.invoke(app, ["report", str(fit_path), "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert out.stat().st_size > 10_000
    again = runner.invoke(app, ["report", str(fit_path), "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    missing = runner.invoke(
        app, ["report", str(tmp_path / "nope.hlm"), "-o", str(tmp_path / "x.html")]
    )
    assert missing.exit_code == 2 and not (tmp_path / "x.html").exists()
    assert not list(tmp_path.glob("*.part"))


def _browser():
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("CI must provide chromium and chromedriver (.ci/run installs them)")
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(report_path):
    import matplotlib.image

    browser = _browser()
    try:
        browser.get(report_path.resolve().as_uri())
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);"
        )
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        shot = browser.get_screenshot_as_png()
        title = browser.title
    finally:
        browser.quit()
    assert errors == []
    assert len(images) >= 7 and all(done and width > 0 for done, width in images)
    assert title.startswith("hierlm report")
    pixels = matplotlib.image.imread(io.BytesIO(shot))
    # The top of the page shows the title and the model: not a blank (one-colour) screen.
    assert pixels.shape[0] > 100 and float(np.std(pixels[..., :3])) > 0.05
