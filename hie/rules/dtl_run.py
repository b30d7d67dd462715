"""Running a transform's actions (``hie.rules.transform``) against one evaluation ``Context``.

Every expression and path was compiled when the transform loaded; here they only run.
``<break/>`` and ``Quit`` unwind to the innermost ``<foreach>``, or out of the transform when
there is none, as the ``Quit`` IRIS generates for them does. ``<trace>`` logs on the
``hie.rules.transform`` logger, at the action's level.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hie.errors import ConfigError
from hie.hl7 import HL7Message
from hie.rules.expressions import Context
from hie.rules.functions import to_number, to_str
from hie.rules.hl7_target import assign_hl7, count
from hie.rules.object_paths import plain
from hie.rules.object_target import assign_object
from hie.rules.paths import parse_virtual_path

if TYPE_CHECKING:
    from hie.rules.transform import DtlAction, Transform

__all__ = ["run_transform"]

#: ``<trace>`` output belongs to the transform: one logger to turn up for DTL tracing.
log = logging.getLogger("hie.rules.transform")

_VIRTUAL = re.compile(r"^(source|target)\.\{(.*)\}$", re.DOTALL)
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


class _Leave(Exception):
    """``<break/>`` / ``Quit``: leave the innermost foreach, or end the transform."""


def run_transform(transform: Transform, ctx: Context) -> None:
    """Run every action of ``transform`` on ``ctx`` (its target changes in place)."""
    try:
        _run(transform, transform.actions, ctx)
    except _Leave:
        pass  # Quit / <break/> outside any foreach: IRIS returns from the transform


def _run(t: Transform, actions: list[DtlAction], ctx: Context) -> None:
    for a in actions:
        run = _RUNNERS.get(a.type)
        if run is not None:
            run(t, a, ctx)


def _if(t: Transform, a: DtlAction, ctx: Context) -> None:
    _run(t, a.true if t.value(a.condition or "0").is_true(ctx) else a.false, ctx)


def _switch(t: Transform, a: DtlAction, ctx: Context) -> None:
    for case in a.actions:
        if case.type == "case" and t.value(case.condition or "0").is_true(ctx):
            _run(t, case.actions, ctx)
            return
    for default in a.actions:
        if default.type == "default":
            _run(t, default.actions, ctx)
            return


def _foreach(t: Transform, a: DtlAction, ctx: Context) -> None:
    name = a.key or "k1"
    try:
        for key in _foreach_keys(t, a, ctx):
            ctx.variables[name] = key
            _run(t, a.actions, ctx)
    except _Leave:
        pass  # <break/> / Quit leaves this loop only


def _foreach_keys(t: Transform, a: DtlAction, ctx: Context) -> list[Any]:
    """Positions 1..n of segments, repetitions and lists; the sorted keys of an array."""
    match = _VIRTUAL.match(a.property)
    if match is not None:
        owner = ctx.source if match.group(1) == "source" else ctx.target
        total = count(owner, parse_virtual_path(match.group(2)), ctx.variables)
        return list(range(1, total + 1))
    path = t.object_path(a.property)
    found = path.read(ctx) if path is not None else None
    if isinstance(found, list):
        return list(range(1, len(found) + 1))
    return sorted(found) if isinstance(found, dict) else []


def _group(t: Transform, a: DtlAction, ctx: Context) -> None:
    _run(t, a.actions, ctx)


def _code(t: Transform, a: DtlAction, ctx: Context) -> None:
    _run(t, a.translated(), ctx)


def _break(t: Transform, a: DtlAction, ctx: Context) -> None:
    raise _Leave


def _trace(t: Transform, a: DtlAction, ctx: Context) -> None:
    value = t.value(a.value or '""').evaluate(ctx)
    log.log(_LEVELS[a.level], "transform %s: %s", t.name, to_str(value))


def _do(t: Transform, a: DtlAction, ctx: Context) -> None:
    t.value(a.value).evaluate(ctx)


def _subtransform(t: Transform, a: DtlAction, ctx: Context) -> None:
    sub = t.registry.get(a.class_name) if t.registry else None
    if sub is None:
        raise ConfigError(f"{t.name}: subtransform {a.class_name!r} is not loaded")
    if a.source_obj in ("source", "target", "aux"):
        source = getattr(ctx, a.source_obj)
    else:
        source = t.value(a.source_obj).evaluate(ctx)
    aux = t.value(a.aux).evaluate(ctx) if a.aux else ctx.aux
    result = sub.apply(source, aux=aux)
    path = t.object_path(a.target_obj)
    if a.target_obj == "target":
        ctx.target = result if t.hl7_target else plain(result)
    elif path is not None:
        assign_object(path, ctx, result, model=t.target_model)
    else:
        ctx.variables[a.target_obj] = result


def _assign(t: Transform, a: DtlAction, ctx: Context) -> None:
    empty = a.action == "clear" or (a.action == "remove" and not a.value)
    compiled = t.value(a.value or '""')
    value = "" if empty else compiled.evaluate(ctx)
    if isinstance(value, list) and getattr(compiled, "paths", None):
        value = to_str(value)  # an HL7 path with () gives its first value, as IRIS does
    key = _key(t.value(a.key).evaluate(ctx)) if a.key else None
    match = _VIRTUAL.match(a.property)
    path = t.object_path(a.property)
    if match is not None:
        if not isinstance(ctx.target, HL7Message):
            raise ConfigError(f"{t.name}: {a.property} needs an HL7 target")
        if isinstance(key, str):
            raise ConfigError(f"{t.name}: {a.property}: key {key!r} is not a number")
        virtual = parse_virtual_path(match.group(2))
        ctx.target = assign_hl7(
            ctx.target, virtual, to_str(value), action=a.action, key=key, variables=ctx.variables
        )
    elif a.property == "target":
        ctx.target = value.copy() if isinstance(value, HL7Message) else plain(value)
    elif path is not None:
        assign_object(path, ctx, value, action=a.action, key=key, model=t.target_model)
    else:
        _assign_variable(ctx.variables, a.property, value, a.action)


def _key(value: Any) -> int | str:
    number = to_number(value, strict=True)
    return int(number) if isinstance(number, int) else to_str(value)


def _assign_variable(variables: dict[str, Any], name: str, value: Any, action: str) -> None:
    """A DTL local variable (``tVar``), shared with ``<code>`` and every expression."""
    if action in ("clear", "remove"):
        variables.pop(name, None)
    elif action == "append":
        variables[name] = to_str(variables.get(name, "")) + to_str(value)
    else:
        variables[name] = value


_RUNNERS: dict[str, Callable[[Transform, DtlAction, Context], None]] = {
    "assign": _assign,
    "if": _if,
    "switch": _switch,
    "foreach": _foreach,
    "break": _break,
    "subtransform": _subtransform,
    "group": _group,
    "trace": _trace,
    "do": _do,
    "code": _code,
}
