"""The IRIS rule and DTL expression language, compiled once to Python closures.

Grammar (lowest precedence first): ``||`` / ``OR`` / infix ``!``; ``&&`` / ``AND`` / ``&``;
prefix ``NOT`` / ``!`` / ``'``; comparisons ``= != '= < > <= >=`` and the word operators
(``Contains``, ``DoesNotContain``, ``StartsWith``, ``EndsWith``, ``In``, ``NotIn``, ``InFile``,
``Matches``, ``DoesNotMatch``, ``Like``, ``IntersectsList``...); ``_`` concatenation and ``+ -``;
``* /``; unary minus. Operands: ``"strings"`` (``""`` is a quote), numbers, virtual property
paths (``HL7.{MSH:9.1}``, ``Document.{...}``, ``source.{...}``, ``target.{...}``, bare ``{...}``),
properties (``HL7.DocType``, ``target.LastName``), ``Source``, foreach key variables, and
function calls (``Piece(x, "^", 2)``, ``..ConvertDateTime(...)``).

``!`` is NOT where an operand is expected (IRIS rule editor, "Logical NOT") and OR between two
operands (ObjectScript); the position makes it unambiguous, and ``!=`` is always "not equal".

Values are strings and numbers; a path with ``()`` or ``(*)`` yields every value, and a
condition on such a list is true when it holds for any value (negative operators: for none).
Truth follows ObjectScript: a string is true when its leading number is non-zero.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hie.errors import ConfigError
from hie.rules.functions import FUNCTIONS, PREDICATES, to_number, to_str, truth
from hie.rules.paths import VirtualPath, check_names, parse_virtual_path

__all__ = ["Context", "Expression", "compile_expression"]

Value = Any  # str | int | float | bool | list[str]
Fn = Callable[["Context"], Value]


@dataclass
class Context:
    """What an expression reads: the message(s), the sender, the time, tables and variables."""

    source: Any = None  # HL7Message read by HL7./Document./source./bare paths
    target: Any = None  # HL7Message or dict (DTL target)
    aux: Any = None
    source_name: str | None = None  # the sending item (IRIS ``Source``)
    now: datetime | None = None
    tables: Any = None  # hie.rules.loader.LookupTables
    variables: dict[str, Any] = field(default_factory=dict)

    def clock(self) -> datetime:
        """The evaluation time: fixed by the caller for tests, else now."""
        return self.now or datetime.now()


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"]|"")*")
  | (?P<num>\d+(?:\.\d*)?|\.\d+)
  | (?P<path>(?:(?:[A-Za-z][A-Za-z0-9]*)\.)?\{[^{}]*\})
  | (?P<name>(?:\.\.)?[A-Za-z%][A-Za-z0-9%]*(?:\.[A-Za-z%][A-Za-z0-9%]*)*)
  | (?P<op>&&|\|\||!=|'=|<=|>=|'<|'>|[=<>&!'_+\-*/(),])
    """,
    re.VERBOSE,
)

_PATH_OWNERS = {"hl7": "source", "document": "source", "source": "source", "target": "target"}
_PATH_OWNERS |= {"aux": "aux", "": "source", "request": "source", "msg": "source"}
_WORD_OPS = {"and": "&&", "or": "||", "not": "NOT"}
_COMPARE = {"=", "!=", "'=", "<", ">", "<=", ">=", "'<", "'>"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    col: int


class Expression:
    """A compiled expression; call ``evaluate(ctx)`` (or the expression itself)."""

    __slots__ = ("_fn", "paths", "text")

    def __init__(self, text: str, fn: Fn, paths: list[VirtualPath]) -> None:
        self.text = text
        self._fn = fn
        #: Every virtual path the expression reads, for validation and documentation.
        self.paths = paths

    def evaluate(self, ctx: Context) -> Value:
        """The expression's value in ``ctx``."""
        return self._fn(ctx)

    __call__ = evaluate

    def is_true(self, ctx: Context) -> bool:
        """The value as a condition (ObjectScript truth, any-of for lists)."""
        return truth(self._fn(ctx))

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def compile_expression(text: str, *, where: str = "") -> Expression:
    """Compile ``text`` once; raises ``ConfigError`` naming the expression and the column.

    ``where`` (a file and line) is prefixed to errors.
    """
    parser = _Parser(text, where)
    fn = parser.parse()
    return Expression(text, fn, parser.paths)


class _Parser:
    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        self.toks = self._tokenize(text)
        self.i = 0
        self.paths: list[VirtualPath] = []

    def error(self, problem: str, col: int | None = None) -> ConfigError:
        col = col if col is not None else self.peek().col
        prefix = f"{self.where}: " if self.where else ""
        return ConfigError(f"{prefix}expression {self.text!r}: {problem} at column {col}")

    def _tokenize(self, text: str) -> list[_Tok]:
        toks: list[_Tok] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise self.error(f"unexpected character {text[pos]!r}", pos + 1)
            kind = m.lastgroup or ""
            if kind != "ws":
                toks.append(_Tok(kind, m.group(), pos + 1))
            pos = m.end()
        toks.append(_Tok("end", "", len(text) + 1))
        return toks

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        if self.peek().text != text:
            got = self.peek().text or "the end"
            raise self.error(f"expected {text!r} but found {got!r}")
        self.i += 1

    def _op(self) -> str:
        """The current token as an operator word (AND/OR/NOT map to symbols), else ''."""
        tok = self.peek()
        if tok.kind == "op":
            return tok.text
        if tok.kind == "name":
            low = tok.text.lower()
            if low in _WORD_OPS:
                return _WORD_OPS[low]
            if low in PREDICATES:
                return low
        return ""

    def parse(self) -> Fn:
        if self.peek().kind == "end":
            raise self.error("the expression is empty")
        fn = self.parse_or()
        if self.peek().kind != "end":
            raise self.error(f"unexpected {self.peek().text!r}")
        return fn

    def parse_or(self) -> Fn:
        left = self.parse_and()
        while self._op() in ("||", "!"):
            self.take()
            left = _or(left, self.parse_and())
        return left

    def parse_and(self) -> Fn:
        left = self.parse_not()
        while self._op() in ("&&", "&"):
            self.take()
            left = _and(left, self.parse_not())
        return left

    def parse_not(self) -> Fn:
        if self._op() in ("NOT", "!", "'"):
            self.take()
            inner = self.parse_not()
            return lambda ctx: not truth(inner(ctx))
        return self.parse_compare()

    def parse_compare(self) -> Fn:
        left = self.parse_concat()
        while True:
            op = self._op()
            if op in _COMPARE:
                self.take()
                left = _compare(op, left, self.parse_concat())
            elif op in PREDICATES:
                self.take()
                left = _predicate(PREDICATES[op], left, self.parse_concat())
            else:
                return left

    def parse_concat(self) -> Fn:
        left = self.parse_term()
        while self._op() in ("_", "+", "-"):
            op = self.take().text
            left = _arith(op, left, self.parse_term())
        return left

    def parse_term(self) -> Fn:
        left = self.parse_unary()
        while self._op() in ("*", "/"):
            op = self.take().text
            left = _arith(op, left, self.parse_unary())
        return left

    def parse_unary(self) -> Fn:
        if self._op() in ("-", "+"):
            op = self.take().text
            inner = self.parse_unary()
            sign = -1 if op == "-" else 1
            return lambda ctx: sign * (to_number(inner(ctx)) or 0)
        if self._op() in ("NOT", "!", "'"):
            return self.parse_not()
        return self.parse_operand()

    def parse_operand(self) -> Fn:
        tok = self.take()
        if tok.kind == "str":
            value = tok.text[1:-1].replace('""', '"')
            return lambda ctx: value
        if tok.kind == "num":
            number: float | int = float(tok.text) if "." in tok.text else int(tok.text)
            return lambda ctx: number
        if tok.kind == "path":
            return self._path(tok)
        if tok.text == "(":
            inner = self.parse_or()
            self.expect(")")
            return inner
        if tok.kind == "name":
            if self.peek().text == "(":
                return self._call(tok)
            return self._name(tok)
        raise self.error(f"expected a value but found {tok.text or 'the end'!r}", tok.col)

    def _path(self, tok: _Tok) -> Fn:
        owner_text, _, inner = tok.text.partition("{")
        owner = _PATH_OWNERS.get(owner_text.rstrip(".").lower())
        if owner is None:
            raise self.error(f"{owner_text.rstrip('.')!r} has no virtual properties", tok.col)
        try:
            path = parse_virtual_path(inner[:-1])
            check_names(path)
        except ConfigError as exc:
            raise self.error(str(exc), tok.col) from None
        self.paths.append(path)
        from hie.rules.access import read_path  # access imports this module's Context

        return lambda ctx: read_path(getattr(ctx, owner), path, ctx.variables)

    def _call(self, tok: _Tok) -> Fn:
        name = tok.text.lstrip(".").rsplit(".", 1)[-1].lower()
        func = FUNCTIONS.get(name)
        if func is None:
            raise self.error(f"unknown function {tok.text}()", tok.col)
        self.expect("(")
        args: list[Fn] = []
        if self.peek().text != ")":
            args.append(self.parse_or())
            while self.peek().text == ",":
                self.take()
                args.append(self.parse_or())
        self.expect(")")
        return lambda ctx: func(ctx, *[a(ctx) for a in args])

    def _name(self, tok: _Tok) -> Fn:
        from hie.rules.access import read_property

        parts = tok.text.lstrip(".").split(".")
        head = parts[0].lower()
        if len(parts) == 1:
            name = parts[0]
            if head == "source":
                return lambda ctx: ctx.source_name or ""
            # A bare name is a foreach key or DTL variable, set at run time.
            return lambda ctx: ctx.variables.get(name, "")
        owner = _PATH_OWNERS.get(head)
        if owner is None or len(parts) != 2:
            raise self.error(f"unknown property {tok.text}", tok.col)
        prop = parts[1]
        return lambda ctx: read_property(getattr(ctx, owner), prop, ctx)


def _or(a: Fn, b: Fn) -> Fn:
    return lambda ctx: truth(a(ctx)) or truth(b(ctx))


def _and(a: Fn, b: Fn) -> Fn:
    return lambda ctx: truth(a(ctx)) and truth(b(ctx))


def _scalar_compare(op: str, a: Value, b: Value) -> bool:
    x, y = to_number(a, strict=True), to_number(b, strict=True)
    if x is None or y is None:
        x, y = to_str(a), to_str(b)  # type: ignore[assignment]
    if op == "=":
        return bool(x == y)
    if op in ("!=", "'="):
        return bool(x != y)
    if op in ("<", "'>"):
        return bool(x < y) if op == "<" else not bool(x > y)  # type: ignore[operator]
    if op in (">", "'<"):
        return bool(x > y) if op == ">" else not bool(x < y)  # type: ignore[operator]
    if op == "<=":
        return bool(x <= y)  # type: ignore[operator]
    return bool(x >= y)  # type: ignore[operator]


def _compare(op: str, a: Fn, b: Fn) -> Fn:
    negative = op in ("!=", "'=")
    positive = "=" if negative else op

    def run(ctx: Context) -> bool:
        left, right = a(ctx), b(ctx)
        if isinstance(left, list):
            hit = any(_scalar_compare(positive, v, right) for v in left)
            return not hit if negative else hit
        return _scalar_compare(op, left, right)

    return run


def _predicate(pred: Callable[..., bool], a: Fn, b: Fn) -> Fn:
    return lambda ctx: pred(ctx, a(ctx), b(ctx))


def _arith(op: str, a: Fn, b: Fn) -> Fn:
    if op == "_":
        return lambda ctx: to_str(a(ctx)) + to_str(b(ctx))

    def run(ctx: Context) -> Value:
        x, y = to_number(a(ctx)) or 0, to_number(b(ctx)) or 0
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        return x / y if y else ""  # ObjectScript raises <DIVIDE>; a rule should not stop

    return run
