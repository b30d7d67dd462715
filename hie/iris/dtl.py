"""IRIS DTL classes (``Ens.DataTransformDTL``, ``XData DTL``) -> ``Transform``.

Reads a ``.cls`` file, an IRIS export or a bare ``<transform>`` (``hie.iris.classfile``) into
the same data as HIE's YAML form, so both compile through ``transform_from_data``. Errors name
the file and line.

Elements: ``assign`` (with ``key`` for collections), ``if`` (``true`` / ``false``), ``switch``
(``case`` / ``default``), ``foreach``, ``break``, ``group``, ``subtransform`` (with ``aux``),
``trace``, ``comment``, ``code`` (its ObjectScript translated where HIE can run it) and
``sql`` (refused, with what to write instead); ``annotation`` is ignored wherever it is, and so
is an action IRIS has switched off (``disabled="1"``). An assign whose value changes a
collection or property of the target and gives a status (``<assign property="tSC"
value='target.HTTPHeaders.SetAt(v, "K")'/>``, ``.Insert(v)``, ``.InsertAt(v, i)``,
``target.StreamSet(x)``) is read as the assign it means (``target.HTTPHeaders`` at key ``"K"``,
an append, an insert, ``target.Stream``), its status variable set to 1.

A source or target class that is not HL7 is looked up beside the file (and in the export
itself) and carried as ``message_classes`` (``hie.iris.message_classes``). The DTL classes its
``<subtransform>`` actions name are loaded from beside it too, when they are there
(``Transform.beside``); one that is not is looked up when it runs (``Transform.registry``), and
a note says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lxml import etree

from hie.errors import ConfigError
from hie.iris.classfile import Definition, files_beside, read_definition, tag_name
from hie.iris.message_classes import (
    class_definitions,
    classes_in_export,
    document_base,
    is_object_class,
)
from hie.iris.safe_xml import parse_xml
from hie.rules.object_paths import split_arguments
from hie.rules.transform import Transform, TransformRegistry, transform_from_data

__all__ = ["load_dtl", "parse_dtl"]

_ACTIONS = {"assign", "if", "foreach", "subtransform", "group", "comment", "code", "sql"}
_ACTIONS |= {"switch", "trace", "break"}
_IGNORED = {"annotation"}
#: ``target.Prop.SetAt(value, key)`` (``Insert(value)``, ``InsertAt(value, i)``) and
#: ``target.PropSet(value)`` as an assign's value.
_SET_AT = re.compile(
    r"^\s*(target(?:\.[%\w]+)+)\.(SetAt|Insert|InsertAt)\((.*)\)\s*$", re.DOTALL | re.IGNORECASE
)
#: Collection method -> (assign action, how many arguments: the value, and a key for 2).
_COLLECTION_METHODS = {"setat": ("insert", 2), "insert": ("append", 1), "insertat": ("insert", 2)}
_SETTER = re.compile(r"^\s*(target(?:\.[%\w]+)*\.[%\w]+?)Set\((.*)\)\s*$", re.DOTALL)


def load_dtl(
    path: str | Path, *, allow_partial: bool = False, registry: TransformRegistry | None = None
) -> Transform:
    """Load an IRIS DTL class (``.cls``) or exported DTL XML; raises ``ConfigError``."""
    return _load(Path(path), allow_partial, registry, set())


def _load(
    path: Path, allow_partial: bool, registry: TransformRegistry | None, loading: set[str]
) -> Transform:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read transform {path}: {exc}") from exc
    transform = parse_dtl(
        data, source=str(path), allow_partial=allow_partial, registry=registry, near=path
    )
    _load_beside(transform, path, allow_partial, loading | {transform.name})
    return transform


def _load_beside(transform: Transform, near: Path, allow_partial: bool, loading: set[str]) -> None:
    """Load the subtransforms ``transform`` names from their files beside ``near``."""
    for name in sorted(_subtransform_classes(transform)):
        if name in loading:
            continue  # a transform that runs itself, or one of the chain loading now
        files = [p for p in files_beside(name, near) if p.resolve() != near.resolve()]
        if not files:
            transform.notes.append(
                f"subtransform {name} is not beside the transform: it runs only when the "
                "router loads it (transforms:)"
            )
            continue
        try:
            sub = _load(files[0], allow_partial, None, loading | {name})
        except ConfigError as exc:
            transform.notes.append(f"subtransform {name} ({files[0]}) does not load: {exc}")
            continue
        transform.add_beside(sub)


def _subtransform_classes(transform: Transform) -> set[str]:
    found: set[str] = set()
    todo = list(transform.actions)
    while todo:
        a = todo.pop()
        if a.type == "subtransform" and a.class_name:
            found.add(a.class_name)
        todo.extend([*a.true, *a.false, *a.actions])
    return found


def parse_dtl(
    text: str | bytes,
    *,
    source: str,
    allow_partial: bool = False,
    registry: TransformRegistry | None = None,
    near: Path | None = None,
) -> Transform:
    """Parse DTL class text or ``<transform>`` XML; ``source`` names the file in errors.

    ``near``: the file the text came from; message classes are looked for beside it.
    """
    found = read_definition(text, xdata="DTL", root="transform", source=source)
    root = found.root
    data: dict[str, Any] = {
        "name": found.class_name,
        "source_class": root.get("sourceClass", ""),
        "target_class": root.get("targetClass", ""),
        "source_doc_type": root.get("sourceDocType", ""),
        "target_doc_type": root.get("targetDocType", ""),
        "create": root.get("create", "new"),
        "actions": _actions(root, found),
    }
    classes = [c for c in (data["source_class"], data["target_class"]) if is_object_class(c)]
    notes: list[str] = []
    if classes:
        own = classes_in_export(parse_xml(text, source=source)) if _is_xml(text) else {}
        data["message_classes"], notes = class_definitions(classes, near=near, known=own)
        bases = {c: document_base(c, near=near, known=own) for c in classes}
        data["document_classes"] = {c: base for c, base in bases.items() if base}
    transform = transform_from_data(
        data, source=source, allow_partial=allow_partial, registry=registry
    )
    transform.notes.extend(notes)
    return transform


def _is_xml(text: str | bytes) -> bool:
    head = text[:200].lstrip() if isinstance(text, str) else text[:200].lstrip().decode("latin-1")
    return head.lstrip("\ufeff").startswith("<")


def _actions(parent: etree._Element, found: Definition) -> list[dict[str, Any]]:
    out = []
    for el in parent:
        name = tag_name(el)
        if not name or name in _IGNORED or el.get("disabled", "").lower() in ("1", "true"):
            continue
        if name not in _ACTIONS:
            known = ", ".join(f"<{a}>" for a in sorted(_ACTIONS))
            raise found.error(el, f"<{name}> is not a DTL action; write it with {known}")
        action = _action(el, name, found)
        out.extend(_setter(action) if name == "assign" else [action])
    return out


def _setter(action: dict[str, Any]) -> list[dict[str, Any]]:
    """An assign whose value is ``target.X.SetAt(v, k)``, ``Insert(v)``, ``InsertAt(v, i)`` or
    ``target.XSet(v)`` (a method that changes the target and returns a status) as the assign
    it means, then the status."""
    value = action["value"]
    at = _SET_AT.match(value)
    setter = None if at else _SETTER.match(value)
    if at is not None:
        kind, count = _COLLECTION_METHODS[at.group(2).lower()]
        prop, args = at.group(1), split_arguments(at.group(3))
    elif setter is not None:
        kind, count = "set", 1
        prop, args = setter.group(1), split_arguments(setter.group(2))
    else:
        return [action]
    if len(args) != count or not all(args):
        return [action]
    # SetAt puts the value under its key, as an insert into an array does
    changed = {**action, "property": prop, "value": args[0], "action": kind}
    changed["key"] = args[1] if count == 2 else ""
    status = {**action, "value": "1", "action": "set", "key": ""}
    return [changed, status] if action["property"] not in ("", "target") else [changed]


def _action(el: etree._Element, name: str, found: Definition) -> dict[str, Any]:
    fields: dict[str, Any] = {"type": name, "line": found.line(el)}
    if name == "assign":
        fields.update(property=el.get("property", ""), value=el.get("value", ""))
        fields.update(action=el.get("action", "set"), key=el.get("key", ""))
    elif name == "if":
        fields["condition"] = el.get("condition", "0")
        for branch in el:
            if tag_name(branch) in ("true", "false"):
                fields[tag_name(branch)] = _actions(branch, found)
    elif name == "switch":
        fields["actions"] = [_case(c, found) for c in el if tag_name(c) not in ("", *_IGNORED)]
    elif name == "foreach":
        fields.update(property=el.get("property", ""), key=el.get("key", "k1"))
        fields["actions"] = _actions(el, found)
    elif name == "group":
        fields["actions"] = _actions(el, found)
    elif name == "subtransform":
        fields.update(class_name=el.get("class", ""), source_obj=el.get("sourceObj", "source"))
        fields.update(target_obj=el.get("targetObj", "target"), aux=el.get("aux", ""))
    elif name == "trace":
        fields["value"] = el.get("value", '""')
    elif name in ("comment", "code", "sql"):
        fields.update(_text(el))
    return fields


def _case(el: etree._Element, found: Definition) -> dict[str, Any]:
    name = tag_name(el)
    if name not in ("case", "default"):
        raise found.error(el, f"<switch> holds <{name}>; only <case> and <default> belong there")
    fields: dict[str, Any] = {"type": name, "line": found.line(el), "actions": _actions(el, found)}
    if name == "case":
        fields["condition"] = el.get("condition", "0")
    return fields


def _text(el: etree._Element) -> dict[str, Any]:
    """The element's own text (CDATA included, annotations left out) and where it starts."""
    raw = (el.text or "") + "".join(child.tail or "" for child in el)
    if tag_name(el) == "comment":
        raw = "".join(el.itertext())  # a comment's words are in its <annotation>
    body = raw.strip()
    offset = raw[: len(raw) - len(raw.lstrip())].count("\n")
    return {"text": body, "offset": offset}
