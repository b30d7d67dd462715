"""Object properties in DTL: ``target.Observations.(k1).Code``, ``source.Codes.("K")``.

An IRIS message that is not HL7 is an object (an ``Ens.Request`` subclass): properties, lists
(``list Of``, indexed from 1) and arrays (``array Of``, keyed by text). HIE reads them from
pydantic models (``hie.iris.message_classes``), dicts and lists; a transform builds its target
as plain dicts and lists, validated into its model at the end.

The expression language reads HL7 virtual paths and ``owner.Property``. Longer object paths
are DTL's alone, so they compile here: ``compile_value`` puts a placeholder variable in place
of each such path, and fills it in just before the expression runs. So do virtual paths on
what is not an HL7 message (``hie.rules.doc_paths``): on a variable (``tSeg.{BPR:1}``), through
properties (``source.Parent.{GS:Date}``), or on the ``documents`` owners a transform names
(``source``/``target`` when their class is a document tree or a single segment).

Methods: ``Count()``, ``GetAt(i)``, and ``%Id()``, which reads ``""``: HIE keeps no database
objects, so a message has no object id. A path that calls another method (``GetValueAt``,
``%Get``) is left whole to the expression language, which runs those. Property names may be
quoted (``source.Item."2ndNumber"``) and in any script. An assign may also build an object in a
DTL variable (``tRouting.Code``: ``parse_object_path(..., variables=True)``).
"""

from __future__ import annotations

import itertools
import re
import string
from dataclasses import dataclass
from collections.abc import Iterator
from typing import Any, Protocol

from pydantic import BaseModel

from hie.errors import ConfigError
from hie.rules.doc_paths import OWNERS, DocPath, doc_path_at, owner_at
from hie.rules.expressions import Context, Expression, compile_expression
from hie.rules.functions import to_number, to_str, truth

__all__ = [
    "ObjectPath",
    "Value",
    "child",
    "class_calls",
    "closing",
    "code_chars",
    "compile_value",
    "field_name",
    "parse_object_path",
    "plain",
    "split_arguments",
    "string_end",
]

#: A name: letters (any script: ``Numérofacture``), digits after the first, and ``%``.
_IDENT = re.compile(r"(?:%|[^\W\d_])(?:[^\W_]|%)*")
_OWNERS = ("source", "target", "aux")
#: Characters after which a name is not the start of an operand (``..Method``, ``$Piece``).
_NOT_START = set("%.$#" + string.ascii_letters + string.digits)
_METHODS = {"count", "getat", "%id"}
_NO_DOCUMENTS: frozenset[str] = frozenset()
_placeholders = itertools.count(1)


class Value(Protocol):
    """A compiled expression: ``Expression``, or ``ObjectExpression`` when it reads objects."""

    @property
    def text(self) -> str: ...

    def evaluate(self, ctx: Context) -> Any: ...

    def is_true(self, ctx: Context) -> bool: ...


def class_calls(value: Value) -> list[str]:
    """The helper-class methods (``Demo.Util.Helper.Now``, ``..Method``) ``value`` calls."""
    calls = getattr(value, "class_calls", None)
    return list(calls) if calls else []


@dataclass(frozen=True)
class _Step:
    name: str  # a property or method name; "" for an index step ``.(expr)``
    args: tuple[Value, ...] = ()
    method: bool = False


@dataclass(frozen=True)
class ObjectPath:
    """A parsed object path: its owner (``source``/``target``/``aux``) and steps."""

    text: str
    owner: str
    steps: tuple[_Step, ...]

    @property
    def simple(self) -> bool:
        """One property step (``source.Name``): the expression language reads it itself."""
        return len(self.steps) == 1 and not self.steps[0].method and bool(self.steps[0].name)

    def key(self, step: _Step, ctx: Context) -> str | int:
        """A step's property name, or its evaluated index (a number for lists)."""
        if step.name and not step.method:
            return step.name
        value = step.args[0].evaluate(ctx) if step.args else ""
        number = to_number(value, strict=True)
        return int(number) if isinstance(number, int) else to_str(value)

    def read(self, ctx: Context) -> Any:
        """The value at the path; ``""`` where a property or element is missing (as in IRIS)."""
        if self.owner in _OWNERS:
            obj = getattr(ctx, self.owner)
        else:  # a DTL variable holding an object
            obj = ctx.variables.get(self.owner, "")
        for step in self.steps:
            if step.method and step.name.lower() == "%id":
                return ""  # no database: a message has no object id (module docstring)
            if step.method and step.name.lower() == "count":
                obj = len(obj) if isinstance(obj, list | dict) else 0
            else:
                obj = child(obj, self.key(step, ctx))
        return obj


def child(obj: Any, key: str | int) -> Any:
    """``obj``'s property or element ``key`` (lists from 1), or ``""`` when there is none."""
    if isinstance(obj, BaseModel):
        name = field_name(type(obj), str(key))
        if name is None:  # an open model (a class this process has no definition of)
            found = (obj.model_extra or {}).get(str(key), "")
        else:
            found = getattr(obj, name)
        return "" if found is None else found
    if isinstance(obj, dict):
        found = obj.get(str(key), obj.get(key, ""))
        return "" if found is None else found
    if isinstance(obj, list) and isinstance(key, int) and 0 < key <= len(obj):
        found = obj[key - 1]
        return "" if found is None else found
    return ""


def field_name(model: type[BaseModel], name: str) -> str | None:
    """The Python field of ``model`` an IRIS property name is (fields may carry an alias)."""
    if name in model.model_fields:
        return name
    return next((f for f, info in model.model_fields.items() if info.alias == name), None)


def plain(value: Any) -> Any:
    """``value`` as plain data (dicts and lists), the form a transform builds its target in."""
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def parse_object_path(
    text: str,
    *,
    where: str = "",
    documents: frozenset[str] = _NO_DOCUMENTS,
    variables: bool = False,
) -> ObjectPath | None:
    """``owner.Step."quoted name".(index).Method()`` as an ``ObjectPath``; None when ``text``
    is not one. The owner is ``source``, ``target`` or ``aux``; with ``variables``, also a DTL
    variable (``tObj.Name``).

    Raises ``ConfigError`` for an index or argument that does not compile, or a method other
    than ``Count()``, ``GetAt(i)`` and ``%Id()``.
    """
    text = text.strip()
    found = _owner_at(text, 0, variables)
    if found is None:
        return None
    path, end, call = _path_at(text, 0, found, where, documents)
    if call is not None:
        name = text[end + 1 : text.index("(", end)]
        instead = "use .Count(), .GetAt(i) or .(i)"
        if name.lower() == "getvalueat":
            instead = f"write {path.owner}.{{path}} (a virtual property) instead"
        raise ConfigError(
            f"{where + ': ' if where else ''}{text[:call]!r}: {name}() is not a method HIE "
            f"runs here; {instead}"
        )
    return path if end == len(text) and path.steps else None


def _owner_at(text: str, i: int, variables: bool = False) -> int | None:
    """The end of an owner name at ``i`` that starts an object path (``.`` then not ``{``)."""
    m = _IDENT.match(text, i)
    if m is None or (m.group() not in _OWNERS and not variables):
        return None
    end = m.end()
    if text[end : end + 1] != "." or text[end + 1 : end + 2] in ("{", "."):
        return None
    return end


def _path_at(
    text: str, owner_start: int, end: int, where: str, documents: frozenset[str]
) -> tuple[ObjectPath, int, int | None]:
    """The path whose owner spans ``owner_start:end``, where it ends, and, when it ends at a
    method this module does not run (the expression language's), where that call ends."""
    steps: list[_Step] = []
    pos = end
    while text[pos : pos + 1] == ".":
        nxt = text[pos + 1 : pos + 2]
        if nxt == "(":
            close = _closing(text, pos + 1, where)
            index = compile_value(text[pos + 2 : close], where=where, documents=documents)
            steps.append(_Step("", (index,)))
            pos = close + 1
            continue
        if nxt == '"':  # a quoted property name: source.Item."2ndNumber"
            close = string_end(text, pos + 1)
            steps.append(_Step(text[pos + 2 : close - 1].replace('""', '"')))
            pos = close
            continue
        m = _IDENT.match(text, pos + 1)
        if m is None:
            break
        if text[m.end() : m.end() + 1] != "(":
            steps.append(_Step(m.group()))
            pos = m.end()
            continue
        close = _closing(text, m.end(), where)
        if m.group().lower() not in _METHODS:
            owner = text[owner_start:end]
            return ObjectPath(text[owner_start:pos], owner, tuple(steps)), pos, close + 1
        args = tuple(
            compile_value(a, where=where, documents=documents)
            for a in split_arguments(text[m.end() + 1 : close])
        )
        steps.append(_Step(m.group(), args, method=True))
        pos = close + 1
    owner = text[owner_start:end]
    return ObjectPath(text[owner_start:pos], owner, tuple(steps)), pos, None


def code_chars(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """The characters of ObjectScript ``text`` from ``start`` outside string literals, each with
    the bracket depth after it (``(`` and ``{`` open, ``)`` and ``}`` close): the one scanner
    the code readers share."""
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c == '"':
            i = string_end(text, i)
            continue
        if c in "({":
            depth += 1
        elif c in ")}":
            depth -= 1
        yield i, c, depth
        i += 1


def closing(text: str, open_at: int) -> int | None:
    """The index of the bracket closing the one at ``open_at``, or None."""
    return next((i for i, _, depth in code_chars(text, open_at) if depth == 0), None)


def _closing(text: str, open_at: int, where: str) -> int:
    """The index of the parenthesis closing the one at ``open_at`` (strings skipped)."""
    found = closing(text, open_at)
    if found is not None:
        return found
    raise ConfigError(f"{where + ': ' if where else ''}{text!r}: '(' is not closed")


def string_end(text: str, i: int) -> int:
    """The index just past the string literal starting at ``i`` (``""`` is a quote inside)."""
    i += 1
    while i < len(text):
        if text[i] == '"':
            if text[i + 1 : i + 2] == '"':
                i += 2
                continue
            return i + 1
        i += 1
    return i


def split_arguments(text: str) -> list[str]:
    """``text`` split at top-level commas (not inside strings, parentheses or braces)."""
    parts: list[str] = []
    start = 0
    for i, c, depth in code_chars(text):
        if c == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    if text.strip() or parts:
        parts.append(text[start:].strip())
    return parts


class _Reader(Protocol):
    """What a placeholder stands for: an ``ObjectPath`` or a ``DocPath``."""

    @property
    def text(self) -> str: ...

    def read(self, ctx: Context) -> Any: ...


class ObjectExpression:
    """An expression that reads object paths: each is read into a placeholder variable first."""

    def __init__(self, text: str, inner: Expression, paths: list[tuple[str, _Reader]]) -> None:
        self.text = text
        self._inner = inner
        self._paths = paths

    @property
    def paths(self) -> list[Any]:
        """The virtual (HL7) paths the expression reads."""
        return list(getattr(self._inner, "paths", []))

    @property
    def class_calls(self) -> list[str]:
        """Helper-class methods called here or in a path's index."""
        calls = class_calls(self._inner)
        for _, path in self._paths:
            for step in path.steps if isinstance(path, ObjectPath) else ():
                calls.extend(c for a in step.args for c in class_calls(a))
        return calls

    def evaluate(self, ctx: Context) -> Any:
        """The expression's value, with every object path read now."""
        for name, path in self._paths:
            ctx.variables[name] = path.read(ctx)
        try:
            return self._inner.evaluate(ctx)
        finally:
            for name, _ in self._paths:
                ctx.variables.pop(name, None)

    __call__ = evaluate

    def is_true(self, ctx: Context) -> bool:
        """The value as a condition (ObjectScript truth)."""
        return truth(self.evaluate(ctx))

    def __repr__(self) -> str:
        return f"ObjectExpression({self.text!r})"


def compile_value(
    text: str, *, where: str = "", documents: frozenset[str] = _NO_DOCUMENTS
) -> Value:
    """Compile an expression; object paths in it (``source.Obs.(k1).Code``) read objects, and
    virtual paths on ``documents`` owners (``target.{Patient.Name}``) or on variables read
    through ``hie.rules.doc_paths``.

    Raises ``ConfigError`` naming the expression, as ``compile_expression`` does.
    """
    found = _scan(text, where, documents)
    if not found:
        return compile_expression(text, where=where)
    rewritten = text
    paths: list[tuple[str, _Reader]] = []
    for start, end, path in reversed(found):
        name = f"%ObjPath{next(_placeholders)}"
        rewritten = rewritten[:start] + name + rewritten[end:]
        paths.append((name, path))
    try:
        inner = compile_expression(rewritten, where=where)
    except ConfigError as exc:
        message = str(exc)
        for name, path in paths:
            message = message.replace(name, path.text)
        raise ConfigError(message.replace(repr(rewritten), repr(text))) from None
    return ObjectExpression(text, inner, paths)


def _document_at(text: str, i: int, documents: frozenset[str]) -> tuple[DocPath, int] | None:
    """A virtual path at ``i`` that HIE reads itself, not the expression language: on a
    variable, through properties, or on an owner in ``documents``."""
    chain = owner_at(text, i)
    if chain is None:
        return None
    owner, props = chain
    if props or owner.lower() not in OWNERS or owner in documents:
        return doc_path_at(text, i)
    return None


def _scan(text: str, where: str, documents: frozenset[str]) -> list[tuple[int, int, _Reader]]:
    """Every object path in ``text`` the expression language cannot read, with its span."""
    found: list[tuple[int, int, _Reader]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            i = string_end(text, i)
            continue
        if c == "{":  # a virtual property path: nothing object-like inside
            close = text.find("}", i)
            i = len(text) if close < 0 else close + 1
            continue
        if (c.isalpha() or c == "%") and (i == 0 or text[i - 1] not in _NOT_START):
            document = _document_at(text, i, documents)
            if document is not None:
                found.append((i, document[1], document[0]))
                i = document[1]
                continue
            end = _owner_at(text, i)
            if end is None:
                m = _IDENT.match(text, i)
                i = m.end() if m else i + 1
                continue
            path, stop, call = _path_at(text, i, end, where, documents)
            if call is not None:
                i = call  # a method the expression language runs, on the whole chain
                continue
            if not path.simple and path.steps:
                found.append((i, stop, path))
            i = stop
            continue
        i += 1
    return found
