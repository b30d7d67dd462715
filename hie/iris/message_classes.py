"""IRIS message classes (``Ens.Request`` subclasses and the objects they hold) as pydantic models.

A DTL whose source or target is not HL7 reads or builds objects. Their classes are read from
class files (``Class Demo.Msg.LabResult Extends Ens.Request { Property PatientId As %String;
Property Observations As list Of Demo.Msg.Obs; }``) or exports (``<Class name="..."><Property
name="..."><Type>%String</Type><Collection>list</Collection>``) found beside the DTL, into the
plain data a transform carries as ``message_classes`` (inherited properties included)::

    {"Demo.Msg.LabResult": {"PatientId": "%String", "Observations": "list Of Demo.Msg.Obs"}}

A type without a package (``As Address``) is in the class's own package, as IRIS resolves it;
``Relationship Records As X [ Cardinality = many ]`` (a RecordMap batch) is a list. The base
classes a DTL meets most (``Ens.StringRequest``, ``Ens.StreamContainer``,
``EnsLib.HTTP.GenericMessage``, RecordMap records and batches with ``%Source``) are built in. A
class that extends a virtual document (``EnsLib.EDI.Document``, ``IOP.Message``,
``EnsLib.HL7.Message``) is not an object class: ``document_base`` names what it is.

``register_classes`` builds a model per class: ``%String`` -> str, ``%Integer`` -> int,
``%Numeric`` -> float, ``%Boolean`` -> bool, ``%Date`` -> date, ``%TimeStamp`` -> datetime
(both also read from HL7 ``YYYYMMDD[HHMMSS]``), ``list Of X`` -> ``list[X]``, ``array Of X`` ->
``dict[str, X]``, a defined class -> its model, a class not defined here -> whatever it is
given (text or open properties); any other ``%`` type is kept as text, with a note. Every
property is optional, as in IRIS, and ``""`` in a number, date or boolean is no value. A name
Python does not allow (``%Source``, ``"2ndItem"``) gets a field of its own with the IRIS name
as its alias.

Message bodies travel with their class path (``hie.messages``); a model built here has the
path ``iris:<Class>``, which ``body_class`` resolves. Every process that loads a transform
using a class registers it, and each worker loads the production's transforms when it loads
the production; a process that has not (a message viewer), and a transform building a class
with no definition, use an ``OpenMessage`` of the same name, its properties as they came.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from hie.errors import ConfigError
from hie.iris.classfile import class_declaration, files_beside, tag_name
from hie.iris.safe_xml import parse_xml

__all__ = [
    "BODY_PREFIX",
    "OpenMessage",
    "body_class",
    "class_definitions",
    "document_base",
    "is_object_class",
    "model_for",
    "read_classes",
    "register_classes",
]

#: Class paths of bodies whose class is an IRIS message class: ``iris:Demo.Msg.LabResult``.
BODY_PREFIX = "iris:"

_PROPERTY = re.compile(
    r"^[ \t]*Property[ \t]+(%?\w+|\"[^\"\n]+\")[ \t]*"
    # the type, its parameters (which may hold brackets in strings: XMLPATTERN = "[a-z]+")
    r"(?:As[ \t]+((?:(?:list|array)[ \t]+of[ \t]+)?[%\w.]+)[ \t]*(?:\((?:[^()\"]|\"[^\"]*\")*\))?)?"
    r"[ \t]*(?:\[[^\n]*\])?[ \t]*;",
    re.MULTILINE | re.IGNORECASE,
)
#: ``Relationship Records As X [ Cardinality = many ]``: the records of a RecordMap batch.
_RELATIONSHIP = re.compile(
    r"^[ \t]*Relationship[ \t]+(%?\w+)[ \t]+As[ \t]+([%\w.]+)[^\n]*?Cardinality[ \t]*=[ \t]*(\w+)",
    re.MULTILINE | re.IGNORECASE,
)
_COLLECTION = re.compile(r"^(list|array)\s+of\s+(\S+)$", re.IGNORECASE)
_RECORD = {"%Source": "%String"}
_STREAM = {
    "Stream": "%Stream.GlobalCharacter",
    "OriginalFilename": "%String",
    "Type": "%String",
    "Attributes": "array Of %String",
}
#: Framework classes with properties a DTL may use (``%Source``: the file a record came from).
_BUILTIN: dict[str, dict[str, str]] = {
    "Ens.StringRequest": {"StringValue": "%String"},
    "Ens.StringResponse": {"StringValue": "%String"},
    "Ens.StringContainer": {"StringValue": "%String"},
    "Ens.StreamContainer": _STREAM,
    "EnsLib.HTTP.GenericMessage": {**_STREAM, "HTTPHeaders": "array Of %String"},
    "EnsLib.RecordMap.Base": _RECORD,
    "EnsLib.RecordMap.Batch": _RECORD,
    "EnsLib.RecordMap.SimpleBatch": _RECORD,
    "EnsLib.RecordMap.ComplexBatch": _RECORD,
}
#: Virtual documents: their ``{...}`` paths address a document tree, not properties.
_DOCUMENT_BASES = ("EnsLib.EDI.", "EnsLib.HL7.", "Ens.VDoc.", "IOP.Message")


@dataclass
class ClassDef:
    """One class as written: its superclasses and its own properties (name -> IRIS type)."""

    name: str
    supers: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)


def is_object_class(name: str) -> bool:
    """True for a class whose messages are objects (not HL7, not another virtual document)."""
    return bool(name) and not _is_document(name)


def _is_document(name: str) -> bool:
    low = name.lower()
    return any(low == base.lower() or low.startswith(base.lower()) for base in _DOCUMENT_BASES)


def _qualified(spec: str, owner: str) -> str:
    """A type as IRIS resolves it in class ``owner``: a name without a package is in the
    owner's package (``Address`` in ``Canonical.Customer`` is ``Canonical.Address``)."""
    m = _COLLECTION.match(spec)
    element = m.group(2) if m else spec
    package = owner.rpartition(".")[0]
    if "." in element or element.startswith("%") or not package:
        return spec
    full = f"{package}.{element}"
    return f"{m.group(1)} Of {full}" if m else full


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
        props = {
            m.group(1).strip('"'): _type_text(m.group(2) or "") for m in _PROPERTY.finditer(text)
        }
        for m in _RELATIONSHIP.finditer(text):
            # many / children: a list; one / parent points back at the owner, which a
            # transform does not build (and which would make the models circular)
            if m.group(3).lower() in ("many", "children"):
                props[m.group(1)] = f"list Of {m.group(2)}"
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


def _find(name: str, near: Path | None, seen: dict[Path, dict[str, ClassDef]]) -> ClassDef | None:
    for path in files_beside(name, near) if near is not None else []:
        if path not in seen:
            seen[path] = read_classes(path)
        if name in seen[path]:
            return seen[path][name]
    return None


def class_definitions(
    names: list[str], *, near: Path | None = None, known: dict[str, ClassDef] | None = None
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The properties (inherited ones too) of ``names`` and every class they use, and notes.

    A class that extends a virtual document (``EnsLib.EDI.Document``, ``IOP.Message``) is left
    out, with a note: a transform reads and builds it as a document tree (``hie.rules.vdoc``).

    Args:
        names: the classes a transform reads or builds.
        near: the DTL file; definitions are looked for beside it (module docstring).
        known: classes already read (from the DTL's own export).
    """
    lookup = _Lookup(dict(known or {}), near)
    out: dict[str, dict[str, str]] = {}
    todo, done = list(names), set()
    while todo:
        name = todo.pop(0)
        if name in done:
            continue
        done.add(name)
        props = lookup.properties(name, set())
        if name in lookup.documents:
            lookup.notes.append(
                f"class {name} is a virtual document (it extends {lookup.documents[name]}): "
                "its {...} paths address a document tree"
            )
            continue
        if props is None:
            lookup.notes.append(
                f"class {name} is not defined beside the transform (no {name}.cls or export): "
                "its objects are handled as plain properties, unchecked"
            )
            continue
        out[name] = props
        todo.extend(_element_type(t) for t in props.values() if _is_class_type(t))
    return out, lookup.notes


def document_base(
    name: str, *, near: Path | None = None, known: dict[str, ClassDef] | None = None
) -> str:
    """The IRIS virtual document class ``name`` is or extends (``EnsLib.HL7.Message``,
    ``EnsLib.EDI.Document``), from its definition beside ``near``; ``""`` when none."""
    if _is_document(name):
        return name
    lookup = _Lookup(dict(known or {}), near)
    lookup.properties(name, set())
    return lookup.documents.get(name, "")


class _Lookup:
    """Class definitions found so far, for one transform's classes."""

    def __init__(self, known: dict[str, ClassDef], near: Path | None) -> None:
        self.known = known
        self.near = near
        self.seen: dict[Path, dict[str, ClassDef]] = {}
        self.notes: list[str] = []
        #: Classes found to be virtual documents -> the document class they extend.
        self.documents: dict[str, str] = {}

    def properties(self, name: str, chain: set[str]) -> dict[str, str] | None:
        """The properties of ``name`` and its superclasses; None when it is not defined or is
        a virtual document (then listed in ``documents``)."""
        if name in _BUILTIN:
            return dict(_BUILTIN[name])
        definition = self.known.get(name) or _find(name, self.near, self.seen)
        if definition is None or name in chain:
            return None
        self.known[name] = definition
        props: dict[str, str] = {}
        for parent in definition.supers:
            if _is_document(parent) or parent in self.documents:
                self.documents[name] = self.documents.get(parent, parent)
                return None
            if parent.startswith(("%", "Ens.", "EnsLib.")) and parent not in _BUILTIN:
                continue  # framework superclasses: nothing a transform assigns
            inherited = self.properties(parent, chain | {name})
            if parent in self.documents:
                self.documents[name] = self.documents[parent]
                return None
            if inherited is None:
                self.notes.append(f"class {name}: superclass {parent} is not defined beside it")
            props.update(inherited or {})
        props.update({k: _qualified(v, name) for k, v in definition.properties.items()})
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
        # %Source, "2ndItem": a Python name of their own, the IRIS name as the alias.
        python = f"pct_{prop[1:]}" if prop.startswith("%") else prop
        if not python.isidentifier():
            python = "q_" + re.sub(r"\W", "_", python)
        if not python.isidentifier():
            notes.append(f"{name}.{prop}: not a name Python allows; left out")
            continue
        annotation, default = _field(spec, definitions, building, notes, f"{name}.{prop}")
        if python.startswith("model_") or hasattr(BaseModel, python):
            python = f"{python}_"
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
    if inner is None and not element.startswith("%"):
        # A class not defined here: its values are taken as they come, text or properties.
        notes.append(
            f"{where}: class {element} is not defined beside the transform; its values are "
            "kept as they come (text, or open properties)"
        )
        inner = Any
    if inner is None:
        kind = "streams are carried as text" if "stream" in element.lower() else "kept as text"
        notes.append(f"{where}: type {element} is not one HIE knows; {kind}")
        inner = str
    if m is None and inner not in (str, Any):
        # IRIS stores "" in a %Integer (or %Boolean...) property as no value: so does HIE.
        return Annotated[inner | None, BeforeValidator(_empty_as_none)], lambda: None
    if m is None:
        return inner | None, lambda: None
    if m.group(1).lower() == "list":
        return list[inner], list
    return dict[str, inner], dict


def _empty_as_none(value: Any) -> Any:
    return None if value == "" else value


def model_for(class_name: str) -> type[BaseModel] | None:
    """The model registered for an IRIS class, or None."""
    return _MODELS.get(class_name)


class OpenMessage(BaseModel):
    """A message of a class with no definition here: its properties as they came (any names,
    any nesting). It equals the dict of its properties, the plain data a transform built."""

    model_config = ConfigDict(extra="allow")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, dict):
            return self.model_dump(by_alias=True) == other
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # equal to a dict, so not hashable either


def body_class(path: str) -> type[BaseModel]:
    """The model for a body class path ``iris:<Class>`` (an ``OpenMessage`` of that name when
    not registered)."""
    name = path.removeprefix(BODY_PREFIX)
    found = _MODELS.get(name) or _OPEN.get(name)
    if found is None:
        found = create_model(name.replace(".", "_"), __base__=OpenMessage, __module__="iris")
        found.__qualname__ = name
        found.__doc__ = f"IRIS message class {name}, not defined in this process."
        _OPEN[name] = found
    return found
