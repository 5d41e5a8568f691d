"""Group trees from grouping columns of any dtype."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hierlm.formula import parse_formula
from hierlm.group_tree import build_group_tree

SPEC = parse_formula("y ~ x + (1 | a/b)")


def _frame(a, b):
    return pd.DataFrame({"y": np.zeros(len(a)), "x": np.zeros(len(a)), "a": a, "b": b})


def test_integer_categorical_and_text_columns_give_the_same_tree():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, 200)
    b = rng.integers(0, 12, 200)
    text, _ = build_group_tree(SPEC, _frame(a.astype(str), b.astype(str)))
    want_tree, want_leaf = text, build_group_tree(SPEC, _frame(a.astype(str), b.astype(str)))[1]
    for frame in (
        _frame(a, b),
        _frame(pd.Categorical(a), pd.Categorical(b)),
        _frame(a.astype(np.int8), b.astype(object)),
    ):
        tree, leaf = build_group_tree(SPEC, frame)
        assert tree.labels == want_tree.labels
        np.testing.assert_array_equal(leaf, want_leaf)
        for got, want in zip(tree.parents, want_tree.parents, strict=True):
            np.testing.assert_array_equal(got, want)


def test_values_that_print_the_same_are_one_group():
    tree, leaf = build_group_tree(SPEC, _frame(["s", "s", "t", "t"], [1, "1", 2, "x"]))
    assert tree.labels[1] == ("s/1", "t/2", "t/x")
    np.testing.assert_array_equal(leaf, [0, 0, 1, 2])


def test_children_are_sorted_by_parent():
    rng = np.random.default_rng(1)
    frame = _frame(rng.choice(["z", "m", "a"], 500), rng.integers(0, 40, 500))
    tree, _ = build_group_tree(SPEC, frame)
    assert np.all(np.diff(tree.parents[1]) >= 0)
