"""Files: written atomically (an interrupted write leaves nothing), never overwritten
without --force, and a fit file that is newer, older or corrupted is refused clearly.

Save -> load -> predict equality is in test_predict.py (test_save_load_predict_identical);
save -> load bit-identity in test_model.py.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import hierlm as hl
from hierlm.cli import ExitCode, app
from hierlm.fit import FORMAT_VERSION

runner = CliRunner()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, small_df) -> Path:
    fit = hl.Model("y ~ x + (1 | a)", small_df).fit(chains=2, draws=100, tune=100, seed=1)
    return fit.save(tmp_path_factory.mktemp("safe") / "m.hlm")


def _with_meta(src: Path, dst: Path, **changes) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "meta.json":
                data = json.dumps({**json.loads(data), **changes}).encode()
            zout.writestr(item, data)
    return dst


def _broken(saved: Path, tmp_path: Path, kind: str) -> Path:
    raw = saved.read_bytes()
    path = tmp_path / f"{kind}.hlm"
    if kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(len(raw)))
    elif kind == "text":
        path.write_text("y,x\n1,2\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "flipped":
        # One byte changed inside the stored posterior: the zip's CRC must catch it.
        with zipfile.ZipFile(saved) as zf:
            info = zf.getinfo("idata.nc")
        at = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
        path.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :])
    elif kind == "newer":
        _with_meta(saved, path, format_version=FORMAT_VERSION + 1)
    elif kind == "older":
        _with_meta(saved, path, format_version=FORMAT_VERSION - 1)
    elif kind == "other_zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("meta.json", json.dumps({"format": "something-else"}))
    return path


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("truncated", "is not a hierlm fit file or is corrupted"),
        ("random", "is not a hierlm fit file or is corrupted"),
        ("text", "is not a hierlm fit file or is corrupted"),
        ("empty", "is not a hierlm fit file or is corrupted"),
        ("flipped", "is not a hierlm fit file or is corrupted"),
        ("newer", f"written by a newer hierlm (fit format version {FORMAT_VERSION + 1}"),
        ("older", f"fit format version {FORMAT_VERSION - 1}, written by an older hierlm"),
        ("other_zip", "is not a hierlm fit file"),
    ],
)
def test_bad_fit_files_are_refused_clearly(saved, tmp_path, kind, fragment):
    path = _broken(saved, tmp_path, kind)
    with pytest.raises(hl.HierlmError) as caught:
        hl.load(path)
    assert fragment in str(caught.value)
    shown = runner.invoke(app, ["summary", str(path)])
    assert shown.exit_code == ExitCode.BAD_INPUT
    assert fragment in " ".join(shown.output.split())
    assert "Traceback" not in shown.output


def test_fit_file_records_versions_and_seed(saved):
    with zipfile.ZipFile(saved) as zf:
        meta = json.loads(zf.read("meta.json"))
    assert meta["format_version"] == FORMAT_VERSION and meta["seed"] == 1
    for name in ("hierlm", "jax", "numpyro", "arviz"):
        assert meta["versions"][name] not in ("", "not installed"), name
    fit = hl.load(saved)
    assert fit.info.versions == meta["versions"] and fit.info.seed == 1
    assert fit.info.versions["hierlm"] == hl.__version__
    shown = runner.invoke(app, ["summary", str(saved)])
    assert f"fitted with hierlm {hl.__version__}, jax " in shown.output
    assert "seed 1" in shown.output


def test_interrupted_save_leaves_nothing(saved, tmp_path, monkeypatch):
    fit = hl.load(saved)
    target = tmp_path / "new.hlm"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(zipfile.ZipFile, "writestr", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit.save(target)
    assert list(tmp_path.iterdir()) == []
    # An existing file survives an interrupted overwrite unchanged.
    monkeypatch.undo()
    before = saved.read_bytes()
    monkeypatch.setattr(zipfile.ZipFile, "writestr", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit.save(saved)
    assert saved.read_bytes() == before
    assert not list(saved.parent.glob("*.part"))


def test_interrupted_report_and_predictions_leave_nothing(saved, tmp_path, monkeypatch, small_df):
    fit = hl.load(saved)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    import hierlm.report

    monkeypatch.setattr(hierlm.report, "build_report", lambda *a: "<html>" + "x" * 10**6)
    monkeypatch.setattr(hierlm.report.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit.report(tmp_path / "r.html")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    new = tmp_path / "new.csv"
    small_df.head(5).to_csv(new, index=False)
    monkeypatch.setattr(pd.DataFrame, "to_csv", interrupted)
    result = runner.invoke(app, ["predict", str(saved), str(new), "-o", str(tmp_path / "p.csv")])
    assert result.exit_code == ExitCode.INTERRUPTED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv"]


def test_cli_never_overwrites_without_force(saved, tmp_path, small_df):
    new = tmp_path / "new.csv"
    small_df.head(5).to_csv(new, index=False)
    for argv, target in [
        (["predict", str(saved), str(new), "-o", "{t}"], tmp_path / "p.csv"),
        (["report", str(saved), "-o", "{t}"], tmp_path / "r.html"),
        (["fit", str(new), "y ~ x", "-o", "{t}"], tmp_path / "f.hlm"),
    ]:
        target.write_text("mine")
        args = [a.format(t=target) for a in argv]
        result = runner.invoke(app, args)
        assert result.exit_code == ExitCode.BAD_INPUT, args
        assert "exists; pass --force to overwrite it" in result.output
        assert target.read_text() == "mine"
    forced = runner.invoke(
        app, ["predict", str(saved), str(new), "-o", str(tmp_path / "p.csv"), "--force"]
    )
    assert forced.exit_code == 0, forced.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == 5
    assert not list(tmp_path.glob("*.part"))
