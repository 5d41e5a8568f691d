"""A formula runs no code: only columns, numbers and a fixed set of transforms pass."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import hierlm as hl
from hierlm.formula import parse_formula

SENTINEL_ENV = "HIERLM_FORMULA_GUARD_SENTINEL"


def _hostile(path: str) -> list[tuple[str, str, str]]:
    """(formula, message fragment, the text the error must point at)."""
    builtins = "x.__class__.__init__.__globals__['__builtins__']"
    setenv = f"{builtins}['__import__']('os').environ.setdefault('{SENTINEL_ENV}', '1')"
    return [
        # Ran before the guard: formulaic evaluated it and created the file.
        (
            f"y ~ I({builtins}['__import__']('os').system('touch {path}') + x) + (1 | a)",
            "'x.__class__' is not allowed",
            "x.__class__",
        ),
        (
            f"y ~ I(x + {setenv}.__len__()) + (1 | a)",
            "'x.__class__' is not allowed",
            "x.__class__",
        ),
        (
            f"y ~ x + __import__('os').system('touch {path}') + (1 | a)",
            "'__import__' is not allowed",
            "__import__",
        ),
        (f"y ~ x + open('{path}', 'w') + (1 | a)", "the function 'open' is not allowed", "open"),
        (f"y ~ x + (log(open('{path}', 'w')) | a)", "the function 'open' is not allowed", "open"),
        ("y ~ I(lambda: 1) + (1 | a)", "is not arithmetic on columns", "lambda: 1"),
        ("y ~ I(x.real) + (1 | a)", "attribute access", "x.real"),
        ("y ~ x + {x + 1} + (1 | a)", "'{' cannot appear here", "{"),
        ("y ~ x[0] + (1 | a)", "'[' cannot appear here", "["),
        ("y ~ log(x)[0] + (1 | a)", "'[' cannot appear here", "["),
        ("y ~ log(x).sum() + (1 | a)", "'.' cannot appear here", "."),
        ("y ~ x + 'text' + (1 | a)", "a string cannot appear here", "'text'"),
        ("y ~ getattr(x, 'real') + (1 | a)", "the function 'getattr' is not allowed", "getattr"),
        ("y ~ eval('1') + (1 | a)", "the function 'eval' is not allowed", "eval"),
        ("y ~ poly(x, 2) + (1 | a)", "the function 'poly' is not allowed", "poly"),
        ("y ~ np.random.normal(x) + (1 | a)", "'np.random' is not allowed", "np.random"),
        ("y ~ I([x for x in x]) + (1 | a)", "is not arithmetic on columns", "[x for x in x]"),
        ("y ~ I(x if x else x) + (1 | a)", "is not arithmetic on columns", "x if x else x"),
        ("y ~ I(x > 1) + (1 | a)", "is not arithmetic on columns", "x > 1"),
        ("y ~ I(10 ** 10 ** 10) + (1 | a)", "a power of two numbers", "10 ** 10 ** 10"),
        ("y ~ I(x + 'a') + (1 | a)", "only numbers may appear in arithmetic", "'a'"),
        ("y ~ log(x, 2) + (1 | a)", "log() takes one argument", "log(x, 2)"),
        ("y ~ scale(x, ddof=0) + (1 | a)", "takes no keyword arguments", "0"),
        ("y ~ C(a, 'sum') + (1 | b)", "unknown contrasts 'sum' in C()", "'sum'"),
        ("y ~ C(a, levels=x) + (1 | b)", "levels= in C() must be a list", "x"),
        ("y ~ C(a, levels=[len(x)]) + (1 | b)", "must be a constant", "len(x)"),
        ("y ~ C(a, contr.__class__) + (1 | b)", "unknown contrasts", "contr.__class__"),
        ("y ~ x + `__import__` + (1 | a)", "'__import__' is not allowed", "`__import__`"),
    ]


@pytest.mark.parametrize("case", range(len(_hostile("f"))))
def test_hostile_formula_is_refused_and_not_run(case, small_df, tmp_path, monkeypatch):
    sentinel = tmp_path / "ran"
    formula, message, pointed = _hostile(str(sentinel))[case]
    monkeypatch.delenv(SENTINEL_ENV, raising=False)
    with pytest.raises(hl.FormulaError, match=re.escape(message)) as info:
        hl.Model(formula, small_df.assign(z=1.0))
    start, end = info.value.span
    assert formula[start:end] == pointed
    assert not sentinel.exists()
    assert SENTINEL_ENV not in os.environ


def test_parse_alone_refuses_before_any_data(tmp_path):
    sentinel = tmp_path / "ran"
    with pytest.raises(hl.FormulaError, match="not allowed"):
        parse_formula(f"y ~ x + __import__('os').system('touch {sentinel}')")
    assert not sentinel.exists()


def test_span_counts_characters_not_bytes():
    formula = "y ~ log(größe) + I(größe.real) + (1 | g)"
    with pytest.raises(hl.FormulaError) as info:
        parse_formula(formula)
    start, end = info.value.span
    assert formula[start:end] == "größe.real"


@pytest.mark.slow
def test_allowed_transforms_fit(small_df):
    df = small_df.assign(x=small_df["x"].abs() + 0.5, w=np.arange(len(small_df)) % 7 + 1.0)
    df["my w"] = df["w"] * 2
    formula = (
        "y ~ sqrt(x) + log1p(w) + exp(x / 10) + I(x ** 2 - 3 * x) + np.log(x) + C(b, Sum) "
        "+ log(`my w`):x + (1 + scale(x) || a)"
    )
    fit = hl.Model(formula, df).fit(method="map", chains=2, draws=100, seed=1)
    table = fit.summary()
    assert "beta[log1p(w)]" in table.index
    assert "beta[C(b, Sum)[S.b0]]" in table.index
    assert np.isfinite(table[["mean", "sd"]].to_numpy()).all()
    # The transforms are re-applied to new rows: predicting the data reproduces the design.
    pred = fit.predict(df.iloc[:5])
    assert np.isfinite(np.asarray(pred["mean"])).all()


def test_contrast_forms_are_allowed(small_df):
    for term in ("C(b, Treatment('b1'))", "C(b, contr.treatment, levels=['b2', 'b1', 'b0'])"):
        model = hl.Model(f"y ~ {term} + (1 | a)", small_df)
        assert len(model.data.design.coef_names) == 3
