"""Transforms: the DTL action model (IRIS ``Ens.DataTransformDTL``) and how it runs, in HIE.

A transform is data: HIE's YAML form (``transform_from_data``) or an IRIS DTL class read by
``hie.iris.dtl``; both give the same ``Transform``, which routing rules send through by name.

``Transform.apply(source)`` returns a new target. What it reads and builds depends on the kind
of its source and target classes (``hie.rules.dtl_target``): an ``HL7Message`` for HL7, the
ER7 text of one segment for ``EnsLib.HL7.Segment``, the model of a message class defined
beside the transform (``hie.iris.message_classes``), else an open model holding a document tree
(XML, X12, EDIFACT, ASTM, IOP documents and classes not defined here; ``hie.rules.vdoc``).

Actions: ``assign`` (``set``, ``clear``, ``remove``, ``append``, ``insert``: see
``hie.rules.hl7_target``, ``hie.rules.object_target`` and ``hie.rules.vdoc``), ``if``,
``switch`` (the first ``case`` whose condition holds, else ``default``), ``foreach`` (over
segments, repetitions, lists, arrays and document parts; ``prop()`` is the collection ``prop``;
``break`` leaves it), ``group``, ``subtransform`` (with ``aux``; of whole messages, objects or
single segments), ``trace`` (logged at its ``level``), ``do`` (HIE's own: an expression run for
its effect), ``comment``, and ``code``, whose ObjectScript runs when it is within what
``hie.iris.objectscript_code`` translates. ``sql``, and code outside that subset, is refused at
load unless ``allow_partial=True``, which skips it and lists it in ``Transform.skipped``. An
assign to a special variable (``$ZSTORAGE``, a process's memory limit) is ignored and listed
there too: HIE has no such settings.

A subtransform is found when it runs: in the ``registry`` (a router's transforms), else among
the transforms exported beside the DTL (``hie.iris.dtl`` loads them); one found in neither
stops the message with an error naming the class, and ``missing_subtransforms`` lists them.

Whoever loads a transform gives it what its expressions call: ``functions`` (helper-class
methods, see ``hie.iris.helper_classes``) and ``tables`` (lookup tables).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from hie.errors import ConfigError
from hie.rules.doc_paths import DocPath, parse_doc_path
from hie.rules.document import validate_document
from hie.rules.dtl_run import run_transform
from hie.rules.dtl_target import Kind, class_kind, finish, new_target, start_source
from hie.rules.expressions import Context
from hie.rules.object_paths import (
    ObjectPath,
    Value,
    class_calls,
    compile_value,
    parse_object_path,
)
from hie.rules.object_target import check_object_path
from hie.rules.paths import parse_virtual_path
from hie.rules.segment_view import segment_of, segment_path

__all__ = ["DtlAction", "Transform", "TransformRegistry", "transform_from_data"]

_VARIABLE = re.compile(r"^[A-Za-z%][A-Za-z0-9]*$")
_VARIABLE_PROPERTY = re.compile(r"^(?!(?:source|target|aux)\.)[A-Za-z%][A-Za-z0-9]*\.[^{]+$")
#: ``source.Records()`` in a foreach: every element of the collection ``Records``.
_COLLECTION = re.compile(r"^(.*\.[A-Za-z%][A-Za-z0-9]*)\(\s*\)$")
_OWNERS = ("source", "target", "aux")
_SQL = (
    "<sql> queries the IRIS database, which HIE does not have; look values up with a lookup "
    "table (..Lookup(table, key)) or a helper class method (##class(Pkg.Helper).Method(...)) "
    "mapped to Python in the functions: section of hie-mapping.yaml"
)

ActionType = Literal[
    "assign",
    "if",
    "switch",
    "case",
    "default",
    "foreach",
    "break",
    "subtransform",
    "group",
    "trace",
    "do",
    "comment",
    "code",
    "sql",
]


class DtlAction(BaseModel):
    """One DTL action; which fields matter depends on ``type`` (module docstring)."""

    model_config = ConfigDict(extra="forbid")

    type: ActionType
    property: str = ""
    value: str = ""
    action: str = "set"
    #: The foreach key variable; for assign, the collection key (an expression).
    key: str = ""
    condition: str = ""
    true: list[DtlAction] = []
    false: list[DtlAction] = []
    actions: list[DtlAction] = []
    class_name: str = ""
    source_obj: str = "source"
    target_obj: str = "target"
    aux: str = ""
    text: str = ""
    level: Literal["debug", "info", "warning", "error"] = "debug"
    line: int | None = Field(default=None, exclude=True)
    #: For code: how many lines below ``line`` its text starts.
    offset: int = Field(default=0, exclude=True)
    _code: list[DtlAction] = PrivateAttr(default_factory=list)

    # A method, not a property: ``property`` is a field name here.
    def translated(self) -> list[DtlAction]:
        """For code: the actions its ObjectScript translates to (set when it compiles)."""
        return self._code


class TransformRegistry(dict[str, "Transform"]):
    """Transforms by class name, for ``subtransform`` and for routing sends."""

    def add(self, transform: Transform) -> None:
        """Register ``transform`` under its class name, with the subtransforms loaded beside it
        (a transform of the same name registered already is kept)."""
        self[transform.name] = transform
        for sub in transform.beside.values():
            if sub.name not in self:
                sub.registry = self
                self.add(sub)


class Transform(BaseModel):
    """A compiled DTL transform."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    source_class: str = "EnsLib.HL7.Message"
    target_class: str = "EnsLib.HL7.Message"
    source_doc_type: str = ""
    target_doc_type: str = ""
    create: str = "new"
    actions: list[DtlAction] = []
    #: IRIS message classes the transform reads or builds: class -> property -> IRIS type
    #: (``%String``, ``list Of Demo.Msg.Obs``); see ``hie.iris.message_classes``.
    message_classes: dict[str, dict[str, str]] = {}
    #: Classes that extend an IRIS virtual document -> that document class
    #: (``Demo.ADT`` -> ``EnsLib.HL7.Message``): read and built as one.
    document_classes: dict[str, str] = {}
    skipped: list[str] = Field(default=[], exclude=True)
    #: What loading noticed but did not refuse (a message class not found, a type kept as text).
    notes: list[str] = Field(default=[], exclude=True)
    source_file: str = Field(default="", exclude=True)
    _values: dict[str, Value] = PrivateAttr(default_factory=dict)
    _paths: dict[str, ObjectPath] = PrivateAttr(default_factory=dict)
    _docs: dict[str, DocPath] = PrivateAttr(default_factory=dict)
    _documents: frozenset[str] = PrivateAttr(default=frozenset())
    _calls: dict[str, list[str]] = PrivateAttr(default_factory=dict)
    _registry: TransformRegistry | None = PrivateAttr(default=None)
    _beside: dict[str, Transform] = PrivateAttr(default_factory=dict)
    _functions: Mapping[str, Callable[..., Any]] = PrivateAttr(default_factory=dict)
    _tables: Any = PrivateAttr(default=None)

    @property
    def registry(self) -> TransformRegistry | None:
        """Where ``subtransform`` finds other transforms by class name."""
        return self._registry

    @registry.setter
    def registry(self, value: TransformRegistry | None) -> None:
        self._registry = value

    @property
    def beside(self) -> dict[str, Transform]:
        """Subtransforms loaded with this one (exported beside it), by class name."""
        return dict(self._beside)

    def add_beside(self, sub: Transform) -> None:
        """Keep ``sub`` as a subtransform this one may run (``hie.iris.dtl`` finds them)."""
        self._beside[sub.name] = sub

    def find_subtransform(self, name: str) -> Transform | None:
        """The transform ``name``: from the registry, else from those loaded beside."""
        found = self._registry.get(name) if self._registry is not None else None
        return found or self._beside.get(name)

    def subtransforms(self) -> list[str]:
        """The classes this transform's ``<subtransform>`` actions name."""
        return sorted({a.class_name for a in _every(self.actions) if a.type == "subtransform"})

    def missing_subtransforms(self) -> list[str]:
        """The classes this transform's ``<subtransform>`` actions name that it cannot find."""
        return [n for n in self.subtransforms() if self.find_subtransform(n) is None]

    @property
    def functions(self) -> Mapping[str, Callable[..., Any]]:
        """Python callables for the helper-class methods the expressions call."""
        return self._functions

    @functions.setter
    def functions(self, value: Mapping[str, Callable[..., Any]]) -> None:
        self._functions = value

    @property
    def tables(self) -> Any:
        """The lookup tables ``..Lookup()`` / ``Exists()`` read (``LookupTables``)."""
        return self._tables

    @tables.setter
    def tables(self, value: Any) -> None:
        self._tables = value

    @property
    def class_calls(self) -> dict[str, list[str]]:
        """Helper-class methods called (``Demo.Util.Helper.Now``, ``..Method``) -> where:
        ``file:line: expression`` per call site."""
        return {key: list(sites) for key, sites in self._calls.items()}

    def kind(self, owner: str) -> Kind:
        """The kind of the ``source`` or ``target`` class (``hie.rules.dtl_target``)."""
        name = self.source_class if owner == "source" else self.target_class
        return class_kind(self.document_classes.get(name, name), self.message_classes)

    @property
    def hl7_target(self) -> bool:
        """True when the target is an HL7 message."""
        return self.kind("target") == "hl7"

    @property
    def target_model(self) -> type[BaseModel] | None:
        """The pydantic model of an object target, when its class is defined."""
        if self.kind("target") != "object":
            return None
        from hie.iris.message_classes import model_for  # hie.iris imports this module

        return model_for(self.target_class)

    # -- compiling ------------------------------------------------------------------------

    def compile(self, *, allow_partial: bool = False) -> Transform:
        """Compile every expression and path now; refuse what cannot run unless
        ``allow_partial`` (then it is skipped and listed in ``skipped``)."""
        if self.message_classes:
            from hie.iris.message_classes import register_classes

            self.notes.extend(register_classes(self.message_classes))
        # Virtual paths on these owners are read by hie.rules.doc_paths, not as HL7 paths.
        self._documents = frozenset(o for o in ("source", "target") if self.kind(o) != "hl7")
        self._walk(self.actions, allow_partial)
        return self

    def _where(self, a: DtlAction) -> str:
        return f"{self.source_file}:{a.line}" if a.line else self.source_file

    def _walk(self, actions: list[DtlAction], allow_partial: bool) -> None:
        for a in actions:
            where = self._where(a)
            try:
                self._compile_action(a, where, allow_partial)
            except ConfigError as exc:
                if not allow_partial or a.type not in ("code", "sql", "subtransform"):
                    raise
                self.skipped.append(f"<{a.type}> at {where}: {exc}")
                a._code = []
                continue
            for inner in (a.true, a.false, a.actions):
                self._walk(inner, allow_partial)

    def _compile_action(self, a: DtlAction, where: str, allow_partial: bool) -> None:
        if a.type == "sql":
            raise ConfigError(f"{where}: {_SQL}")
        if a.type == "code":
            from hie.iris.objectscript_code import translate_code  # hie.iris imports us

            data = translate_code(
                a.text, source=self.source_file, line=a.line or 1, offset=a.offset
            )
            a._code = [DtlAction.model_validate(d) for d in data]
            self._walk(a._code, allow_partial=False)
        elif a.type == "assign":
            self._check_assign(a, where)
        elif a.type in ("if", "case"):
            self.value(a.condition or "0", where)
        elif a.type in ("trace", "do"):
            self.value(a.value or '""', where)
        elif a.type == "switch":
            wrong = [c.type for c in a.actions if c.type not in ("case", "default")]
            if wrong:
                raise ConfigError(
                    f"{where}: <switch> holds <{wrong[0]}>; only <case> and <default>"
                )
        elif a.type == "foreach":
            self._check_foreach(a, where)
        elif a.type == "subtransform":
            self._check_subtransform(a, where)

    def value(self, text: str, where: str | None = None) -> Value:
        """The compiled expression ``text`` (compiled now if it was not at load); ``where``
        (file:line) when compiling, so the helper-class calls it makes are listed with it."""
        found = self._values.get(text)
        if found is None:
            found = self._values[text] = compile_value(
                text, where=where or "", documents=self._documents
            )
        for call in class_calls(found) if where is not None else ():
            sites = self._calls.setdefault(call, [])
            if f"{where}: {text}" not in sites:
                sites.append(f"{where}: {text}")
        return found

    def object_path(self, text: str) -> ObjectPath | None:
        """The object path ``text`` compiled at load (an assign or foreach property), if any."""
        return self._paths.get(text)

    def document_path(self, text: str) -> DocPath | None:
        """The virtual path ``text`` compiled at load (an assign, foreach or targetObj)."""
        return self._docs.get(text)

    def _object_path(
        self, text: str, where: str, key: str | None = None, *, variables: bool = False
    ) -> ObjectPath:
        path = parse_object_path(text, where=where, documents=self._documents, variables=variables)
        if path is None:
            raise ConfigError(f"{where}: {text!r} is not a property path")
        self._paths[key or text] = path
        return path

    def _document(self, text: str, where: str) -> DocPath | None:
        """``owner.{...}`` compiled and kept for the run; None when ``text`` is not one."""
        try:
            doc = parse_doc_path(text)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if doc is None:
            return None
        kind = self.kind(doc.owner) if doc.owner in ("source", "target") else None
        try:  # the path must be one of the owner's kind, where the kind is known at load
            if kind == "hl7":
                parse_virtual_path(doc.inner)
            elif kind == "segment":
                doc_type = self.source_doc_type if doc.owner == "source" else self.target_doc_type
                segment_path(segment_of(doc_type) or "ZZZ", doc.inner)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        self._docs[text] = doc
        return doc

    def _check_assign(self, a: DtlAction, where: str) -> None:
        if a.action not in ("clear", "remove") or a.value:
            self.value(a.value or '""', where)
        if a.key:
            self.value(a.key, where)
        prop = a.property
        if prop.startswith("$"):
            self.skipped.append(
                f"<assign> at {where}: {prop} is an IRIS process setting HIE does not have "
                "(no storage or other process limits); ignored"
            )
            return
        doc = self._document(prop, where) if prop.endswith("}") else None
        if doc is not None and not doc.props and doc.owner not in ("source", "aux"):
            self._check_target_document(doc, where)
        elif prop.startswith("target.") and doc is None and not self.hl7_target:
            check_object_path(self._object_path(prop, where), self.target_model, where)
        elif _VARIABLE_PROPERTY.match(prop) and doc is None:  # tObj.Name: an object variable
            check_object_path(self._object_path(prop, where, variables=True), None, where)
        elif doc is not None or not (prop == "target" or _VARIABLE.match(prop)):
            raise ConfigError(
                f"{where}: {prop!r} is not something DTL can assign here: a variable, "
                + ("target.{...}" if self.hl7_target else "target.Property")
            )

    def _check_target_document(self, doc: DocPath, where: str) -> None:
        if doc.owner == "target" and self.kind("target") == "object":
            raise ConfigError(
                f"{where}: {doc.text} is a virtual property path, but the target class "
                f"{self.target_class} is an object class defined beside the transform; assign "
                "its properties (target.Name)"
            )

    def _check_foreach(self, a: DtlAction, where: str) -> None:
        if a.property.endswith("}") and self._document(a.property, where) is not None:
            return
        collection = _COLLECTION.match(a.property)
        text = a.property
        if collection and collection.group(1).rpartition(".")[2].lower() not in ("count", "getat"):
            text = collection.group(1)  # prop() in a foreach: the collection prop
        if text.startswith(tuple(f"{o}." for o in _OWNERS)):
            self._object_path(text, where, key=a.property)
        elif not _VARIABLE.match(a.property):
            raise ConfigError(f"{where}: foreach over {a.property!r}: name a repeating path")

    def _check_subtransform(self, a: DtlAction, where: str) -> None:
        if a.aux:
            self.value(a.aux, where)
        if a.source_obj not in _OWNERS:
            self.value(a.source_obj, where)
        target = a.target_obj
        doc = self._document(target, where) if target.endswith("}") else None
        if doc is not None and doc.owner == "target" and not doc.props:
            self._check_target_document(doc, where)
        elif target.startswith("target.") and doc is None:
            self._object_path(target, where)
        elif doc is not None or not (target == "target" or _VARIABLE.match(target)):
            raise ConfigError(
                f"{where}: targetObj {target!r}: use target, a property, a virtual path or a "
                "variable"
            )

    # -- running (the actions themselves: hie.rules.dtl_run) --------------------------------

    def apply(self, source: Any, *, aux: Any = None) -> Any:
        """Transform ``source`` (an ``HL7Message``, a segment's text, a model, a dict, XML or
        JSON text of a document) into a new target."""
        return self.apply_to(source, None, aux=aux)

    def apply_to(self, source: Any, existing: Any, *, aux: Any = None) -> Any:
        """As ``apply``; with ``create="existing"`` the target starts from ``existing`` (what
        a parent's ``targetObj`` holds when it runs this as a subtransform)."""
        source = start_source(source, self.kind("source"), self.source_doc_type)
        kind = self.kind("target")
        target = new_target(
            kind,
            create=self.create,
            doc_type=self.target_doc_type,
            source=source,
            existing=existing,
        )
        ctx = Context(
            source=source,
            target=target,
            aux=aux,
            tables=self.tables,
            functions=self.functions,
            # aux is also a plain variable in the method IRIS generates (aux _ "x")
            variables={"aux": "" if aux is None else aux},
        )
        run_transform(self, ctx)
        return finish(
            ctx.target, kind, name=self.name, class_name=self.target_class, model=self.target_model
        )

    def to_yaml(self) -> str:
        """HIE's YAML form; ``load_transform`` reads it back to the same behaviour."""
        data = {"kind": "transform", **self.model_dump(mode="json", exclude_defaults=True)}
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _every(actions: list[DtlAction]) -> Iterator[DtlAction]:
    """Every action, nested ones and those ``<code>`` translates to included."""
    for a in actions:
        yield a
        for inner in (a.true, a.false, a.actions, a.translated()):
            yield from _every(inner)


def transform_from_data(
    data: Any,
    *,
    source: str,
    allow_partial: bool = False,
    registry: TransformRegistry | None = None,
) -> Transform:
    """Validate transform data (HIE YAML/JSON, or read from IRIS DTL) and compile it."""
    transform = validate_document(
        Transform,
        data,
        source=source,
        not_mapping="a transform must be a mapping",
        invalid="transform is not valid",
    )
    transform.source_file = source
    transform.registry = registry
    return transform.compile(allow_partial=allow_partial)
