"""IRIS message classes (``Ens.Request`` subclasses and the objects they hold) as pydantic models.

A DTL whose source or target is not HL7 reads or builds objects. Their classes are read from
class files (``Class Demo.Msg.LabResult Extends Ens.Request { Property PatientId As %String;
Property Observations As list Of Demo.Msg.Obs; }``) or exports (``<Class name="..."><Property
name="..."><Type>%String</Type><Collection>list</Collection>``) found beside the DTL, into the
plain data a transform carries as ``message_classes`` (inherited properties included)::

    {"Demo.Msg.LabResult": {"PatientId": "%String", "Observations": "list Of Demo.Msg.Obs"}}

``register_classes`` builds a model per class: ``%String`` -> str, ``%Integer`` -> int,
``%Numeric`` -> float, ``%Boolean`` -> bool, ``%Date`` -> date, ``%TimeStamp`` -> datetime
(both also read from HL7 ``YYYYMMDD[HHMMSS]``), ``list Of X`` -> ``list[X]``, ``array Of X`` ->
``dict[str, X]``, a defined class -> its model; any other type is kept as text, with a note.
Every property is optional, as in IRIS.

Message bodies travel with their class path (``hie.messages``); a model built here has the
path ``iris:<Class>``, which ``body_class`` resolves. Every process that loads a transform
using a class registers it, and each worker loads the production's transforms when it loads
the production; a process that has not (a message viewer) reads such a body with an open
model of the same name, its properties as they came.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from hie.errors import ConfigError
from hie.iris.classfile import class_declaration, tag_name
from hie.iris.safe_xml import parse_xml

__all__ = [
    "BODY_PREFIX",
    "body_class",
    "class_definitions",
    "is_object_class",
    "model_for",
    "read_classes",
    "register_classes",
]

#: Class paths of bodies whose class is an IRIS message class: ``iris:Demo.Msg.LabResult``.
BODY_PREFIX = "iris:"

_PROPERTY = re.compile(
    r"^[ \t]*Property[ \t]+(%?\w+)[ \t]*(?:As[ \t]+([^;\[]+?))?[ \t]*(?:\[[^\]]*\])?[ \t]*;",
    re.MULTILINE | re.IGNORECASE,
)
_COLLECTION = re.compile(r"^(list|array)\s+of\s+(\S+)$", re.IGNORECASE)
#: Framework classes with properties a DTL may use.
_BUILTIN: dict[str, dict[str, str]] = {
    "Ens.StringRequest": {"StringValue": "%String"},
    "Ens.StringResponse": {"StringValue": "%String"},
}


@dataclass
class ClassDef:
    """One class as written: its superclasses and its own properties (name -> IRIS type)."""

    name: str
    supers: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)


def is_object_class(name: str) -> bool:
    """True for a class whose messages are objects (not HL7, not an EDI document)."""
    low = name.lower()
    return bool(name) and "hl7" not in low and not low.startswith("enslib.edi.")


def _type_text(raw: str) -> str:
    """``%String(MAXLEN = 50)`` -> ``%String``; ``list Of X`` kept, whitespace collapsed."""
    text = re.sub(r"\([^()]*\)", "", raw).strip()
    return re.sub(r"\s+", " ", text) or "%String"


def read_classes(path: Path) -> dict[str, ClassDef]:
    """Every class with properties in a ``.cls`` file or an XML export; ``{}`` when unreadable."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    if path.suffix.lower() == ".cls":
        text = data.decode("utf-8-sig", errors="replace")
        name, supers = class_declaration(text)
        if not name:
            return {}
        props = {m.group(1): _type_text(m.group(2) or "") for m in _PROPERTY.finditer(text)}
        return {name: ClassDef(name, supers, props)}
    try:
        return classes_in_export(parse_xml(data, source=str(path)))
    except ConfigError:
        return {}


def classes_in_export(root: Any) -> dict[str, ClassDef]:
    """The classes of an export document (``<Export><Class name=...>``)."""
    found: dict[str, ClassDef] = {}
    for element in root.iter():
        if tag_name(element) != "Class" or not element.get("name"):
            continue
        definition = ClassDef(element.get("name"))
        for child in element:
            if tag_name(child) == "Super" and child.text:
                definition.supers = [s.strip() for s in child.text.split(",") if s.strip()]
            elif tag_name(child) == "Property" and child.get("name"):
                kind = next((c.text for c in child if tag_name(c) == "Type"), None)
                collection = next((c.text for c in child if tag_name(c) == "Collection"), None)
                text = _type_text(kind or "")
                if collection and collection.strip().lower() in ("list", "array"):
                    text = f"{collection.strip().lower()} Of {text}"
                definition.properties[child.get("name")] = text
        found[definition.name] = definition
    return found


def _element_type(spec: str) -> str:
    m = _COLLECTION.match(spec)
    return m.group(2) if m else spec


def _is_class_type(spec: str) -> bool:
    name = _element_type(spec)
    return not name.startswith("%") and name not in _SCALARS and "." in name


def _search_folders(near: Path) -> list[Path]:
    """The file's folder, its parent and the parent's other folders (how exports are laid out)."""
    here = near.resolve().parent
    try:
        beside = sorted(p for p in here.parent.iterdir() if p.is_dir() and p != here)
    except OSError:
        beside = []
    return [here, here.parent, *beside]


def _find(name: str, folders: list[Path], seen: dict[Path, dict[str, ClassDef]]) -> ClassDef | None:
    for folder in folders:
        candidates = [folder / f"{name}.cls", folder / f"{name}.xml"]
        candidates += sorted(folder.glob(f"*__{name}.cls")) + sorted(folder.glob(f"*__{name}.xml"))
        for path in candidates:
            if path.is_file():
                if path not in seen:
                    seen[path] = read_classes(path)
                if name in seen[path]:
                    return seen[path][name]
    return None


def class_definitions(
    names: list[str], *, near: Path | None = None, known: dict[str, ClassDef] | None = None
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The properties (inherited ones too) of ``names`` and every class they use, and notes.

    Args:
        names: the classes a transform reads or builds.
        near: the DTL file; definitions are looked for beside it (module docstring).
        known: classes already read (from the DTL's own export).
    """
    known = dict(known or {})
    folders = _search_folders(near) if near is not None else []
    seen: dict[Path, dict[str, ClassDef]] = {}
    out: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    todo = list(names)
    while todo:
        name = todo.pop(0)
        if name in out:
            continue
        props = _properties(name, known, folders, seen, notes, set())
        if props is None:
            notes.append(
                f"class {name} is not defined beside the transform (no {name}.cls or export): "
                "its objects are handled as plain properties, unchecked"
            )
            continue
        out[name] = props
        todo.extend(_element_type(t) for t in props.values() if _is_class_type(t))
    return out, notes


def _properties(
    name: str,
    known: dict[str, ClassDef],
    folders: list[Path],
    seen: dict[Path, dict[str, ClassDef]],
    notes: list[str],
    chain: set[str],
) -> dict[str, str] | None:
    if name in _BUILTIN:
        return dict(_BUILTIN[name])
    definition = known.get(name) or _find(name, folders, seen)
    if definition is None or name in chain:
        return None
    known[name] = definition
    props: dict[str, str] = {}
    for parent in definition.supers:
        if parent.startswith(("%", "Ens.", "EnsLib.")) and parent not in _BUILTIN:
            continue  # framework superclasses: nothing a transform assigns
        inherited = _properties(parent, known, folders, seen, notes, chain | {name})
        if inherited is None:
            notes.append(f"class {name}: superclass {parent} is not defined beside it")
        props.update(inherited or {})
    props.update(definition.properties)
    return props


# -- models ------------------------------------------------------------------------------------


def _moment(value: Any, kind: str) -> Any:
    """HL7 (``YYYYMMDD[HHMMSS]``) and horolog day numbers as dates; ``""`` as no value."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return None
    if kind == "date" and re.fullmatch(r"\d{1,6}", text):  # $HOROLOG days, IRIS's %Date
        return date(1840, 12, 31) + timedelta(days=int(text))
    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?", text)
    if m is None:
        return text
    y, mo, d, h, mi, sec = (int(p or 0) for p in m.groups())
    return date(y, mo, d) if kind == "date" else datetime(y, mo, d, h, mi, sec)


_IrisDate = Annotated[date | None, BeforeValidator(lambda v: _moment(v, "date"))]
_IrisTimeStamp = Annotated[datetime | None, BeforeValidator(lambda v: _moment(v, "datetime"))]
_SCALARS: dict[str, Any] = {
    "string": str,
    "varstring": str,
    "exactstring": str,
    "name": str,
    "char": str,
    "status": str,
    "integer": int,
    "smallint": int,
    "tinyint": int,
    "bigint": int,
    "counter": int,
    "numeric": float,
    "decimal": float,
    "double": float,
    "float": float,
    "currency": float,
    "boolean": bool,
    "date": _IrisDate,
    "timestamp": _IrisTimeStamp,
    "datetime": _IrisTimeStamp,
    "posixtime": _IrisTimeStamp,
    "time": time,
}
_MODELS: dict[str, type[BaseModel]] = {}
_DEFINITIONS: dict[str, dict[str, str]] = {}
_OPEN: dict[str, type[BaseModel]] = {}


def _scalar(name: str) -> Any:
    short = re.sub(r"^%(Library\.)?", "", name, flags=re.IGNORECASE).lower()
    return _SCALARS.get(short) if name.startswith("%") else None


def register_classes(definitions: dict[str, dict[str, str]]) -> list[str]:
    """Build (or keep) a model for every class in ``definitions``; notes on what became text."""
    notes: list[str] = []
    for name in definitions:
        _build(name, definitions, set(), notes)
    return notes


def _build(
    name: str, definitions: dict[str, dict[str, str]], building: set[str], notes: list[str]
) -> type[BaseModel] | None:
    props = definitions.get(name)
    if props is None or name in building:
        return None
    if name in _MODELS and _DEFINITIONS.get(name) == props:
        return _MODELS[name]
    building.add(name)
    fields: dict[str, Any] = {}
    for prop, spec in props.items():
        if not prop.isidentifier():
            notes.append(f"{name}.{prop}: not a name Python allows; left out")
            continue
        annotation, default = _field(spec, definitions, building, notes, f"{name}.{prop}")
        python = f"{prop}_" if prop.startswith("model_") or hasattr(BaseModel, prop) else prop
        alias = prop if python != prop else None
        fields[python] = (annotation, Field(default_factory=default, alias=alias))
    building.discard(name)
    config = ConfigDict(extra="forbid", populate_by_name=True)
    model = create_model(name.replace(".", "_"), __config__=config, __module__="iris", **fields)
    model.__qualname__ = name
    model.__doc__ = f"IRIS message class {name}."
    _MODELS[name], _DEFINITIONS[name] = model, dict(props)
    return model


def _field(
    spec: str,
    definitions: dict[str, dict[str, str]],
    building: set[str],
    notes: list[str],
    where: str,
) -> tuple[Any, Any]:
    """(annotation, default factory) of a property of IRIS type ``spec``."""
    m = _COLLECTION.match(spec)
    element = m.group(2) if m else spec
    inner: Any = _scalar(element)
    if inner is None and element in definitions:
        inner = _build(element, definitions, building, notes)
        if inner is None:  # a class that holds itself: kept as plain properties
            inner = dict[str, Any]
    if inner is None:
        kind = "streams are carried as text" if "stream" in element.lower() else "kept as text"
        notes.append(f"{where}: type {element} is not one HIE knows; {kind}")
        inner = str
    if m is None:
        return inner | None, lambda: None
    if m.group(1).lower() == "list":
        return list[inner], list
    return dict[str, inner], dict


def model_for(class_name: str) -> type[BaseModel] | None:
    """The model registered for an IRIS class, or None."""
    return _MODELS.get(class_name)


def body_class(path: str) -> type[BaseModel]:
    """The model for a body class path ``iris:<Class>`` (an open one when not registered)."""
    name = path.removeprefix(BODY_PREFIX)
    found = _MODELS.get(name) or _OPEN.get(name)
    if found is None:
        found = create_model(
            name.replace(".", "_"), __config__=ConfigDict(extra="allow"), __module__="iris"
        )
        found.__qualname__ = name
        found.__doc__ = f"IRIS message class {name}, not defined in this process."
        _OPEN[name] = found
    return found
