"""Tests for :mod:`hierlm.formula`."""

from __future__ import annotations

import re

import pytest
from formulaic import Formula

from hierlm.errors import FormulaError
from hierlm.formula import parse_formula
from hierlm.spec import Block, LevelSpec, ModelSpec


def _error(formula: str, match: str, **kwargs: str) -> FormulaError:
    """Parse ``formula``, expecting a FormulaError whose message matches ``match``."""
    with pytest.raises(FormulaError, match=match) as info:
        parse_formula(formula, **kwargs)
    return info.value


def _pointed(formula: str, match: str, **kwargs: str) -> str:
    """The text of ``formula`` that the expected error points at."""
    exc = _error(formula, match, **kwargs)
    assert exc.formula == formula
    assert exc.span is not None
    return formula[slice(*exc.span)]


def _corr(*terms: str) -> Block:
    return Block(terms, True)


def _uncorr(term: str) -> Block:
    return Block((term,), False)


# -- main examples ---------------------------------------------------------------------


def test_radon_nested_slope() -> None:
    formula = "log_radon ~ floor + (1 + floor | state/county)"
    block = _corr("1", "floor")
    assert parse_formula(formula) == ModelSpec(
        formula=formula,
        response="log_radon",
        transform="identity",
        fixed="floor",
        levels=(
            LevelSpec("state", ("state",), (block,)),
            LevelSpec("county", ("state", "county"), (block,)),
        ),
        family="gaussian",
        pooling="partial",
    )


def test_double_bar_three_levels() -> None:
    formula = "y ~ x + (1 + x || a/b/c)"
    blocks = (_uncorr("1"), _uncorr("x"))
    assert parse_formula(formula) == ModelSpec(
        formula=formula,
        response="y",
        transform="identity",
        fixed="x",
        levels=(
            LevelSpec("a", ("a",), blocks),
            LevelSpec("b", ("a", "b"), blocks),
            LevelSpec("c", ("a", "b", "c"), blocks),
        ),
    )


def test_separate_bars_on_one_chain() -> None:
    formula = "y ~ x + (1 + x | state) + (1 | state:county)"
    assert parse_formula(formula) == ModelSpec(
        formula=formula,
        response="y",
        transform="identity",
        fixed="x",
        levels=(
            LevelSpec("state", ("state",), (_corr("1", "x"),)),
            LevelSpec("county", ("state", "county"), (_corr("1"),)),
        ),
    )


def test_log_response() -> None:
    formula = "log(y) ~ x + (1|g)"
    assert parse_formula(formula) == ModelSpec(
        formula=formula,
        response="y",
        transform="log",
        fixed="x",
        levels=(LevelSpec("g", ("g",), (_corr("1"),)),),
        family="gaussian",
        pooling="partial",
    )


def test_levels_are_sorted_top_down_whatever_the_order_written() -> None:
    spec = parse_formula("y ~ (1 | state:county) + (1 + x | state)")
    assert [level.path for level in spec.levels] == [("state",), ("state", "county")]
    assert spec.levels[0].blocks == (_corr("1", "x"),)
    assert spec.group_columns == ("state", "county")


def test_formula_is_kept_as_given() -> None:
    formula = "  y~x+(1|g)  "
    spec = parse_formula(formula)
    assert spec.formula == formula
    assert spec.fixed == "x"


# -- family and pooling ----------------------------------------------------------------


def test_lognormal_family_sets_log_transform() -> None:
    spec = parse_formula("y ~ x + (1 | g)", family="lognormal")
    assert spec.family == "lognormal"
    assert spec.transform == "log"
    assert spec.response == "y"


def test_gaussian_family_is_identity() -> None:
    spec = parse_formula("y ~ x", family="gaussian")
    assert (spec.family, spec.transform) == ("gaussian", "identity")


def test_lognormal_with_log_response_is_double_log() -> None:
    formula = "log(y) ~ x + (1 | g)"
    assert _pointed(formula, "log twice", family="lognormal") == "log(y)"


def test_unknown_family_names_allowed_values() -> None:
    exc = _error("y ~ x", r"unknown family 'gamma'.*'gaussian', 'lognormal'", family="gamma")
    assert exc.span is None


@pytest.mark.parametrize("pooling", ["partial", "none", "complete"])
def test_pooling_passes_through_and_keeps_levels(pooling: str) -> None:
    spec = parse_formula("y ~ x + (1 | a/b)", pooling=pooling)
    assert spec.pooling == pooling
    assert [level.name for level in spec.levels] == ["a", "b"]


def test_unknown_pooling_names_allowed_values() -> None:
    exc = _error("y ~ x", r"unknown pooling 'full'.*'partial', 'none', 'complete'", pooling="full")
    assert exc.span is None


# -- left-hand side --------------------------------------------------------------------


def test_backtick_names() -> None:
    spec = parse_formula("`my y` ~ `my x` + (1 + `my x` | `the state`/county)")
    assert spec.response == "my y"
    assert spec.fixed == "`my x`"
    assert spec.levels[1].path == ("the state", "county")
    assert spec.levels[0].name == "the state"
    assert spec.levels[0].terms == ("1", "my x")


def test_log_of_backtick_name() -> None:
    spec = parse_formula("log( `my y` ) ~ x")
    assert (spec.response, spec.transform) == ("my y", "log")


def test_column_called_log_is_a_plain_response() -> None:
    spec = parse_formula("log ~ x")
    assert (spec.response, spec.transform) == ("log", "identity")


def test_other_function_on_the_left() -> None:
    assert _pointed("sqrt(y) ~ x", "'sqrt' is not supported on the left") == "sqrt(y)"


def test_log_of_expression_on_the_left() -> None:
    assert _pointed("log(y + 1) ~ x", r"takes one column name") == "y + 1"
    assert _pointed("log() ~ x", r"takes one column name") == "()"


def test_empty_left() -> None:
    assert _pointed("~ x + (1 | g)", "nothing on the left") == "~"


def test_left_with_several_columns() -> None:
    assert _pointed("y + z ~ x", "single column") == "+ z"
    assert _pointed("log(y) z ~ x", "single column") == "z"


def test_number_on_the_left() -> None:
    assert _pointed("1 ~ x", "must be the response column") == "1"


def test_missing_tilde() -> None:
    formula = "y + x"
    assert _pointed(formula, "no '~'") == formula


def test_two_tildes_point_at_the_second() -> None:
    formula = "y ~ x ~ z"
    exc = _error(formula, "more than one '~'")
    assert exc.span == (6, 7)


def test_empty_formula() -> None:
    _error("   ", "the formula is empty")


def test_empty_right() -> None:
    assert _pointed("y ~ ", "nothing on the right") == "~"


# -- fixed part ------------------------------------------------------------------------


def test_fixed_terms_pass_through() -> None:
    spec = parse_formula("y ~ log(x) + C(a) + x:z + x*z + scale(x) + I(x**2) + (1 | g)")
    assert spec.fixed == "log(x) + C(a) + x:z + x * z + scale(x) + I(x ** 2)"


def test_fixed_keeps_nested_parentheses_together() -> None:
    spec = parse_formula("y ~ I((x + 1) * (z - 2)) + (a + b):c + (1 | g)")
    assert spec.fixed == "I((x + 1) * (z - 2)) + (a + b):c"


def test_fixed_whitespace_is_normalised() -> None:
    spec = parse_formula("y ~   log( x )+C(a,levels=['u','v'])")
    assert spec.fixed == "log(x) + C(a, levels=['u', 'v'])"


@pytest.mark.parametrize(
    ("formula", "fixed"),
    [
        ("y ~ 0 + x + (1|g)", "0 + x"),
        ("y ~ x - 1", "x - 1"),
        ("y ~ x + (1 | g) - 1", "x - 1"),
        ("y ~ -1 + x + (1 | g)", "-1 + x"),
        ("y ~ 1 + x", "1 + x"),
        ("y ~ (1 | g)", "1"),
        ("y ~ (1 | g) + (0 + x | g)", "1"),
    ],
)
def test_intercept_text(formula: str, fixed: str) -> None:
    assert parse_formula(formula).fixed == fixed


def test_fixed_only_model_has_no_levels() -> None:
    spec = parse_formula("y ~ x + z")
    assert spec.levels == ()
    assert spec.group_columns == ()


# -- varying terms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bar", "terms"),
    [
        ("(x | g)", ("1", "x")),
        ("(1 + x | g)", ("1", "x")),
        ("(x + 1 | g)", ("1", "x")),
        ("(0 + x | g)", ("x",)),
        ("(-1 + x | g)", ("x",)),
        ("(x - 1 | g)", ("x",)),
        ("(1 + x - 1 | g)", ("x",)),
        ("(1 + x + z - z | g)", ("1", "x")),
        ("(1 | g)", ("1",)),
        ("(log( x ) + scale(z) | g)", ("1", "log(x)", "scale(z)")),
    ],
)
def test_varying_terms_and_implicit_intercept(bar: str, terms: tuple[str, ...]) -> None:
    spec = parse_formula(f"y ~ x + {bar}")
    assert spec.levels == (LevelSpec("g", ("g",), (Block(terms, True),)),)


@pytest.mark.parametrize(
    "term", ["log( x )", "I(x**2)", "`my x`", "`my x`:z", "C(a,Treatment)", "x:z", "np.log(x)"]
)
def test_varying_term_names_match_formulaic(term: str) -> None:
    spec = parse_formula(f"y ~ ({term} | g)")
    expected = [str(t) for t in Formula(f"y ~ 0 + {term}").rhs]
    assert spec.levels[0].terms == ("1", *expected)


def test_double_bar_gives_one_block_per_term() -> None:
    spec = parse_formula("y ~ x + (x + z || g)")
    assert spec.levels[0].blocks == (_uncorr("1"), _uncorr("x"), _uncorr("z"))


def test_same_level_blocks_merge_in_order() -> None:
    spec = parse_formula("y ~ x + (1 | g) + (0 + x | g)")
    assert spec.levels == (LevelSpec("g", ("g",), (_corr("1"), _corr("x"))),)
    assert spec.varying_terms == ("1", "x")


def test_same_level_merges_across_spellings() -> None:
    spec = parse_formula("y ~ (1 | a/b) + (0 + x || a:b)")
    assert spec.levels[0].blocks == (_corr("1"),)
    assert spec.levels[1].blocks == (_corr("1"), _uncorr("x"))


def test_redundant_parentheses_around_a_group_term() -> None:
    spec = parse_formula("y ~ x + ((1 | g))")
    assert spec.levels == (LevelSpec("g", ("g",), (_corr("1"),)),)


# -- groupings -------------------------------------------------------------------------


def test_prefix_alone_is_not_a_level() -> None:
    spec = parse_formula("y ~ x + (1 | state:county)")
    assert spec.levels == (LevelSpec("county", ("state", "county"), (_corr("1"),)),)


def test_combination_then_nesting() -> None:
    spec = parse_formula("y ~ (1 | a:b/c)")
    assert [level.path for level in spec.levels] == [("a", "b"), ("a", "b", "c")]
    assert [level.name for level in spec.levels] == ["b", "c"]


def test_deeper_bar_on_the_chain() -> None:
    spec = parse_formula("y ~ (0 + x | a) + (1 | a:b/c)")
    assert [level.path for level in spec.levels] == [("a",), ("a", "b"), ("a", "b", "c")]
    assert [level.terms for level in spec.levels] == [("x",), ("1",), ("1",)]


def test_crossed_groupings_make_chains() -> None:
    spec = parse_formula("y ~ x + (1 | county) + (1 | year)")
    assert [lv.path for lv in spec.levels] == [("county",)]
    assert [[lv.path for lv in chain] for chain in spec.crossed] == [[("year",)]]
    assert not spec.collapsible
    assert spec.all_group_columns == ("county", "year")


def test_diverging_paths_make_two_chains() -> None:
    spec = parse_formula("y ~ (1 | state/county) + (1 | region/district)")
    assert [lv.path for lv in spec.levels] == [("state",), ("state", "county")]
    assert [[lv.path for lv in c] for c in spec.crossed] == [[("region",), ("region", "district")]]


def test_sibling_combinations_are_crossed_chains() -> None:
    spec = parse_formula("y ~ (1 | a:b) + (1 | a:c)")
    assert [lv.path for lv in spec.levels] == [("a", "b")]
    assert [[lv.path for lv in c] for c in spec.crossed] == [[("a", "c")]]


def test_one_level_name_in_two_chains_is_refused() -> None:
    formula = "y ~ (1 | state/county) + (1 | region/county)"
    assert _pointed(formula, "would both be the level 'county'") == "region/county"


@pytest.mark.parametrize(
    ("formula", "match", "pointed"),
    [
        ("y ~ (1 | f(g))", "not a function call", "f(g)"),
        ("y ~ (1 | a + b)", "crossed groupings", "+"),
        ("y ~ (1 | a * b)", "crossed groupings", "*"),
        ("y ~ (1 | a//b)", "'//' is not a grouping operator", "//"),
        ("y ~ (1 | a/)", "no column after it", "/"),
        ("y ~ (1 | /a)", "needs a column name on each side", "/"),
        ("y ~ (1 | 2)", "cannot appear in a grouping", "2"),
        ("y ~ (1 | (g))", "cannot appear in a grouping", "("),
    ],
)
def test_bad_groupings(formula: str, match: str, pointed: str) -> None:
    assert _pointed(formula, match) == pointed


def test_empty_name_between_colons() -> None:
    formula = "y ~ (1 | a::b)"
    exc = _error(formula, "needs a column name on each side")
    assert exc.span == (11, 12)


def test_column_twice_in_one_grouping() -> None:
    formula = "y ~ (1 | g/g)"
    exc = _error(formula, "column 'g' appears twice")
    assert exc.span == (11, 12)


def test_column_twice_across_a_chain() -> None:
    formula = "y ~ (1 | a/b) + (1 | a:b:a)"
    exc = _error(formula, "column 'a' appears twice")
    assert exc.span == (25, 26)


# -- errors in group terms -------------------------------------------------------------


def test_same_term_twice_at_one_level_points_at_second() -> None:
    formula = "y ~ (1 + x | g) + (0 + x | g)"
    exc = _error(formula, "'x' already varies by g")
    assert exc.span == (23, 24)


def test_intercept_twice_at_one_level() -> None:
    formula = "y ~ (1 | a) + (1 | a/b)"
    exc = _error(formula, "'1' already varies by a")
    assert exc.span == (15, 16)


def test_implicit_intercept_twice_at_one_level() -> None:
    formula = "y ~ (1 | g) + (x | g)"
    exc = _error(formula, r"intercept is implicit.*\(0 \+ x \| g\)")
    assert exc.span == (15, 16)


def test_term_twice_in_one_bar() -> None:
    formula = "y ~ (x + x | g)"
    exc = _error(formula, "'x' is listed twice")
    assert exc.span == (9, 10)
    assert _pointed("y ~ (1 + 1 | g)", "'1' is listed twice") == "1"


@pytest.mark.parametrize(
    "formula", ["y ~ (0 | g)", "y ~ (-1 | g)", "y ~ (1 - 1 | g)", "y ~ (0 + x - x | g)"]
)
def test_group_term_that_removes_everything(formula: str) -> None:
    assert _pointed(formula, "removes every term") == "|"


def test_empty_left_of_bar() -> None:
    assert _pointed("y ~ x + ( | g)", "nothing before '\\|'") == "|"
    assert _pointed("y ~ x + ( || g)", "nothing before '\\|\\|'") == "||"


def test_empty_right_of_bar() -> None:
    assert _pointed("y ~ x + (1 | )", "nothing after '\\|'") == "|"


def test_number_alone_in_a_group_term() -> None:
    assert _pointed("y ~ (2 + x | g)", "cannot stand alone") == "2"
    assert _pointed("y ~ (x - 0 | g)", "cannot stand alone") == "- 0"


def test_operator_inside_a_varying_term() -> None:
    assert _pointed("y ~ (x*z | g)", "not supported inside a varying term") == "*"


def test_nested_bar() -> None:
    formula = "y ~ (1 | (x | g))"
    exc = _error(formula, "inside another group term")
    assert exc.span == (12, 13)


def test_two_bars_in_one_group_term() -> None:
    formula = "y ~ (1 | a | b)"
    exc = _error(formula, "more than one '\\|'")
    assert exc.span == (11, 12)


def test_bar_outside_parentheses() -> None:
    assert _pointed("y ~ x + 1 | g", "outside parentheses") == "|"
    assert _pointed("y ~ x || g", "outside parentheses") == "||"


def test_bar_inside_a_fixed_term() -> None:
    assert _pointed("y ~ log((1 | g))", "must stand alone") == "|"
    assert _pointed("y ~ (1 | g):x", "must stand alone") == "|"


def test_group_term_cannot_be_removed() -> None:
    formula = "y ~ x - (1 | g)"
    assert _pointed(formula, "cannot be removed") == "-"


# -- syntax errors ---------------------------------------------------------------------


def test_unclosed_parenthesis() -> None:
    formula = "y ~ x + (1 | g"
    exc = _error(formula, "never closed")
    assert exc.span == (8, 9)


def test_unmatched_closing_parenthesis() -> None:
    formula = "y ~ log(x)) + z"
    exc = _error(formula, "no matching")
    assert exc.span == (10, 11)


def test_mismatched_brackets() -> None:
    assert _pointed("y ~ (x] + z", "does not match") == "]"


def test_unknown_character() -> None:
    assert _pointed("y ~ x $ z", r"unknown character '\$'") == "$"
    assert _pointed("y ~ x + z;", "unknown character") == ";"


def test_trailing_plus() -> None:
    formula = "y ~ x + (1 | g) +"
    exc = _error(formula, "trailing '\\+'")
    assert exc.span == (16, 17)


def test_trailing_plus_in_a_group_term() -> None:
    assert _pointed("y ~ (1 + | g)", "trailing '\\+'") == "+"


def test_two_operators_in_a_row() -> None:
    formula = "y ~ x + + z"
    exc = _error(formula, "no term")
    assert exc.span == (8, 9)


def test_leading_plus() -> None:
    assert _pointed("y ~ + x", "no term before it") == "+"


def test_empty_parentheses() -> None:
    assert _pointed("y ~ x + ()", "empty parentheses") == "()"


def test_comma_outside_a_call() -> None:
    assert _pointed("y ~ x, z", "',' outside a function call") == ","


def test_backtick_errors() -> None:
    assert _pointed("y ~ `my x", "never closed") == "`my x"
    assert _pointed("y ~ `` + x", "empty backtick") == "``"


def test_unclosed_string() -> None:
    assert _pointed("y ~ C(a, levels=['u)", "never closed") == "'u)"


def test_message_shows_the_formula_with_a_caret() -> None:
    formula = "y ~ x + (1 | county) + (1 | c/county)"
    exc = _error(formula, "both be the level")
    lines = str(exc).splitlines()
    assert lines[-2] == f"    {formula}"
    assert lines[-1] == "    " + " " * 13 + "^" * len("county")


def test_trials_and_offset_are_read() -> None:
    spec = parse_formula("y | trials(n) ~ x + (1 | g)", family="binomial")
    assert (spec.trials, spec.fixed, spec.offset) == ("n", "x", None)
    spec = parse_formula("y ~ offset(log_days) + x + (1 | g)", family="poisson")
    assert (spec.trials, spec.fixed, spec.offset) == (None, "x", "log_days")
    assert not spec.collapsible and not spec.has_sigma and spec.link_scale


@pytest.mark.parametrize(
    ("formula", "family", "message", "token"),
    [
        (
            "y ~ x + offset(e)",
            "gaussian",
            "offset() is supported for family='poisson'",
            "offset(e)",
        ),
        ("y | trials(n) ~ x", "gaussian", "trials() is for family='binomial'", "y | trials(n)"),
        ("y ~ x", "binomial", "needs the number of trials", "y"),
        ("y | foo(n) ~ x", "binomial", "only trials(column) or se(column)", "foo(n)"),
        ("y | trials(n, m) ~ x", "binomial", "takes one column name", "trials(n, m)"),
        ("log(y) ~ x", "poisson", "log(...) on the left is for gaussian models", "log(y)"),
        ("y ~ offset(a) + offset(b)", "poisson", "only one offset()", "offset(b)"),
    ],
)
def test_family_formula_errors_point_at_the_token(formula, family, message, token) -> None:
    exc = _error(formula, re.escape(message), family=family)
    assert exc.span is not None
    assert formula[exc.span[0] : exc.span[1]] == token
