"""The ``--holdout`` expression language: which points of a table a fit holds out, without evaluating code.

An expression compares columns with numbers, strings, lists and column aggregates, and combines comparisons:

    N == N.max()                      the largest model size
    D >= 1e9 and r in [0.1, 0.9]      large budgets at two ratios
    not (domain == 'legal') | N < 1e8

Grammar (``and``/``&``, ``or``/``|``, ``not``/``~``; parentheses group)::

    expr    := term (("or" | "|") term)*
    term    := factor (("and" | "&") factor)*
    factor  := ("not" | "~") factor | "(" expr ")" | compare
    compare := operand OP operand | operand ("in" | "not in") list
    operand := NUMBER | STRING | COLUMN | COLUMN "." AGG "()"      AGG: min, max, mean, median
    list    := "[" (NUMBER | STRING) ("," (NUMBER | STRING))* "]"

Nothing else is accepted (no attribute access, calls or ``@`` variables), so an expression can never run code:
it is parsed here, not handed to pandas' ``eval``/``query``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.core.errors import InputError

_TOKEN = re.compile(r"""\s*(?:
    (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|&|\||~|\(|\)|\[|\]|,|\.)
)""", re.VERBOSE)
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_AGGREGATES = {"min", "max", "mean", "median"}
_KEYWORDS = {"and", "or", "not", "in"}


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"unexpected {expr[pos:].strip()[:20]!r}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent over the tokens, evaluating on ``df`` as it goes."""

    def __init__(self, expr: str, df: pd.DataFrame) -> None:
        self.tokens = _tokens(expr)
        self.i = 0
        self.df = df

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise ValueError(f"expected {value or 'more'} {'at the end' if tok is None else f'before {tok[1]!r}'}")
        self.i += 1
        return tok

    def at(self, *values: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[1] in values

    def parse(self) -> Any:
        value = self.expr()
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return value

    def expr(self) -> Any:
        value = self.term()
        while self.at("or", "|"):
            self.take()
            value = _boolean(value) | _boolean(self.term())
        return value

    def term(self) -> Any:
        value = self.factor()
        while self.at("and", "&"):
            self.take()
            value = _boolean(value) & _boolean(self.factor())
        return value

    def factor(self) -> Any:
        if self.at("not", "~"):
            self.take()
            return ~_boolean(self.factor())
        if self.at("("):
            self.take("(")
            value = self.expr()
            self.take(")")
            return value
        return self.compare()

    def compare(self) -> Any:
        left = self.operand()
        if self.at("in"):
            self.take()
            return _series(left, "in").isin(self.list())
        if self.at("not"):
            self.take()
            self.take("in")
            return ~_series(left, "not in").isin(self.list())
        tok = self.peek()
        if tok is None or tok[1] not in _COMPARE:
            raise ValueError(f"expected a comparison ({', '.join(_COMPARE)}, in) after an operand")
        self.take()
        return _COMPARE[tok[1]](left, self.operand())

    def operand(self) -> Any:
        tok = self.peek()
        if tok is not None and tok[0] in ("number", "string"):
            return self.literal()
        kind, text = self.take()
        if kind != "name" or text in _KEYWORDS:
            raise ValueError(f"expected a column, number or string, got {text!r}")
        if text not in self.df.columns:
            raise ValueError(f"no column {text!r} (columns: {', '.join(map(str, self.df.columns))})")
        column = self.df[text]
        if self.at("."):
            self.take(".")
            _, agg = self.take()
            if agg not in _AGGREGATES:
                raise ValueError(f"{text}.{agg}: aggregates are {', '.join(sorted(_AGGREGATES))}")
            self.take("(")
            self.take(")")
            return getattr(column, agg)()
        return column

    def list(self) -> list[Any]:
        self.take("[")
        items = [self.literal()]
        while self.at(","):
            self.take(",")
            items.append(self.literal())
        self.take("]")
        return items

    def literal(self) -> Any:
        kind, text = self.take()
        if kind == "number":
            return float(text)
        if kind == "string":
            return text[1:-1]
        raise ValueError(f"expected a number or string, got {text!r}")


def _series(value: Any, op: str) -> pd.Series:
    if not isinstance(value, pd.Series):
        raise ValueError(f"'{op}' needs a column on its left")
    return value


def _boolean(value: Any) -> pd.Series:
    if not isinstance(value, pd.Series) or value.dtype != bool:
        raise ValueError("and/or/not combine comparisons")
    return value


def holdout_mask(df: pd.DataFrame, expr: str, where: str) -> pd.Series:
    """The boolean mask of ``df``'s rows that ``expr`` selects; an expression outside the language (or one that
    does not give one boolean per row) is an ``InputError`` naming it."""
    try:
        mask = _Parser(expr, df).parse()
    except (ValueError, TypeError) as exc:
        raise InputError(f"--holdout {expr!r}", f"{exc} (on {where})") from None
    if not isinstance(mask, pd.Series) or mask.dtype != bool:
        raise InputError(f"--holdout {expr!r}", f"must select rows of {where} (a comparison, one boolean per row)")
    return mask.astype(np.bool_)
