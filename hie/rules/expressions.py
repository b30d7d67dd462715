"""The IRIS rule and DTL expression language, compiled once to Python closures.

Grammar (lowest precedence first): ``||`` / ``OR`` / infix ``!``; ``&&`` / ``AND`` / ``&``;
prefix ``NOT`` / ``!`` / ``'``; comparisons ``= != '= < > <= >=`` and the word operators
(``Contains``, ``DoesNotContain``, ``StartsWith``, ``EndsWith``, ``In``, ``NotIn``, ``InFile``,
``Matches``, ``DoesNotMatch``, ``Like``, ``IntersectsList``...); ``_`` concatenation and ``+ -``;
``* /``, ``#`` (modulo) and ``\\`` (integer division); unary minus. Operands: ``"strings"``
(``""`` is a quote), numbers, virtual property paths (``HL7.{MSH:9.1}``, ``Document.{...}``,
``source.{...}``, ``target.{...}``, bare ``{...}``), properties (``HL7.DocType``,
``Document.Info.TargetSystem``; ``source."account_id"`` quotes a name, which may then hold any
character; names may use any alphabet: ``source.Numérofacture``), ``Source``, foreach key
variables and DTL local variables (``tValue``, ``%x``) and their properties (``tJSON.entry``),
function set calls (``Piece(x, "^", 2)``, ``..ConvertDateTime(...)``), ObjectScript ``$``
functions and special variables (``$PIECE(x,"^",*-1)``, ``$CASE(x,"M":"Male",:"Other")``,
``$ZDATE($H,3)``; see ``hie.rules.objectscript``), class method calls
(``##class(Demo.Util).Now()``, ``$SYSTEM.Util.CreateGUID()``) and the methods of
``hie.rules.methods`` on any value (``source.GetValueAt("PID:5.1")``, ``tJSON.%Get("id")``,
``{}.%FromJSON(text)``).

A property of something absent reads as ``""``, as an unset property does in ObjectScript. A
dotted name whose head is not a message (``source``, ``target``, ``aux``, ``Document``,
``HL7``...) reads a variable: ``tJSON.entry`` is the ``entry`` of variable ``tJSON``. So do
``process.X`` and ``context.X``: a DTL that HIE runs has no business process around it, so they
read ``""`` unless the caller puts a ``process`` or ``context`` object in ``Context.variables``.

A class method call, or a ``..Method()`` the function set does not have (the DTL class's own
method, a user function set), is looked up when it runs in ``Context.functions`` under
``"Demo.Util.Now"`` / ``"..Method"`` / ``"%SYSTEM.Status.GetErrorText"``;
``Expression.class_calls`` lists those keys. An omitted argument (``..If(c,,x)``) takes the
function's default, else ``""``. A by-reference argument (``.tSC``) passes the variable's
value: HIE cannot write back through it, so an output argument stays as it was.

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
from hie.rules.access import read_path, read_properties
from hie.rules.functions import FUNCTIONS, PREDICATES, End, to_number, truth
from hie.rules.methods import SYSTEM_METHODS, Method, find_method
from hie.rules.objectscript import (
    REFERENCE_FUNCTIONS,
    Arg,
    compile_intrinsic,
    compile_special_variable,
)
from hie.rules.operators import arith, both, compare, either, predicate, string_op
from hie.rules.paths import VirtualPath, check_names, parse_virtual_path
from hie.rules.tokens import Tok, TokenStream, name_parts

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
    #: How far ``ReadLine()`` has read each stream, by id: (the stream, the next position).
    streams: dict[int, tuple[Any, int]] = field(default_factory=dict)

    def clock(self) -> datetime:
        """The evaluation time: fixed by the caller for tests, else now."""
        return self.now or datetime.now()


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


class _Parser(TokenStream):
    def __init__(self, text: str, where: str) -> None:
        super().__init__(text, where)
        self.paths: list[VirtualPath] = []
        self.class_calls: list[str] = []

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
            left = either(left, self.parse_and())
        return left

    def parse_and(self) -> Fn:
        left = self.parse_not()
        while self._op() in ("&&", "&"):
            self.take()
            left = both(left, self.parse_not())
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
                left = compare(op, left, self.parse_concat())
            elif op in PREDICATES:
                self.take()
                left = predicate(PREDICATES[op], left, self.parse_concat())
            elif op in _STRING_OPS:
                self.take()
                left = string_op(op, left, self.parse_concat())
            else:
                return left

    def parse_concat(self) -> Fn:
        left = self.parse_term()
        while self._op() in ("_", "+", "-"):
            op = self.take().text
            left = arith(op, left, self.parse_term())
        return left

    def parse_term(self) -> Fn:
        left = self.parse_unary()
        while self._op() in ("*", "/", "#", "\\"):
            op = self.take().text
            left = arith(op, left, self.parse_unary())
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
        return self._chain(self._operand(tok))

    def _chain(self, fn: Fn) -> Fn:
        """``f(x).Prop`` / ``f(x).Method()``: members of what a call or path gave."""
        while self.peek().kind == "byref" and self.toks[self.i + 1].kind == "name":
            self.take()
            tok = self.take()
            parts = name_parts(tok.text)
            if self.peek().text != "(":
                fn = _members(fn, parts)
                continue
            method = find_method(parts[-1])
            if method is None:
                raise self.error(f"{parts[-1]}() is not a method HIE runs", tok.col)
            fn = self._apply_method(tok, _members(fn, parts[:-1]), method)
        return fn

    def _operand(self, tok: Tok) -> Fn:
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
        if tok.kind == "system":
            return self._system_call(tok)
        if tok.kind == "dynamic":
            return self._dynamic(tok)
        raise self.error(f"expected a value but found {tok.text or 'the end'!r}", tok.col)

    def _path(self, tok: Tok) -> Fn:
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
        return lambda ctx: read_path(getattr(ctx, owner), path, ctx.variables)

    def _args(self) -> list[Fn | None]:
        """Call arguments; None for an omitted one (``..If(c,,x)``)."""
        self.expect("(")
        args: list[Fn | None] = []
        if self.peek().text == ")":
            self.take()
            return args
        while True:
            args.append(self._arg())
            if self.peek().text != ",":
                self.expect(")")
                return args
            self.take()

    def _arg(self) -> Fn | None:
        tok = self.peek()
        if tok.kind == "op" and tok.text in (",", ")"):
            return None
        if tok.kind != "byref":
            return self.parse_or()
        self.take()
        name = self.take()
        if name.kind != "name" or "." in name.text:
            raise self.error("a by-reference argument is a variable: .name", tok.col)
        # IRIS passes the variable itself; HIE passes its value and cannot write back.
        return lambda ctx: ctx.variables.get(name.text, "")

    def _call(self, tok: Tok) -> Fn:
        parts = name_parts(tok.text)
        if len(parts) > 1 and not tok.text.startswith(".."):
            method = find_method(parts[-1])
            if method is not None:
                return self._method(tok, parts[:-1], method)
        func = FUNCTIONS.get(parts[-1].lower())
        if func is None:
            method_name = tok.text.removeprefix("..")
            if "." not in method_name:
                # The DTL's own method, or one of a user's function set (``Ens.Rule.FunctionSet``
                # subclass), which rules call by its bare name: mapped to Python at run time.
                return self._mapped(f"..{method_name}", f"{tok.text}()", self._args())
            raise self.error(f"unknown function {tok.text}()", tok.col)
        return self._builtin(tok, func, self._args())

    def _builtin(self, tok: Tok, func: Callable[..., Any], args: list[Fn | None]) -> Fn:
        self._check_count(tok, tok.text.rsplit(".", 1)[-1].lstrip("."), _arity(func), len(args))
        thunks = _filled(func, args, leading=1)
        return lambda ctx: func(ctx, *[a(ctx) for a in thunks])

    def _method(self, tok: Tok, receiver: list[str], method: Method) -> Fn:
        """``receiver.Method(args)``: a method of ``hie.rules.methods`` on the value read."""
        owner = _PATH_OWNERS.get(receiver[0].lower()) if len(receiver) == 1 else None
        if method.path_arg and owner is not None:
            self._literal_path()
        return self._apply_method(tok, self._object(receiver), method)

    def _apply_method(self, tok: Tok, obj: Fn, method: Method) -> Fn:
        args = self._args()
        self._check_count(tok, method.name, (method.min_args, method.max_args), len(args))
        thunks = _filled(method.run, args, leading=2)
        run = method.run
        return lambda ctx: run(ctx, obj(ctx), *[a(ctx) for a in thunks])

    def _check_count(self, tok: Tok, name: str, counts: tuple[int, int | None], n: int) -> None:
        low, high = counts
        if n < low or (high is not None and n > high):
            most = "more" if high is None else high
            raise self.error(f"{name}() takes {low} to {most} arguments, not {n}", tok.col)

    def _literal_path(self) -> None:
        """Check a message path written as a literal (``GetValueAt("PID:5")``) once, now."""
        tok = self.toks[self.i + 1]
        after = self.toks[self.i + 2].text if tok.kind == "str" else ""
        if self.peek().text != "(" or after not in (",", ")"):
            return
        try:
            path = parse_virtual_path(tok.text[1:-1].replace('""', '"'))
            check_names(path)
        except ConfigError as exc:
            raise self.error(str(exc), tok.col) from None
        self.paths.append(path)

    def _class_call(self, tok: Tok) -> Fn:
        m = _CLASS_CALL.fullmatch(tok.text)
        assert m is not None  # the token pattern is the same
        cls, method = m.group(1), m.group(2)
        if self.peek().text != "(":
            raise self.error(f"##class({cls}).{method} needs (arguments)", tok.col)
        args = self._args()
        if method.lower() == "%new" and not args:
            return lambda ctx: _new_object(cls)
        system = SYSTEM_METHODS.get(f"{cls}.{method}".lower())
        if system is not None:
            return self._builtin(tok, system, args)
        func = FUNCTIONS.get(method.lower())
        if cls.lower() in _FUNCTION_SETS and func is not None:
            return self._builtin(tok, func, args)
        return self._mapped(f"{cls}.{method}", f"##class({cls}).{method}()", args)

    def _system_call(self, tok: Tok) -> Fn:
        """``$SYSTEM.Encryption.Base64Decode(x)``: class ``%SYSTEM.Encryption``'s method."""
        parts = tok.text.split(".")
        if len(parts) < 3 or self.peek().text != "(":
            raise self.error(f"{tok.text} needs a class, a method and (arguments)", tok.col)
        cls, method = "%SYSTEM." + ".".join(parts[1:-1]), parts[-1]
        args = self._args()
        func = SYSTEM_METHODS.get(f"{cls}.{method}".lower())
        if func is not None:
            return self._builtin(tok, func, args)
        return self._mapped(f"{cls}.{method}", f"{tok.text}()", args)

    def _dynamic(self, tok: Tok) -> Fn:
        """``{}.%FromJSON(text)`` / ``[].%FromJSON(text)``: a dynamic object from JSON."""
        method = tok.text.rsplit(".", 1)[-1]
        func = SYSTEM_METHODS.get(f"%dynamicabstractobject.{method.lower()}")
        if func is None or self.peek().text != "(":
            raise self.error(f"{tok.text}: HIE runs {{}}.%FromJSON(text) only", tok.col)
        return self._builtin(tok, func, self._args())

    def _mapped(self, key: str, shown: str, args: list[Fn | None]) -> Fn:
        """A call resolved when it runs, in ``Context.functions[key]``, with the values only."""
        if key not in self.class_calls:
            self.class_calls.append(key)
        missing = f"{shown} is not mapped to Python: add it to the functions: section of the IRIS"
        missing += " mapping file"

        def run(ctx: Context) -> Value:
            func = ctx.functions.get(key)
            if func is None:
                raise ConfigError(missing)
            return func(*[a(ctx) for a in _filled(func, args, leading=0)])

        return run

    def _dollar(self, tok: Tok) -> Fn:
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
            return self._reference(tok)
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

    def _reference(self, tok: Tok) -> Arg:
        """For $GET/$DATA/$INCREMENT: a probe, ctx -> (defined, value), of a local variable
        (named too, for $INCREMENT to write), a path or a property."""
        self.take()
        if tok.kind == "name" and "." not in tok.text and tok.text.lower() != "source":
            return Arg(probe=_variable_probe(tok.text), variable=tok.text)
        read = self._path(tok) if tok.kind == "path" else self._name(tok)

        def probe(ctx: Context) -> tuple[bool, Value]:
            value = read(ctx)
            return value not in ("", None, []), value

        return Arg(probe=probe)

    def _name(self, tok: Tok) -> Fn:
        parts = name_parts(tok.text)
        if len(parts) > 1:
            return self._object(parts)
        name = parts[0]
        if name.lower() == "source":
            return lambda ctx: ctx.source_name or ""
        # A bare name is a foreach key or DTL variable, set at run time.
        return lambda ctx: ctx.variables.get(name, "")

    def _object(self, parts: list[str]) -> Fn:
        """What a dotted name reads: a message's (``Document.Info.Id``) or a variable's
        (``tJSON.entry``, ``process.BankName``) properties; the message or variable alone."""
        head, keys = parts[0], list[str | int]()
        keys.extend(parts[1:])
        owner = _PATH_OWNERS.get(head.lower())
        if owner is not None:
            return lambda ctx: read_properties(getattr(ctx, owner), keys)
        return lambda ctx: read_properties(ctx.variables.get(head, ""), keys)


def _variable_probe(name: str) -> Fn:
    return lambda ctx: (name in ctx.variables, ctx.variables.get(name, ""))


def _members(fn: Fn, keys: list[str]) -> Fn:
    found = list[str | int]()
    found.extend(keys)
    return lambda ctx: read_properties(fn(ctx), found)


_NO_DEFAULT = object()


@lru_cache(maxsize=1024)
def _defaults(func: Callable[..., Any], leading: int) -> tuple[Any, ...]:
    """The default of each positional parameter after the first ``leading`` (else a marker)."""
    try:
        params = list(inspect.signature(func).parameters.values())[leading:]
    except (TypeError, ValueError):  # a callable Python cannot describe: no defaults known
        return ()
    positional = (p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    return tuple(_NO_DEFAULT if p.default is p.empty else p.default for p in positional)


def _filled(func: Callable[..., Any], args: list[Fn | None], *, leading: int) -> list[Fn]:
    """``args`` with each omitted one replaced by the parameter's default, else ``""``."""
    if all(a is not None for a in args):
        return [a for a in args if a is not None]
    defaults = _defaults(func, leading)
    out: list[Fn] = []
    for i, arg in enumerate(args):
        found = defaults[i] if i < len(defaults) else _NO_DEFAULT
        out.append(arg or _constant("" if found is _NO_DEFAULT else found))
    return out


def _constant(value: Value) -> Fn:
    return lambda ctx: value


def _new_object(class_name: str) -> Any:
    """``##class(X).%New()``: an empty object of X (its model when one is registered, else an
    open object taking any property), filled by the assigns that follow."""
    from hie.iris.message_classes import body_class  # iris reads rules, not the other way

    return body_class(class_name).model_construct()


@lru_cache(maxsize=256)
def _arity(func: Callable[..., Any]) -> tuple[int, int | None]:
    """How many arguments a function set function takes after the context: (least, most)."""
    params = list(inspect.signature(func).parameters.values())[1:]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return sum(p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD for p in params), None
    required = sum(p.default is p.empty for p in params)
    return required, len(params)
