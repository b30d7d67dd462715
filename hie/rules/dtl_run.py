"""Running a transform's actions (``hie.rules.transform``) against one evaluation ``Context``.

Every expression and path was compiled when the transform loaded; here they only run.
``<break/>`` and ``Quit`` unwind to the innermost ``<foreach>``, or out of the transform when
there is none, as the ``Quit`` IRIS generates for them does. ``<trace>`` logs on the
``hie.rules.transform`` logger, at the action's level.

A ``<subtransform>`` whose ``targetObj`` is a virtual path (``target.{PID}``) puts its result
there: the segment a segment transform built, or a document part. With ``create="existing"``
the subtransform starts from what ``targetObj`` holds.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from hie.errors import ConfigError
from hie.hl7 import HL7Message
from hie.rules.expressions import Context
from hie.rules.functions import to_number, to_str
from hie.rules.object_paths import plain
from hie.rules.object_target import assign_object

if TYPE_CHECKING:
    from hie.rules.transform import DtlAction, Transform

__all__ = ["run_transform"]

#: ``<trace>`` output belongs to the transform: one logger to turn up for DTL tracing.
log = logging.getLogger("hie.rules.transform")

#: The segment a virtual targetObj ends at: ``target.{PIDgrp.PID}``, ``target.{ORCgrp(2)}``.
_LAST_SEGMENT = re.compile(r"([A-Z][A-Z0-9]{2})(?:grp)?(?:\([^()]*\))?\}$")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR
_WHOLE = ("source", "target", "aux")


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
    """Positions 1..n of segments, repetitions, lists and document parts; the sorted keys of
    an array (``hie.rules.doc_paths`` for what a ``...DocsRef`` gives)."""
    document = t.document_path(a.property)
    if document is not None:
        return document.items(ctx)
    path = t.object_path(a.property)
    if path is not None:
        found = path.read(ctx)
    else:  # a variable holding a collection
        found = ctx.variables.get(a.property)
    if isinstance(found, BaseModel):
        found = plain(found)
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
    sub = t.find_subtransform(a.class_name)
    if sub is None:
        raise ConfigError(
            f"{t.name}: subtransform {a.class_name!r} is not loaded: export {a.class_name}.cls "
            "beside the transform, or list it under the router's transforms"
        )
    if a.source_obj in ("source", "target", "aux"):
        source = getattr(ctx, a.source_obj)
    else:
        source = t.value(a.source_obj).evaluate(ctx)
    aux = t.value(a.aux).evaluate(ctx) if a.aux else ctx.aux
    document = t.document_path(a.target_obj)
    path = t.object_path(a.target_obj)
    if sub.create == "existing":
        existing = _current(a.target_obj, document or path, ctx)
        result = sub.apply_to(source, existing, aux=aux)
    else:
        result = sub.apply(source, aux=aux)
    if document is not None:
        document.assign(ctx, _segment_named(result, a.target_obj), action="set", key=None)
    elif a.target_obj == "target":
        ctx.target = result if t.hl7_target else plain(result)
    elif path is not None:
        assign_object(path, ctx, result, model=t.target_model)
    else:
        ctx.variables[a.target_obj] = result


def _current(name: str, path: Any, ctx: Context) -> Any:
    """What ``targetObj`` holds now: a path's value, the target or a variable."""
    if path is not None:
        return path.read(ctx)
    return ctx.target if name == "target" else ctx.variables.get(name)


def _segment_named(result: Any, target_obj: str) -> Any:
    """A segment transform's result named as the segment ``targetObj`` names (``target.{PV1}``),
    for a transform that did not say which segment it builds (no doc type)."""
    wanted = _LAST_SEGMENT.search(target_obj)
    if isinstance(result, str) and wanted and result[:3] != wanted.group(1):
        if result[:3].isalnum() and result[3:4] in ("|", ""):
            return wanted.group(1) + result[3:]
    return result


def _assign(t: Transform, a: DtlAction, ctx: Context) -> None:
    if a.property.startswith("$"):
        return  # a process setting HIE does not have; listed in Transform.skipped at load
    empty = a.action == "clear" or (a.action == "remove" and not a.value)
    compiled = t.value(a.value or '""')
    if a.value.strip() in _WHOLE:
        # the whole message or object (in a rule, a bare Source is the sending item's name)
        value: Any = getattr(ctx, a.value.strip())
    else:
        value = "" if empty else compiled.evaluate(ctx)
    if isinstance(value, list) and getattr(compiled, "paths", None):
        value = to_str(value)  # an HL7 path with () gives its first value, as IRIS does
    key = _key(t.value(a.key).evaluate(ctx)) if a.key else None
    document = t.document_path(a.property)
    path = t.object_path(a.property)
    if document is not None:
        document.assign(ctx, value, action=a.action, key=key)
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
