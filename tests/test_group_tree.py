"""Group trees from grouping columns of any dtype."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hierlm.formula import parse_formula
from hierlm.group_tree import build_group_tree, join_path, label_text

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


def _reference(frame: pd.DataFrame, depths: list[int], columns: str):
    """Labels, parents and each row's leaf, from sorted tuples of label text."""
    rows = list(zip(*(label_text(frame[c]).to_numpy() for c in columns), strict=True))
    labels, parents, index, above = [], [], {}, 0
    for depth in depths:
        nodes = sorted({r[:depth] for r in rows})
        parents.append([index[p[:above]] if index else 0 for p in nodes])
        index, above = {p: i for i, p in enumerate(nodes)}, depth
        labels.append(tuple(join_path(list(p)) for p in nodes))
    return labels, parents, [index[r] for r in rows]


@pytest.mark.parametrize(
    ("formula", "depths", "high"),
    [
        ("y ~ x + (1 | a/b/c)", [1, 2, 3], 40),
        ("y ~ x + (1 | a) + (1 | a:b:c)", [1, 3], 40),
        # Six columns of ~3,000 labels: the combined key would overflow int64, so it is
        # renumbered on the way.
        ("y ~ x + (1 | a/b/c/d/e/g)", [1, 2, 3, 4, 5, 6], 3_500),
    ],
)
def test_tree_equals_sorted_paths(formula, depths, high):
    rng = np.random.default_rng(len(depths))
    n = 4_000
    frame = pd.DataFrame(
        {
            "y": np.zeros(n),
            "x": np.zeros(n),
            "a": rng.integers(0, high, n).astype(str),
            **{c: rng.integers(0, high, n) for c in "bcdeg"},
        }
    )
    frame["c"] = frame["c"].astype(float)  # labels as text: 7.0 reads "7"
    tree, leaf = build_group_tree(parse_formula(formula), frame)
    labels, parents, want_leaf = _reference(frame, depths, "abcdeg"[: depths[-1]])
    assert tree.labels == tuple(labels)
    for got, want in zip(tree.parents, parents, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(leaf, want_leaf)
