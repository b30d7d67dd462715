"""The IRIS rule and DTL expression language, compiled once to Python closures.

Grammar (lowest precedence first): ``||`` / ``OR`` / infix ``!``; ``&&`` / ``AND`` / ``&``;
prefix ``NOT`` / ``!`` / ``'``; comparisons ``= != '= < > <= >=`` and the word operators
(``Contains``, ``DoesNotContain``, ``StartsWith``, ``EndsWith``, ``In``, ``NotIn``, ``InFile``,
``Matches``, ``DoesNotMatch``, ``Like``, ``IntersectsList``...); ``_`` concatenation and ``+ -``;
``* /``; unary minus. Operands: ``"strings"`` (``""`` is a quote), numbers, virtual property
paths (``HL7.{MSH:9.1}``, ``Document.{...}``, ``source.{...}``, ``target.{...}``, bare ``{...}``),
properties (``HL7.DocType``, ``target.LastName``), ``Source``, foreach key variables and DTL
local variables (``tValue``, ``%x``), function set calls (``Piece(x, "^", 2)``,
``..ConvertDateTime(...)``), ObjectScript ``$`` functions and special variables
(``$PIECE(x,"^",*-1)``, ``$CASE(x,"M":"Male",:"Other")``, ``$ZDATE($H,3)``; see
``hie.rules.objectscript``) and class method calls (``##class(Demo.Util).Now()``).

A class method call, or a ``..Method()`` the function set does not have (the DTL class's own
method, a user function set), is looked up when it runs in ``Context.functions`` under
``"Demo.Util.Now"`` / ``"..Method"``; ``Expression.class_calls`` lists those keys.

``!`` is NOT where an operand is expected (IRIS rule editor, "Logical NOT") and OR between two
operands (ObjectScript); the position makes it unambiguous, and ``!=`` is always "not equal".

Values are strings and numbers; a path with ``()`` or ``(*)`` yields every value, and a
condition on such a list is true when it holds for any value (negative operators: for none).
Truth follows ObjectScript: a string is true when its leading number is non-zero.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime
from typing import Any

from hie.errors import ConfigError
from hie.rules.functions import FUNCTIONS, PREDICATES, End, to_number, to_str, truth
from hie.rules.objectscript import (
    REFERENCE_FUNCTIONS,
    Arg,
    compile_intrinsic,
    compile_special_variable,
    concat,
)
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
    #: Python stand-ins for class methods: "Demo.Util.Helper.Now" or "..Method" -> callable.
    functions: Mapping[str, Callable[..., Any]] = field(default_factory=dict)

    def clock(self) -> datetime:
        """The evaluation time: fixed by the caller for tests, else now."""
        return self.now or datetime.now()


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"]|"")*")
  | (?P<num>\d+(?:\.\d*)?|\.\d+)
  | (?P<path>(?:(?:[A-Za-z][A-Za-z0-9]*)\.)?\{[^{}]*\})
  | (?P<classcall>(?i:\#\#class)\(\s*%?[A-Za-z][\w.%]*\s*\)\.%?[A-Za-z][A-Za-z0-9]*)
  | (?P<dollar>\$[A-Za-z][A-Za-z0-9]*)
  | (?P<name>(?:\.\.)?[A-Za-z%][A-Za-z0-9%]*(?:\.[A-Za-z%][A-Za-z0-9%]*)*)
  | (?P<op>&&|\|\||!=|'=|<=|>=|'<|'>|'\[|'\]\]|'\]|\]\]|[=<>&!'_+\-*/(),:\[\]])
    """,
    re.VERBOSE,
)

_PATH_OWNERS = {"hl7": "source", "document": "source", "source": "source", "target": "target"}
_PATH_OWNERS |= {"aux": "aux", "": "source", "request": "source", "msg": "source"}
_WORD_OPS = {"and": "&&", "or": "||", "not": "NOT"}
_COMPARE = {"=", "!=", "'=", "<", ">", "<=", ">=", "'<", "'>"}
#: ObjectScript's string operators: ``[`` contains, ``]`` follows (by character codes), ``]]``
#: sorts after (numbers first, in numeric order; then strings); with ``'`` each is negated.
_STRING_OPS = {"[", "]", "]]", "'[", "']", "']]"}
_CLASS_CALL = re.compile(r"##class\(\s*(%?[A-Za-z][\w.%]*)\s*\)\.(%?[A-Za-z][A-Za-z0-9]*)", re.I)
#: Classes whose methods are the built-in function set: ##class(Ens.Util.FunctionSet).Lookup().
_FUNCTION_SETS = {"ens.util.functionset", "ens.rule.functionset"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    col: int


class Expression:
    """A compiled expression; call ``evaluate(ctx)`` (or the expression itself)."""

    __slots__ = ("_fn", "class_calls", "paths", "text")

    def __init__(
        self, text: str, fn: Fn, paths: list[VirtualPath], class_calls: list[str] | None = None
    ) -> None:
        self.text = text
        self._fn = fn
        #: Every virtual path the expression reads, for validation and documentation.
        self.paths = paths
        #: Every class method the expression calls, as its ``Context.functions`` key
        #: (``"Demo.Util.Helper.Now"``, ``"..Method"``), for reports and stubs.
        self.class_calls = class_calls or []

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
    return Expression(text, fn, parser.paths, parser.class_calls)


class _Parser:
    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        self.toks = self._tokenize(text)
        self.i = 0
        self.paths: list[VirtualPath] = []
        self.class_calls: list[str] = []

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
            elif op in _STRING_OPS:
                self.take()
                left = _string_op(op, left, self.parse_concat())
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
        if tok.kind == "dollar":
            return self._dollar(tok)
        if tok.kind == "classcall":
            return self._class_call(tok)
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

    def _args(self) -> list[Fn]:
        self.expect("(")
        args: list[Fn] = []
        if self.peek().text != ")":
            args.append(self.parse_or())
            while self.peek().text == ",":
                self.take()
                args.append(self.parse_or())
        self.expect(")")
        return args

    def _call(self, tok: _Tok) -> Fn:
        name = tok.text.lstrip(".").rsplit(".", 1)[-1].lower()
        func = FUNCTIONS.get(name)
        if func is None:
            method = tok.text.removeprefix("..")
            if "." not in method:
                # The DTL's own method, or one of a user's function set (``Ens.Rule.FunctionSet``
                # subclass), which rules call by its bare name: mapped to Python at run time.
                return self._mapped(f"..{method}", f"{tok.text}()", self._args())
            raise self.error(f"unknown function {tok.text}()", tok.col)
        return self._builtin(tok, func, self._args())

    def _builtin(self, tok: _Tok, func: Callable[..., Any], args: list[Fn]) -> Fn:
        low, high = _arity(func)
        if len(args) < low or (high is not None and len(args) > high):
            most = "more" if high is None else high
            name = tok.text.rsplit(".", 1)[-1].lstrip(".")
            problem = f"{name}() takes {low} to {most} arguments, not {len(args)}"
            raise self.error(problem, tok.col)
        return lambda ctx: func(ctx, *[a(ctx) for a in args])

    def _class_call(self, tok: _Tok) -> Fn:
        m = _CLASS_CALL.fullmatch(tok.text)
        assert m is not None  # the token pattern is the same
        cls, method = m.group(1), m.group(2)
        if self.peek().text != "(":
            raise self.error(f"##class({cls}).{method} needs (arguments)", tok.col)
        args = self._args()
        func = FUNCTIONS.get(method.lower())
        if cls.lower() in _FUNCTION_SETS and func is not None:
            return self._builtin(tok, func, args)
        return self._mapped(f"{cls}.{method}", f"##class({cls}).{method}()", args)

    def _mapped(self, key: str, shown: str, args: list[Fn]) -> Fn:
        """A call resolved when it runs, in ``Context.functions[key]``, with the values only."""
        if key not in self.class_calls:
            self.class_calls.append(key)
        missing = f"{shown} is not mapped to Python: add it to the functions: section of the IRIS"
        missing += " mapping file"

        def run(ctx: Context) -> Value:
            func = ctx.functions.get(key)
            if func is None:
                raise ConfigError(missing)
            return func(*[a(ctx) for a in args])

        return run

    def _dollar(self, tok: _Tok) -> Fn:
        name = tok.text[1:]
        try:
            if self.peek().text != "(":
                return compile_special_variable(name)
            return compile_intrinsic(name, self._dollar_args(name.lower() in REFERENCE_FUNCTIONS))
        except ValueError as exc:
            raise self.error(str(exc), tok.col) from None

    def _dollar_args(self, reference: bool) -> list[Arg]:
        """``$`` arguments: omitted ones (``$LB(1,,3)``), ``case:value`` and ``:default``, the
        ``*`` / ``*-n`` end position, and for $GET/$DATA a variable or path reference."""
        self.expect("(")
        args: list[Arg] = []
        if self.peek().text == ")":
            self.take()
            return args
        while True:
            args.append(self._dollar_arg(reference and not args))
            if self.peek().text != ",":
                self.expect(")")
                return args
            self.take()

    def _dollar_arg(self, reference: bool) -> Arg:
        tok = self.peek()
        if tok.kind == "op" and tok.text in (",", ")"):
            return Arg()
        if tok.kind == "op" and tok.text == ":":
            self.take()
            return Arg(self.parse_or(), paired=True)
        if tok.kind == "op" and tok.text == "*":
            return Arg(self._end_position())
        if reference and tok.kind in ("name", "path") and self.toks[self.i + 1].text in (",", ")"):
            return Arg(probe=self._reference(tok))
        value = self.parse_or()
        if self.peek().text == ":":
            self.take()
            return Arg(self.parse_or(), label=value, paired=True)
        return Arg(value)

    def _end_position(self) -> Fn:
        self.take()  # "*": the last position
        if self._op() not in ("-", "+"):
            last = End()
            return lambda ctx: last
        sign = -1 if self.take().text == "-" else 1
        offset = self.parse_term()
        return lambda ctx: End(sign * int(to_number(offset(ctx)) or 0))

    def _reference(self, tok: _Tok) -> Fn:
        """For $GET/$DATA: ctx -> (defined, value) of a local variable, a path or a property."""
        if tok.kind == "name" and "." not in tok.text and tok.text.lower() != "source":
            self.take()
            name = tok.text
            return lambda ctx: (name in ctx.variables, ctx.variables.get(name, ""))
        self.take()
        read = self._path(tok) if tok.kind == "path" else self._name(tok)

        def probe(ctx: Context) -> tuple[bool, Value]:
            value = read(ctx)
            return value not in ("", None, []), value

        return probe

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


@lru_cache(maxsize=256)
def _arity(func: Callable[..., Any]) -> tuple[int, int | None]:
    """How many arguments a function set function takes after the context: (least, most)."""
    params = list(inspect.signature(func).parameters.values())[1:]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return sum(p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD for p in params), None
    required = sum(p.default is p.empty for p in params)
    return required, len(params)


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


def _sorts_after(a: str, b: str) -> bool:
    """ObjectScript ``]]``: canonical numbers sort first, by value; then strings, by codes."""
    x, y = to_number(a, strict=True), to_number(b, strict=True)
    if x is not None and y is not None:
        return x > y
    if x is not None or y is not None:
        return y is not None  # a string sorts after any number
    return a > b


def _string_op(op: str, a: Fn, b: Fn) -> Fn:
    negative = op.startswith("'")
    test: Callable[[str, str], bool] = {
        "[": lambda x, y: y in x,
        "]": lambda x, y: x > y,
        "]]": _sorts_after,
    }[op.lstrip("'")]

    def run(ctx: Context) -> bool:
        left, right = a(ctx), to_str(b(ctx))
        values = left if isinstance(left, list) else [left]
        hit = any(test(to_str(v), right) for v in values)
        return not hit if negative else hit

    return run


def _arith(op: str, a: Fn, b: Fn) -> Fn:
    if op == "_":
        return lambda ctx: concat(a(ctx), b(ctx))

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
