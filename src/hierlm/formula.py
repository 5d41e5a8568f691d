"""Parse an lme4/brms-style model formula into a :class:`~hierlm.spec.ModelSpec`.

The syntax is ``response ~ fixed terms + (varying | grouping) + ...``:

* The left-hand side is one column (a name, or any name quoted in backticks such as
  `` `my col` ``), or ``log(column)`` to fit the model to the log of the response.
* The right-hand side is terms joined by ``+`` (and ``-`` to remove, as in ``- 1``). A
  parenthesised term with a ``|`` or ``||`` in it is a group term; everything else is the
  fixed part and is handed to formulaic unchanged apart from whitespace. A fixed term
  written twice (``x + x``) counts once, as in R's ``terms()`` and formulaic.
* Every term may use only column names, numbers, formula operators and the functions of
  :mod:`hierlm.formula_guard`; anything else is refused before formulaic evaluates it.
* In a group term ``(1 + x | g)`` the intercept is implicit (``(x | g)`` is
  ``(1 + x | g)``; write ``0 +`` or ``- 1`` to drop it). ``|`` makes one correlated block,
  ``||`` one uncorrelated block per term.
* The grouping is a column ``g``, a nesting ``a/b/c`` (levels ``a``, ``a:b`` and
  ``a:b:c``) or a combination ``a:b`` (one level). All groupings must lie on one nesting
  chain; crossed groupings are not supported.

The parser is hand-written so that every :class:`~hierlm.errors.FormulaError` carries
the ``(start, end)`` character span of the offending token in the formula as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from hierlm.errors import FormulaError
from hierlm.formula_guard import check_call
from hierlm.spec import FAMILIES, Block, Family, LevelSpec, ModelSpec, Pooling, Transform

__all__ = ["parse_formula"]

_FAMILIES: tuple[str, ...] = FAMILIES
_POOLINGS: tuple[str, ...] = ("partial", "none", "complete")

_NAME = "name"
_QUOTED = "quoted"
_NUMBER = "number"
_STRING = "string"
_OP = "op"

# Longest first, so that "**" is not read as two "*".
_OPERATORS: tuple[str, ...] = (
    "**",
    "//",
    "||",
    "==",
    "!=",
    "<=",
    ">=",
    "+",
    "-",
    "*",
    "/",
    ":",
    "^",
    ",",
    ".",
    "=",
    "<",
    ">",
    "&",
    "|",
    "~",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
)
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {")": "(", "]": "[", "}": "{"}
_BARS = ("|", "||")
# Operators that may appear outside brackets in a varying term: interactions and
# attribute access (``x:z``, ``np.log(x)``).
_TERM_OPERATORS = (":", ".")


@dataclass(frozen=True)
class _Token:
    """One token with its position in the formula."""

    kind: str
    text: str
    start: int
    end: int

    @property
    def name(self) -> str:
        """The column name a name token stands for (backticks removed)."""
        return self.text[1:-1] if self.kind == _QUOTED else self.text

    def is_op(self, *texts: str) -> bool:
        """Whether this is an operator token with one of ``texts``."""
        return self.kind == _OP and self.text in texts


@dataclass(frozen=True)
class _Term:
    """A term of a ``+``/``-`` list: tokens ``lo`` to ``hi`` (exclusive)."""

    sign: str
    sign_index: int | None
    lo: int
    hi: int


@dataclass(frozen=True)
class _Bar:
    """A parsed group term."""

    index: int
    grouping_span: tuple[int, int]
    paths: tuple[tuple[str, ...], ...]
    blocks: tuple[Block, ...]
    # (term, span to point at, whether the term is the implicit intercept)
    sources: tuple[tuple[str, tuple[int, int], bool], ...]
    grouping_text: str


def parse_formula(formula: str, family: str = "gaussian", pooling: str = "partial") -> ModelSpec:
    """Parse an lme4/brms-style formula into a model specification.

    Parameters
    ----------
    formula
        The model formula, e.g. ``"log_radon ~ floor + (1 + floor | state/county)"``.
    family
        One of ``gaussian``, ``lognormal``, ``student_t``, ``bernoulli``, ``binomial``,
        ``poisson``. ``"lognormal"`` fits the log of the response, so it cannot be
        combined with ``log(y)`` on the left-hand side. ``binomial`` needs its trials on
        the left: ``y | trials(n) ~ ...``. An ``offset(col)`` term on the right adds a
        column to the linear predictor with coefficient 1.
    pooling
        ``"partial"`` (the hierarchical model), ``"none"`` or ``"complete"``. It is passed
        through to the specification, which keeps its levels either way.

    Returns
    -------
    ModelSpec
        The response and its transform, the fixed-effect formula, the nesting chain of
        levels with their varying terms, the family and the pooling mode.

    Raises
    ------
    FormulaError
        When the formula cannot be parsed or uses something not supported (a crossed
        grouping, a function other than ``log`` on the left-hand side, ...), or when
        ``family`` or ``pooling`` is not one of the allowed values. Errors about the
        formula text carry the span of the offending token.

    Examples
    --------
    >>> spec = parse_formula("y ~ x + (1 + x | state/county)")
    >>> spec.fixed
    'x'
    >>> [level.path for level in spec.levels]
    [('state',), ('state', 'county')]
    """
    if not isinstance(formula, str):
        raise FormulaError(
            f"the formula must be a string, got {type(formula).__name__}; "
            "write it as text, e.g. 'y ~ x + (1 | g)'"
        )
    if family not in _FAMILIES:
        raise FormulaError(
            f"unknown family {family!r}; use one of {', '.join(map(repr, _FAMILIES))}",
            formula,
        )
    if pooling not in _POOLINGS:
        raise FormulaError(
            f"unknown pooling {pooling!r}; use one of {', '.join(map(repr, _POOLINGS))}",
            formula,
        )
    return _Parser(formula).parse(cast(Family, family), cast(Pooling, pooling))


def _tokenize(formula: str) -> list[_Token]:
    """Split ``formula`` into tokens, keeping each token's character span."""
    tokens: list[_Token] = []
    i = 0
    n = len(formula)
    while i < n:
        ch = formula[i]
        if ch.isspace():
            i += 1
            continue
        start = i
        if ch.isalpha() or ch == "_":
            i += 1
            while i < n and (formula[i].isalnum() or formula[i] == "_"):
                i += 1
            tokens.append(_Token(_NAME, formula[start:i], start, i))
        elif _is_digit(ch) or (ch == "." and i + 1 < n and _is_digit(formula[i + 1])):
            i = _scan_number(formula, i)
            tokens.append(_Token(_NUMBER, formula[start:i], start, i))
        elif ch == "`":
            close = formula.find("`", i + 1)
            if close < 0:
                raise FormulaError(
                    "this backtick-quoted name is never closed; add a closing '`', "
                    "e.g. `my column`",
                    formula,
                    (start, n),
                )
            if close == i + 1:
                raise FormulaError(
                    "empty backtick-quoted name; put the column name between the "
                    "backticks, e.g. `my column`",
                    formula,
                    (start, close + 1),
                )
            i = close + 1
            tokens.append(_Token(_QUOTED, formula[start:i], start, i))
        elif ch in "'\"":
            i = _scan_string(formula, i)
            tokens.append(_Token(_STRING, formula[start:i], start, i))
        else:
            for op in _OPERATORS:
                if formula.startswith(op, i):
                    i += len(op)
                    tokens.append(_Token(_OP, op, start, i))
                    break
            else:
                raise FormulaError(
                    f"unknown character {ch!r} in the formula; formulas are made of column "
                    "names, numbers, operators such as + - * / : and parentheses. If it is "
                    "part of a column name, quote the name in backticks, e.g. `a$b`",
                    formula,
                    (i, i + 1),
                )
    return tokens


def _is_digit(ch: str) -> bool:
    """Whether ``ch`` is an ASCII digit."""
    return "0" <= ch <= "9"


def _scan_number(formula: str, i: int) -> int:
    """Return the end of the number literal starting at ``i``."""
    n = len(formula)
    while i < n and _is_digit(formula[i]):
        i += 1
    if i < n and formula[i] == ".":
        i += 1
        while i < n and _is_digit(formula[i]):
            i += 1
    if i < n and formula[i] in "eE":
        j = i + 1
        if j < n and formula[j] in "+-":
            j += 1
        if j < n and _is_digit(formula[j]):
            i = j
            while i < n and _is_digit(formula[i]):
                i += 1
    return i


def _scan_string(formula: str, i: int) -> int:
    """Return the end of the string literal starting at ``i``."""
    quote = formula[i]
    j = i + 1
    while j < len(formula):
        if formula[j] == "\\":
            j += 2
            continue
        if formula[j] == quote:
            return j + 1
        j += 1
    raise FormulaError(
        f"this string is never closed; add a closing {quote}",
        formula,
        (i, len(formula)),
    )


def _display(path: tuple[str, ...]) -> str:
    """A level path as nesting syntax, e.g. ``state/county``."""
    return "/".join(path)


class _Parser:
    """Parser state for one formula: its tokens, nesting depths and bracket pairs."""

    def __init__(self, formula: str) -> None:
        self.formula = formula
        self.tokens = _tokenize(formula)
        self.depth: list[int] = []
        self.match: dict[int, int] = {}
        self._match_brackets()

    # -- helpers -------------------------------------------------------------------

    def _error(self, message: str, first: int, last: int | None = None) -> FormulaError:
        """A FormulaError spanning tokens ``first`` to ``last`` (inclusive)."""
        last = first if last is None else last
        span = (self.tokens[first].start, self.tokens[last].end)
        return FormulaError(message, self.formula, span)

    def _text(self, lo: int, hi: int) -> str:
        """The formula text of tokens ``lo`` to ``hi`` (exclusive), as written."""
        return self.formula[self.tokens[lo].start : self.tokens[hi - 1].end]

    def _match_brackets(self) -> None:
        """Pair every bracket and record each token's nesting depth."""
        stack: list[int] = []
        for i, tok in enumerate(self.tokens):
            if tok.is_op(*_CLOSERS):
                if not stack:
                    raise self._error(
                        f"'{tok.text}' has no matching '{_CLOSERS[tok.text]}'; "
                        f"remove it or add the '{_CLOSERS[tok.text]}' it closes",
                        i,
                    )
                opener = stack.pop()
                if self.tokens[opener].text != _CLOSERS[tok.text]:
                    expected = _OPENERS[self.tokens[opener].text]
                    raise self._error(
                        f"'{tok.text}' does not match the '{self.tokens[opener].text}' "
                        f"it closes; write '{expected}' here",
                        i,
                    )
                self.match[opener] = i
                self.match[i] = opener
            self.depth.append(len(stack))
            if tok.is_op(*_OPENERS):
                stack.append(i)
        if stack:
            i = stack[-1]
            text = self.tokens[i].text
            raise self._error(f"'{text}' is never closed; add the matching '{_OPENERS[text]}'", i)
        for i, tok in enumerate(self.tokens):
            if tok.is_op("(") and self.match[i] == i + 1:
                called = i > 0 and (
                    self.tokens[i - 1].kind in (_NAME, _QUOTED) or self.tokens[i - 1].is_op(")")
                )
                if not called:
                    raise self._error(
                        "empty parentheses; put a term inside them, e.g. (1 | g), or remove them",
                        i,
                        i + 1,
                    )

    def _split(self, lo: int, hi: int, base: int) -> list[_Term]:
        """Split tokens ``lo`` to ``hi`` on ``+`` and ``-`` at nesting depth ``base``."""
        terms: list[_Term] = []
        sign = "+"
        sign_index: int | None = None
        cur = lo
        for i in range(lo, hi):
            tok = self.tokens[i]
            if self.depth[i] != base or not tok.is_op("+", "-"):
                continue
            if i == cur:
                if i == lo and tok.text == "-":
                    sign, sign_index, cur = "-", i, i + 1
                    continue
                if i == lo:
                    raise self._error(f"'{tok.text}' has no term before it; remove it", i)
                raise self._error(
                    f"'{tok.text}' follows '{self.tokens[i - 1].text}' with no term "
                    "between them; remove one of them or put a term between",
                    i,
                )
            terms.append(_Term(sign, sign_index, cur, i))
            sign, sign_index, cur = tok.text, i, i + 1
        if cur < hi:
            terms.append(_Term(sign, sign_index, cur, hi))
        elif sign_index is not None:
            raise self._error(
                f"trailing '{self.tokens[sign_index].text}' has no term after it; "
                "add a term after it or remove it",
                sign_index,
            )
        return terms

    def _normalise(self, lo: int, hi: int, *, strip_quotes: bool) -> str:
        """Tokens ``lo`` to ``hi`` as text with whitespace normalised.

        Spacing follows Python's own style (``I(x ** 2)``, ``C(a, levels=['u'])``,
        ``x:z``), which is how formulaic names terms. With ``strip_quotes``, backticks
        around a bare column name are dropped, as in formulaic's term names.
        """
        base = self.depth[lo]
        parts: list[str] = []
        prev: _Token | None = None
        prev_unary = False
        for i in range(lo, hi):
            tok = self.tokens[i]
            text = tok.text
            if strip_quotes and tok.kind == _QUOTED and self.depth[i] == base:
                text = tok.name
            unary = tok.is_op("+", "-") and (
                prev is None or (prev.kind == _OP and prev.text not in _CLOSERS)
            )
            if prev is None or prev_unary:
                sep = ""
            elif tok.is_op(*_CLOSERS, ",") or prev.is_op(*_OPENERS):
                sep = ""
            elif tok.is_op("(", "[") and (prev.kind in (_NAME, _QUOTED) or prev.is_op(")", "]")):
                sep = ""
            elif tok.is_op(".", ":", "=") or prev.is_op(".", ":", "="):
                sep = ""
            else:
                sep = " "
            parts.append(sep + text)
            prev = tok
            prev_unary = unary
        return "".join(parts)

    # -- the formula ---------------------------------------------------------------

    def parse(self, family: Family, pooling: Pooling) -> ModelSpec:
        """Parse the formula into a :class:`ModelSpec`."""
        tokens = self.tokens
        if not tokens:
            raise FormulaError(
                "the formula is empty; write it as 'response ~ terms', e.g. 'y ~ x + (1 | g)'",
                self.formula,
            )
        tildes = [i for i, tok in enumerate(tokens) if tok.is_op("~")]
        if not tildes:
            raise self._error(
                "the formula has no '~'; write it as 'response ~ terms', e.g. 'y ~ x + (1 | g)'",
                0,
                len(tokens) - 1,
            )
        if len(tildes) > 1:
            raise self._error(
                "the formula has more than one '~'; write one response on the left and "
                "all terms on the right, e.g. 'y ~ x + (1 | g)'",
                tildes[1],
            )
        tilde = tildes[0]
        response, log_lhs, addition = self._parse_lhs(tilde)
        trials = addition[1] if addition and addition[0] == "trials" else None
        se = addition[1] if addition and addition[0] == "se" else None
        se_sigma = bool(addition and addition[0] == "se" and addition[2])
        if se is not None and family != "gaussian":
            raise self._error(
                f"se() is for family='gaussian' (known standard errors), not {family!r}",
                0,
                tilde - 1,
            )
        if log_lhs and family != "gaussian" and family != "lognormal":
            raise self._error(
                f"log(...) on the left is for gaussian models; family={family!r} models "
                f"{response!r} on its own scale through its link",
                0,
                tilde - 1,
            )
        if family == "binomial" and trials is None:
            raise self._error(
                "family='binomial' needs the number of trials of each row: write "
                f"'{response} | trials(n) ~ ...' with n the column of trials",
                0,
                tilde - 1,
            )
        if trials is not None and family != "binomial":
            raise self._error(
                f"trials() is for family='binomial', not {family!r}; pass family='binomial' "
                "or remove '| trials(...)'",
                0,
                tilde - 1,
            )
        if log_lhs and family == "lognormal":
            raise self._error(
                "log(...) on the left with family='lognormal' would take the log twice; "
                f"write '{response} ~ ...' with family='lognormal', or keep log(...) with "
                "family='gaussian'",
                0,
                tilde - 1,
            )
        fixed, chains, offset = self._parse_rhs(tilde, family)
        levels = chains[0] if chains else ()
        transform: Transform = "log" if log_lhs or family == "lognormal" else "identity"
        return ModelSpec(
            formula=self.formula,
            response=response,
            transform=transform,
            fixed=fixed,
            levels=levels,
            family=family,
            pooling=pooling,
            trials=trials,
            offset=offset,
            se=se,
            se_sigma=se_sigma,
            crossed=chains[1:],
        )

    def _parse_lhs(self, tilde: int) -> tuple[str, bool, tuple[str, str, bool] | None]:
        """Parse tokens before ``~``: the response, whether it is logged, and the addition
        after ``|`` as ``(function, column, sigma)`` (``trials(n)``, ``se(s)``,
        ``se(s, sigma = TRUE)``)."""
        tokens = self.tokens
        if tilde == 0:
            raise self._error(
                "nothing on the left of '~'; write the response column first, e.g. 'y ~ x'",
                tilde,
            )
        first = tokens[0]
        end = 1
        logged = False
        if first.kind in (_NAME, _QUOTED) and tilde > 1 and tokens[1].is_op("("):
            close = self.match[1]
            if first.kind == _QUOTED or first.text != "log":
                raise self._error(
                    f"the function '{first.name}' is not supported on the left of '~'; only "
                    "log(y) is. Transform the column in the data, or write log(y) ~ ...",
                    0,
                    close,
                )
            inner = range(2, close)
            if len(inner) != 1 or tokens[2].kind not in (_NAME, _QUOTED):
                first_bad, last_bad = (2, close - 1) if len(inner) else (1, close)
                raise self._error(
                    "log() on the left of '~' takes one column name; write e.g. log(y) ~ x",
                    first_bad,
                    last_bad,
                )
            response = tokens[2].name
            logged = True
            end = close + 1
        elif first.kind in (_NAME, _QUOTED):
            response = first.name
        else:
            raise self._error(
                f"the left of '~' must be the response column, not '{first.text}'; "
                "write e.g. 'y ~ x' (quote unusual names in backticks: `my y` ~ x)",
                0,
            )
        addition = None
        if end < tilde and tokens[end].is_op("|"):
            addition = self._parse_addition(end + 1, tilde)
            end = tilde
        if end < tilde:
            raise self._error(
                "the left of '~' must be a single column (or log(column)); move the other "
                "terms to the right of '~', e.g. 'y ~ x'",
                end,
                tilde - 1,
            )
        return response, logged, addition

    def _column_call(self, lo: int, hi: int, names: tuple[str, ...]) -> tuple[str, str] | None:
        """If tokens ``lo`` to ``hi`` are ``f(column)`` with ``f`` in ``names``, return
        ``(f, column)``; None when they are not a call of one of those functions."""
        tokens = self.tokens
        first = tokens[lo]
        if first.kind != _NAME or first.text not in names:
            return None
        if hi - lo < 2 or not tokens[lo + 1].is_op("(") or self.match.get(lo + 1) != hi - 1:
            return None
        if hi - lo != 4 or tokens[lo + 2].kind not in (_NAME, _QUOTED):
            raise self._error(
                f"{first.text}() takes one column name, e.g. {first.text}(n)", lo, hi - 1
            )
        return first.text, tokens[lo + 2].name

    def _parse_addition(self, lo: int, tilde: int) -> tuple[str, str, bool]:
        """The ``trials(n)``, ``se(s)`` or ``se(s, sigma = TRUE)`` after ``y |``."""
        if lo == tilde:
            raise self._error(
                "nothing after '|' on the left of '~'; write e.g. 'y | trials(n) ~ x'", lo - 1
            )
        tokens = self.tokens
        sigma = False
        hi = tilde
        call: tuple[str, str] | None
        if (
            tokens[lo].kind == _NAME
            and tokens[lo].text == "se"
            and hi - lo == 8
            and tokens[lo + 3].is_op(",")
        ):
            # se(s, sigma = TRUE): check the keyword, then read se(s) alone.
            key, eq, value = tokens[lo + 4], tokens[lo + 5], tokens[lo + 6]
            if not (key.text == "sigma" and eq.is_op("=") and value.text in ("TRUE", "True")):
                raise self._error(
                    "se() takes a column and optionally sigma = TRUE, e.g. se(s, sigma = TRUE)",
                    lo + 4,
                    lo + 6,
                )
            sigma = True
            call = (tokens[lo].text, tokens[lo + 2].name)
        else:
            call = self._column_call(lo, hi, ("trials", "se"))
        if call is None:
            raise self._error(
                "after '|' on the left of '~' only trials(column) or se(column) is supported, "
                "e.g. 'y | trials(n) ~ x' or 'y | se(s) ~ 1 + (1 | study)'",
                lo,
                tilde - 1,
            )
        return call[0], call[1], sigma

    def _parse_rhs(
        self, tilde: int, family: Family
    ) -> tuple[str, tuple[tuple[LevelSpec, ...], ...], str | None]:
        """Parse tokens after ``~``: the fixed formula, the levels and the offset column."""
        lo, hi = tilde + 1, len(self.tokens)
        if lo == hi:
            raise self._error(
                "nothing on the right of '~'; write the terms, e.g. 'y ~ x', "
                "or 'y ~ 1' for an intercept-only model",
                tilde,
            )
        fixed_parts: list[str] = []
        bars: list[_Bar] = []
        offset: str | None = None
        for term in self._split(lo, hi, 0):
            call = self._column_call(term.lo, term.hi, ("offset",))
            if call is not None:
                offset = self._offset(term, call[1], offset, family)
                continue
            group = self._find_group(term.lo, term.hi)
            if group is None:
                self._check_fixed_term(term)
                self._guard_term(term.lo, term.hi)
                text = self._normalise(term.lo, term.hi, strip_quotes=False)
                if not fixed_parts:
                    fixed_parts.append(f"-{text}" if term.sign == "-" else text)
                else:
                    fixed_parts.append(f"{term.sign} {text}")
                continue
            open_index, bar_index = group
            if term.sign_index is not None and term.sign == "-":
                raise self._error(
                    "a group term cannot be removed with '-'; delete the group term "
                    "instead, or write it with '+'",
                    term.sign_index,
                )
            bars.append(self._parse_bar(open_index, bar_index))
        if fixed_parts and fixed_parts[0].startswith("+ "):
            fixed_parts[0] = fixed_parts[0][2:]
        fixed = " ".join(fixed_parts) if fixed_parts else "1"
        return fixed, self._levels(bars), offset

    def _offset(self, term: _Term, column: str, seen: str | None, family: Family) -> str:
        if term.sign == "-":
            raise self._error(
                "an offset cannot be removed with '-'; write + offset(col)", term.lo, term.hi - 1
            )
        if seen is not None:
            raise self._error(
                "only one offset() is supported; add the columns in the data and use one",
                term.lo,
                term.hi - 1,
            )
        if family != "poisson":
            raise self._error(
                f"offset() is supported for family='poisson' (e.g. log exposure), not {family!r}; "
                "for a gaussian model subtract the column from the response instead",
                term.lo,
                term.hi - 1,
            )
        return column

    def _check_fixed_term(self, term: _Term) -> None:
        """Reject bars and commas in a fixed-effect term."""
        for i in range(term.lo, term.hi):
            tok = self.tokens[i]
            if tok.is_op(*_BARS):
                if self.depth[i] == 0:
                    raise self._error(
                        f"'{tok.text}' outside parentheses; a group term is written in "
                        f"parentheses, e.g. (1 + x {tok.text} g)",
                        i,
                    )
                raise self._error(
                    f"this '{tok.text}' is not a group term of its own; a group term must "
                    "stand alone on the right of '~', joined with '+', e.g. y ~ x + (1 | g)",
                    i,
                )
            if tok.is_op(",") and self.depth[i] == 0:
                raise self._error(
                    "',' outside a function call; join terms with '+', e.g. y ~ x + z", i
                )

    def _guard_term(self, lo: int, hi: int) -> None:
        """Refuse anything in tokens ``lo`` to ``hi`` that formulaic would run as Python,
        other than the calls :mod:`hierlm.formula_guard` allows."""
        i = lo
        while i < hi:
            tok = self.tokens[i]
            if tok.kind in (_NAME, _QUOTED):
                last = i
                # a.b is a dotted column name, which formulaic looks up; a.b(...) is a call
                while (
                    last + 2 < hi
                    and self.tokens[last + 1].is_op(".")
                    and self.tokens[last + 2].kind == _NAME
                ):
                    last += 2
                for j in range(i, last + 1, 2):
                    if self.tokens[j].name.startswith("__"):
                        raise self._error(
                            f"'{self.tokens[j].name}' is not allowed in a formula; names that "
                            "start with '__' are Python internals, not columns",
                            j,
                        )
                if last + 1 < hi and self.tokens[last + 1].is_op("("):
                    close = self.match[last + 1]
                    self._guard_call(i, close)
                    i = close + 1
                else:
                    i = last + 1
            elif tok.kind == _NUMBER or tok.is_op("+", "-", "*", "/", ":", "**", "^", "(", ")"):
                i += 1
            else:
                what = "a string" if tok.kind == _STRING else f"'{tok.text}'"
                raise self._error(
                    f"{what} cannot appear here; a formula term is made of column names, "
                    "numbers, the operators + - * / : ** and calls of log, log1p, exp, sqrt, "
                    "scale, center, C and I (quote unusual column names in backticks)",
                    i,
                )

    def _guard_call(self, first: int, close: int) -> None:
        """Check the call written from token ``first`` to ``close`` (its ')')."""
        start = self.tokens[first].start
        source = list(self.formula[start : self.tokens[close].end])
        for tok in self.tokens[first : close + 1]:
            if tok.kind == _QUOTED:
                if tok.name.startswith("__"):
                    raise self._error(
                        f"'{tok.name}' is not allowed in a formula; names that start with "
                        "'__' are Python internals, not columns",
                        self.tokens.index(tok),
                    )
                # the same length, so that positions in the parsed call still match
                width = tok.end - tok.start
                source[tok.start - start : tok.end - start] = "Q" + "_" * (width - 1)
        check_call("".join(source), self.formula, start)

    def _find_group(self, lo: int, hi: int) -> tuple[int, int] | None:
        """If tokens ``lo`` to ``hi`` are a group term, return its '(' and bar indices."""
        while self.tokens[lo].is_op("(") and self.match[lo] == hi - 1:
            inner = self.depth[lo] + 1
            bars = [
                i
                for i in range(lo + 1, hi - 1)
                if self.depth[i] == inner and self.tokens[i].is_op(*_BARS)
            ]
            if bars:
                if len(bars) > 1:
                    raise self._error(
                        f"more than one '{self.tokens[bars[1]].text}' in one group term; "
                        "write one group term per grouping, e.g. (1 | a) + (1 | a/b)",
                        bars[1],
                    )
                return lo, bars[0]
            # unwrap redundant parentheses, ((1 | g))
            lo, hi = lo + 1, hi - 1
        return None

    # -- group terms ---------------------------------------------------------------

    def _parse_bar(self, open_index: int, bar_index: int) -> _Bar:
        """Parse the group term ``( ... | ... )`` opening at ``open_index``."""
        close = self.match[open_index]
        inner = self.depth[open_index] + 1
        for i in range(open_index + 1, close):
            if self.depth[i] > inner and self.tokens[i].is_op(*_BARS):
                raise self._error(
                    "a group term inside another group term is not supported; write them "
                    "side by side, e.g. (1 | a) + (1 + x | a/b)",
                    i,
                )
        correlated = self.tokens[bar_index].text == "|"
        terms, sources = self._parse_varying(open_index + 1, bar_index, inner)
        paths = self._parse_grouping(bar_index, close, inner)
        if correlated:
            blocks: tuple[Block, ...] = (Block(tuple(terms), True),)
        else:
            blocks = tuple(Block((t,), False) for t in terms)
        return _Bar(
            index=bar_index,
            grouping_span=(self.tokens[bar_index + 1].start, self.tokens[close - 1].end),
            paths=paths,
            blocks=blocks,
            sources=sources,
            grouping_text=self._text(bar_index + 1, close),
        )

    def _parse_varying(
        self, lo: int, bar: int, base: int
    ) -> tuple[list[str], tuple[tuple[str, tuple[int, int], bool], ...]]:
        """Parse the left side of a bar: return its terms and where each was written."""
        bar_text = self.tokens[bar].text
        if lo == bar:
            raise self._error(
                f"nothing before '{bar_text}'; write the terms that vary, e.g. "
                f"(1 {bar_text} g) for a varying intercept or (1 + x {bar_text} g)",
                bar,
            )
        intercept = True
        explicit_intercept: tuple[int, int] | None = None
        added: list[tuple[str, tuple[int, int]]] = []
        removed: set[str] = set()
        for term in self._split(lo, bar, base):
            span = (self.tokens[term.lo].start, self.tokens[term.hi - 1].end)
            only = self.tokens[term.lo] if term.hi - term.lo == 1 else None
            if only is not None and only.kind == _NUMBER:
                if only.text == "1" and term.sign == "+":
                    if explicit_intercept is not None:
                        raise self._error(
                            f"the intercept '1' is listed twice in this group term; remove "
                            f"one, e.g. (1 + x {bar_text} g)",
                            term.lo,
                        )
                    explicit_intercept = span
                elif (only.text == "1" and term.sign == "-") or (
                    only.text == "0" and term.sign == "+"
                ):
                    intercept = False
                else:
                    written = f"{term.sign}{only.text}" if term.sign == "-" else only.text
                    raise self._error(
                        f"'{written}' cannot stand alone in a group term; write 1 for a "
                        f"varying intercept, or 0 + ... (or ... - 1) to drop it",
                        term.lo if term.sign_index is None else term.sign_index,
                        term.lo,
                    )
                continue
            for i in range(term.lo, term.hi):
                tok = self.tokens[i]
                if self.depth[i] == base and tok.kind == _OP and tok.text not in _TERM_OPERATORS:
                    if tok.text in _OPENERS or tok.text in _CLOSERS:
                        continue
                    raise self._error(
                        f"'{tok.text}' is not supported inside a varying term; list the "
                        f"terms joined by '+', e.g. (1 + x + z + x:z {bar_text} g) instead of "
                        f"(x * z {bar_text} g), and use I(...) for arithmetic",
                        i,
                    )
            self._guard_term(term.lo, term.hi)
            text = self._normalise(term.lo, term.hi, strip_quotes=True)
            if term.sign == "-":
                removed.add(text)
                continue
            for seen, _ in added:
                if seen == text:
                    raise self._error(
                        f"'{text}' is listed twice in this group term; remove one of them",
                        term.lo,
                        term.hi - 1,
                    )
            added.append((text, span))
        sources: list[tuple[str, tuple[int, int], bool]] = []
        if intercept:
            if explicit_intercept is not None:
                sources.append(("1", explicit_intercept, False))
            else:
                left = (self.tokens[lo].start, self.tokens[bar - 1].end)
                sources.append(("1", left, True))
        sources.extend((text, span, False) for text, span in added if text not in removed)
        if not sources:
            raise self._error(
                f"this group term removes every term, so nothing would vary; write "
                f"(1 {bar_text} g) for a varying intercept or (0 + x {bar_text} g) for a "
                "varying slope only, or drop the group term",
                bar,
            )
        return [s[0] for s in sources], tuple(sources)

    def _parse_grouping(self, bar: int, close: int, base: int) -> tuple[tuple[str, ...], ...]:
        """Parse the right side of a bar into level paths, top level first."""
        bar_text = self.tokens[bar].text
        if bar + 1 == close:
            raise self._error(
                f"nothing after '{bar_text}'; write the grouping column, e.g. (1 {bar_text} g)",
                bar,
            )
        segments: list[list[str]] = [[]]
        seen: set[str] = set()
        expect_name = True
        i = bar + 1
        while i < close:
            tok = self.tokens[i]
            if expect_name and tok.kind in (_NAME, _QUOTED):
                if i + 1 < close and self.tokens[i + 1].is_op("("):
                    raise self._error(
                        f"the grouping must be column names, not a function call like "
                        f"'{self._text(i, self.match[i + 1] + 1)}'; compute it as a column in "
                        "the data and group by that column",
                        i,
                        self.match[i + 1],
                    )
                if tok.name in seen:
                    raise self._error(
                        f"column '{tok.name}' appears twice in this grouping; each column is "
                        "one level of the chain, e.g. (1 | a/b)",
                        i,
                    )
                seen.add(tok.name)
                segments[-1].append(tok.name)
                expect_name = False
            elif not expect_name and tok.is_op("/", ":"):
                if tok.text == "/":
                    segments.append([])
                expect_name = True
            elif tok.is_op("/", ":"):
                raise self._error(
                    f"'{tok.text}' needs a column name on each side; write a/b for b nested "
                    "in a, or a:b for one level from the combination of a and b",
                    i,
                )
            elif tok.is_op("+", "*"):
                raise self._error(
                    f"'{tok.text}' in a grouping would make crossed groupings, which are not "
                    "supported yet; if the groupings nest, write a/b (b nested in a); for "
                    "one level from the combination of a and b, write a:b",
                    i,
                )
            elif tok.is_op("//"):
                raise self._error("'//' is not a grouping operator; write a/b for b nested in a", i)
            else:
                raise self._error(
                    f"'{tok.text}' cannot appear in a grouping; write column names joined by "
                    "'/' for nesting (a/b) or ':' for a combination (a:b); quote unusual "
                    "names in backticks",
                    i,
                )
            i += 1
        if expect_name:
            raise self._error(
                f"'{self.tokens[close - 1].text}' at the end of the grouping has no column "
                "after it; write e.g. (1 | a/b)",
                close - 1,
            )
        paths: list[tuple[str, ...]] = []
        prefix: tuple[str, ...] = ()
        for segment in segments:
            prefix = prefix + tuple(segment)
            paths.append(prefix)
        return tuple(paths)

    def _levels(self, bars: list[_Bar]) -> tuple[tuple[LevelSpec, ...], ...]:
        """Merge the group terms into nesting chains of levels, the longest chain first.

        A grouping joins the chain whose deepest grouping is a prefix of it
        (``state`` then ``state:county``); one that nests in no chain, or crosses one,
        starts a chain of its own (``county`` and ``year``)."""
        blocks: dict[tuple[str, ...], list[Block]] = {}
        varying: dict[tuple[str, ...], set[str]] = {}
        spans: dict[tuple[str, ...], tuple[int, int]] = {}
        for bar in bars:
            for path in bar.paths:
                spans.setdefault(path, bar.grouping_span)
                done = varying.setdefault(path, set())
                for term, span, implicit in bar.sources:
                    if term not in done:
                        continue
                    where = _display(path)
                    if implicit:
                        left = self.formula[span[0] : span[1]]
                        example = f"0 + {left} {self.tokens[bar.index].text} {bar.grouping_text}"
                        message = (
                            f"the intercept already varies by {where}, and this group term "
                            "adds it again because the intercept is implicit ((x | g) means "
                            f"(1 + x | g)); write ({example}) to vary only the other terms"
                        )
                    else:
                        message = (
                            f"'{term}' already varies by {where}; a term can vary only once "
                            "per level. Remove this one, or put the terms in one group term"
                        )
                    raise FormulaError(message, self.formula, span)
                done.update(term for term, _, _ in bar.sources)
                blocks.setdefault(path, []).extend(bar.blocks)
        chains: list[list[tuple[str, ...]]] = []
        for path in sorted(blocks, key=len):
            home = [c for c in chains if path[: len(c[-1])] == c[-1]]
            if home:
                home[0].append(path)
            else:
                chains.append([path])
        chains.sort(key=len, reverse=True)
        names: dict[str, tuple[str, ...]] = {}
        for chain in chains:
            for path in chain:
                if path[-1] in names:
                    raise FormulaError(
                        f"two groupings, '{_display(names[path[-1]])}' and '{_display(path)}', "
                        f"would both be the level '{path[-1]}'; rename one of the columns",
                        self.formula,
                        spans[path],
                    )
                names[path[-1]] = path
        return tuple(
            tuple(LevelSpec(path[-1], path, tuple(blocks[path])) for path in chain)
            for chain in chains
        )
