"""Refuse formula terms that would run code, before formulaic evaluates anything.

formulaic evaluates a function call in a formula term (``log(x)``, ``I(x ** 2)``) as Python.
A formula is data a user may paste from anywhere, so hierlm lets through only column names,
numbers and the calls below; the Python of each call is parsed with :mod:`ast` and every node
is checked against an allow-list, never evaluated here.

* ``log``, ``log1p``, ``log2``, ``log10``, ``exp``, ``sqrt`` (also as ``np.log`` etc.),
  ``scale``, ``center``: one argument, an expression of the kind ``I(...)`` takes.
* ``I(...)``: arithmetic (``+ - * / **``, unary minus) on column names, numbers and the
  calls above.
* ``C(column, contrasts, levels=[...])``: a categorical column; the contrasts are one of
  ``Treatment``, ``Sum``, ``Helmert``, ``Diff``, ``Poly`` (or ``contr.treatment`` etc.), with
  constant arguments, and the levels a list of constants.
"""

from __future__ import annotations

import ast
import re

import numpy as np

from .errors import FormulaError

__all__ = ["ALLOWED_FUNCTIONS", "FORMULA_CONTEXT", "check_call", "required_columns"]

_NUMERIC = ("log", "log1p", "log2", "log10", "exp", "sqrt")
_STATEFUL = ("scale", "center")
ALLOWED_FUNCTIONS: tuple[str, ...] = (*_NUMERIC, *_STATEFUL, "I", "C")
"""The functions a formula term may call (numeric ones also as ``np.<name>``)."""

FORMULA_CONTEXT = {"log1p": np.log1p, "sqrt": np.sqrt}
"""What formulaic evaluates terms in, on top of its own transforms (which lack these two)."""

_CONTRASTS = ("Treatment", "Sum", "Helmert", "Diff", "Poly")
_CONTR_MODULE = ("treatment", "sum", "helmert", "diff", "poly")
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
_ALLOWED_TEXT = (
    f"only column names, numbers and the functions {', '.join(ALLOWED_FUNCTIONS)} may be "
    "used in a formula; compute anything else as a column of the data first"
)


def required_columns(rhs: str) -> set[str]:
    """The data columns a right-hand side reads.

    formulaic's own ``required_variables`` misses the column inside a stateful transform
    (``scale(x)``, ``center(x)``) and reads a dotted lookup ``x.y`` as ``x``; here a looked-up
    factor is its whole name, and a call contributes the names it uses as values.
    """
    from formulaic import Formula

    out: set[str] = set()
    for term in Formula(rhs):
        for factor in term.factors:
            method = factor.eval_method.value
            if method == "lookup":
                out.add(str(factor.expr))
            elif method == "python":
                out |= _value_names(str(factor.expr))
    return out


def _value_names(expr: str) -> set[str]:
    """Names ``expr`` reads as values (columns): not called functions, modules or contrasts."""
    quoted = re.findall(r"`([^`]*)`", expr)
    tree = ast.parse(re.sub(r"`[^`]*`", "0", expr), mode="eval")
    skip = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    skip |= {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names = {
        n.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and id(n) not in skip and n.id not in _CONTRASTS
    }
    return names | set(quoted)


class _Refusal(Exception):
    """A node that is not allowed, with the reason."""

    def __init__(self, node: ast.AST, reason: str):
        super().__init__(reason)
        self.node = node
        self.reason = reason


def check_call(source: str, formula: str, offset: int) -> None:
    """Refuse a function call in a formula term unless every part of it is allowed.

    Parameters
    ----------
    source
        The call as written, e.g. ``"log(x + 1)"``, with backtick-quoted names already
        replaced by identifiers of the same length (so that positions still match).
    formula
        The whole formula, for the error message.
    offset
        Where ``source`` starts in ``formula``.

    Raises
    ------
    FormulaError
        Pointing at the first node that is not allowed.
    """
    try:
        tree = ast.parse(source.replace("\n", " "), mode="eval")
    except SyntaxError as exc:
        start = offset + max(0, (exc.offset or 1) - 1)
        raise FormulaError(
            f"this function call is not valid Python syntax ({exc.msg}); {_ALLOWED_TEXT}",
            formula,
            (min(start, offset + len(source) - 1), offset + len(source)),
        ) from None
    try:
        _call(tree.body)
    except _Refusal as refusal:
        span = _span(refusal.node, source, offset)
        raise FormulaError(refusal.reason, formula, span) from None


def _span(node: ast.AST, source: str, offset: int) -> tuple[int, int]:
    """Character span of ``node`` in the formula (ast counts UTF-8 bytes)."""
    raw = source.encode()
    start = getattr(node, "col_offset", 0)
    end = getattr(node, "end_col_offset", None) or len(raw)
    return offset + len(raw[:start].decode()), offset + len(raw[:end].decode())


def _function_name(func: ast.expr) -> str:
    """The allowed function a call's target names, or a refusal."""
    if isinstance(func, ast.Name) and func.id in ALLOWED_FUNCTIONS:
        return func.id
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in ("np", "numpy")
        and func.attr in _NUMERIC
    ):
        return func.attr
    if isinstance(func, ast.Name):
        raise _Refusal(func, f"the function '{func.id}' is not allowed; {_ALLOWED_TEXT}")
    # point at the first step of the chain, e.g. x.__class__ in x.__class__.mro()
    parts = [n for n in ast.walk(func) if isinstance(n, ast.Attribute | ast.Call | ast.Subscript)]
    first = min(parts, key=lambda n: n.end_col_offset or 0) if parts else func
    raise _Refusal(
        first,
        f"'{ast.unparse(first)}' is not allowed: a formula may call only the functions "
        f"{', '.join(ALLOWED_FUNCTIONS)}, with no attribute access or indexing",
    )


def _call(node: ast.expr) -> None:
    """Check one call of an allowed function."""
    if not isinstance(node, ast.Call):
        raise _Refusal(node, f"a formula term must be a column or a function call; {_ALLOWED_TEXT}")
    name = _function_name(node.func)
    if name == "C":
        _categorical(node)
        return
    if node.keywords:
        keyword = node.keywords[0]
        raise _Refusal(
            keyword.value,
            f"{name}() takes no keyword arguments here ('{keyword.arg}'); write {name}(x)",
        )
    if len(node.args) != 1:
        raise _Refusal(node, f"{name}() takes one argument, e.g. {name}(x)")
    _arithmetic(node.args[0])


def _arithmetic(node: ast.expr) -> None:
    """Columns, numbers, allowed calls and + - * / ** between them."""
    if isinstance(node, ast.Name):
        _column(node)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise _Refusal(node, f"only numbers may appear in arithmetic, not {node.value!r}")
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        _arithmetic(node.operand)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, _ARITHMETIC):
        if isinstance(node.op, ast.Pow) and not _has_column(node):
            # Python would compute a power of two constants exactly, as a big integer.
            raise _Refusal(node, "a power of two numbers; write the number it equals instead")
        _arithmetic(node.left)
        _arithmetic(node.right)
    elif isinstance(node, ast.Call):
        _call(node)
    elif isinstance(node, ast.Attribute):
        raise _Refusal(
            node,
            "attribute access ('.') is not allowed in a formula; if the column name has a "
            f"dot in it, quote it in backticks: `{ast.unparse(node)}`",
        )
    else:
        raise _Refusal(
            node,
            f"'{ast.unparse(node)}' is not arithmetic on columns and numbers; {_ALLOWED_TEXT}",
        )


def _has_column(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) for n in ast.walk(node))


def _column(node: ast.Name) -> None:
    if node.id.startswith("__"):
        raise _Refusal(node, f"'{node.id}' is not allowed as a column name in a formula")


def _categorical(node: ast.Call) -> None:
    """``C(column, contrasts, levels=[...])``."""
    if not node.args or not isinstance(node.args[0], ast.Name):
        raise _Refusal(node, "C() takes a column name first, e.g. C(a) or C(a, Sum)")
    _column(node.args[0])
    if len(node.args) > 2:
        raise _Refusal(node.args[2], "C() takes a column and one contrast, e.g. C(a, Sum)")
    for extra in node.args[1:]:
        _contrast(extra)
    for keyword in node.keywords:
        if keyword.arg == "contrasts":
            _contrast(keyword.value)
        elif keyword.arg == "levels":
            _levels(keyword.value)
        else:
            raise _Refusal(
                keyword.value,
                f"C() takes contrasts= and levels=, not {keyword.arg}=; e.g. "
                "C(a, levels=['u', 'v'])",
            )


def _contrast(node: ast.expr) -> None:
    target = node.func if isinstance(node, ast.Call) else node
    named = isinstance(target, ast.Name) and target.id in _CONTRASTS
    from_module = (
        isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "contr"
        and target.attr in _CONTR_MODULE
    )
    if not (named or from_module):
        raise _Refusal(
            node,
            f"unknown contrasts {ast.unparse(node)} in C(); use one of {', '.join(_CONTRASTS)}",
        )
    if isinstance(node, ast.Call):
        for value in (*node.args, *(k.value for k in node.keywords)):
            _constant(value)


def _levels(node: ast.expr) -> None:
    if not isinstance(node, ast.List | ast.Tuple):
        raise _Refusal(node, "levels= in C() must be a list of values, e.g. levels=['u', 'v']")
    for item in node.elts:
        _constant(item)


def _constant(node: ast.expr) -> None:
    negated = isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
    value = node.operand if isinstance(node, ast.UnaryOp) and negated else node
    if not isinstance(value, ast.Constant) or (negated and isinstance(value.value, str)):
        raise _Refusal(node, f"'{ast.unparse(node)}' must be a constant (a number or a string)")
