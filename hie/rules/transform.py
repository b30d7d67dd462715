"""Transforms: the DTL action model (IRIS ``Ens.DataTransformDTL``) and how it runs, in HIE.

A transform is data: HIE's YAML form (``transform_from_data``) or an IRIS DTL class read by
``hie.iris.dtl``; both give the same ``Transform``, which routing rules send through by name.

``Transform.apply(source)`` returns a new target. For an HL7 target class, an ``HL7Message``
(``create="new"`` starts from the source's MSH alone, since every HL7 message needs one;
``copy`` and ``existing`` start from a copy of the source). For another class, an instance of
its model when ``message_classes`` defines it (``hie.iris.message_classes``), else a ``dict``
of the properties assigned.

Actions: ``assign`` (``set``, ``clear``, ``remove``, ``append``, ``insert``: see
``hie.rules.hl7_target`` and ``hie.rules.object_target``), ``if``, ``switch`` (the first
``case`` whose condition holds, else ``default``), ``foreach`` (over segments, repetitions,
lists and arrays; ``break`` leaves it), ``group``, ``subtransform`` (with ``aux``), ``trace``
(logged at its ``level``), ``do`` (HIE's own: an expression run for its effect), ``comment``,
and ``code``, whose ObjectScript runs when it is within what ``hie.iris.objectscript_code``
translates. ``sql``, and code outside that subset, is refused at load unless
``allow_partial=True``, which skips it and lists it in ``Transform.skipped``.

Whoever loads a transform gives it what its expressions call: ``functions`` (helper-class
methods, see ``hie.iris.helper_classes``) and ``tables`` (lookup tables).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from hie.errors import ConfigError, MessageError
from hie.hl7 import HL7Message
from hie.rules.document import validate_document
from hie.rules.dtl_run import run_transform
from hie.rules.expressions import Context
from hie.rules.object_paths import (
    ObjectPath,
    Value,
    class_calls,
    compile_value,
    parse_object_path,
    plain,
)
from hie.rules.object_target import check_object_path
from hie.rules.paths import parse_virtual_path

__all__ = ["DtlAction", "Transform", "TransformRegistry", "transform_from_data"]

_TARGET_PATH = re.compile(r"^target\.\{(.*)\}$", re.DOTALL)
_SOURCE_PATH = re.compile(r"^source\.\{(.*)\}$", re.DOTALL)
_VARIABLE = re.compile(r"^[A-Za-z%][A-Za-z0-9]*$")
_OWNERS = ("source", "target", "aux")
_SQL = (
    "<sql> queries the IRIS database, which HIE does not have; look values up with a lookup "
    "table (..Lookup(table, key)) or a helper class method (##class(Pkg.Helper).Method(...)) "
    "mapped to Python in the functions: section of hie-mapping.yaml"
)
_SEGMENT_SUBTRANSFORM = (
    "a subtransform of HL7 segments (sourceObj/targetObj with {...}) is not supported; copy "
    "the sub-transform's assigns into this transform, with full paths (target.{PID:5})"
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
        """Register ``transform`` under its class name."""
        self[transform.name] = transform


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
    skipped: list[str] = Field(default=[], exclude=True)
    #: What loading noticed but did not refuse (a message class not found, a type kept as text).
    notes: list[str] = Field(default=[], exclude=True)
    source_file: str = Field(default="", exclude=True)
    _values: dict[str, Value] = PrivateAttr(default_factory=dict)
    _paths: dict[str, ObjectPath] = PrivateAttr(default_factory=dict)
    _calls: dict[str, list[str]] = PrivateAttr(default_factory=dict)
    _registry: TransformRegistry | None = PrivateAttr(default=None)
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

    @property
    def hl7_target(self) -> bool:
        """True when the target is an HL7 message."""
        return "hl7" in self.target_class.lower() or self.target_class == ""

    @property
    def target_model(self) -> type[BaseModel] | None:
        """The pydantic model of an object target, when its class is defined."""
        if self.hl7_target or self.target_class not in self.message_classes:
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
            if a.action not in ("clear", "remove") or a.value:
                self.value(a.value or '""', where)
            if a.key:
                self.value(a.key, where)
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
            found = self._values[text] = compile_value(text, where=where or "")
        for call in class_calls(found) if where is not None else ():
            sites = self._calls.setdefault(call, [])
            if f"{where}: {text}" not in sites:
                sites.append(f"{where}: {text}")
        return found

    def object_path(self, text: str) -> ObjectPath | None:
        """The object path ``text`` compiled at load (an assign or foreach property), if any."""
        return self._paths.get(text)

    def _object_path(self, text: str, where: str) -> ObjectPath:
        path = parse_object_path(text, where=where)
        if path is None:
            raise ConfigError(f"{where}: {text!r} is not a property path")
        self._paths[text] = path
        return path

    def _check_assign(self, a: DtlAction, where: str) -> None:
        prop = a.property
        match = _TARGET_PATH.match(prop)
        if match:
            if not self.hl7_target:
                raise ConfigError(
                    f"{where}: {prop} is an HL7 path, but the target class {self.target_class} "
                    "is not HL7; assign its properties (target.Name)"
                )
            try:
                parse_virtual_path(match.group(1))
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        elif prop.startswith("target.") and not self.hl7_target:
            check_object_path(self._object_path(prop, where), self.target_model, where)
        elif not (prop == "target" or _VARIABLE.match(prop)):
            raise ConfigError(
                f"{where}: {prop!r} is not something DTL can assign here: a variable, "
                + ("target.{...}" if self.hl7_target else "target.Property")
            )

    def _check_foreach(self, a: DtlAction, where: str) -> None:
        match = _SOURCE_PATH.match(a.property) or _TARGET_PATH.match(a.property)
        if match:
            try:
                parse_virtual_path(match.group(1))
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        elif a.property.startswith(tuple(f"{o}." for o in _OWNERS)):
            self._object_path(a.property, where)
        else:
            raise ConfigError(f"{where}: foreach over {a.property!r}: name a repeating path")

    def _check_subtransform(self, a: DtlAction, where: str) -> None:
        if "{" in a.source_obj or "{" in a.target_obj:
            raise ConfigError(f"{where}: {_SEGMENT_SUBTRANSFORM}")
        if a.aux:
            self.value(a.aux, where)
        if a.source_obj not in _OWNERS:
            self.value(a.source_obj, where)
        if a.target_obj.startswith("target."):
            self._object_path(a.target_obj, where)
        elif not (a.target_obj == "target" or _VARIABLE.match(a.target_obj)):
            raise ConfigError(
                f"{where}: targetObj {a.target_obj!r}: use target, a property or a variable"
            )

    # -- running (the actions themselves: hie.rules.dtl_run) --------------------------------

    def apply(self, source: Any, *, aux: Any = None) -> Any:
        """Transform ``source`` (an ``HL7Message``, a model or a dict) into a new target."""
        ctx = Context(
            source=source,
            target=self._new_target(source),
            aux=aux,
            tables=self.tables,
            functions=self.functions,
            # aux is also a plain variable in the method IRIS generates (aux _ "x")
            variables={"aux": "" if aux is None else aux},
        )
        run_transform(self, ctx)
        return self._finish(ctx.target)

    def _new_target(self, source: Any) -> Any:
        if not self.hl7_target:
            copying = self.create != "new" and isinstance(source, BaseModel | dict)
            return plain(source) if copying else {}
        if not isinstance(source, HL7Message):
            return HL7Message(_blank_msh(self.target_doc_type))
        if self.create != "new":
            return source.copy()
        target = HL7Message(source.to_er7().split("\r")[0])
        version = self.target_doc_type.split(":")[0]
        if re.fullmatch(r"\d+(\.\d+)*", version):
            target.set("MSH-12", version)
        return target

    def _finish(self, target: Any) -> Any:
        model = self.target_model if isinstance(target, dict) else None
        if model is None:
            return target
        try:
            return model.model_validate(target)
        except ValidationError as exc:
            raise MessageError(
                f"transform {self.name}: the target is not a valid {self.target_class}: {exc}"
            ) from exc

    def to_yaml(self) -> str:
        """HIE's YAML form; ``load_transform`` reads it back to the same behaviour."""
        data = {"kind": "transform", **self.model_dump(mode="json", exclude_defaults=True)}
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _blank_msh(doc_type: str) -> str:
    """An MSH for an HL7 target built from an object: version and type from the doc type."""
    version, _, name = doc_type.rpartition(":")
    code, _, event = name.partition("_")
    kind = "^".join(p for p in (code, event, name if event else "") if p) or "ACK"
    version = version if re.fullmatch(r"[\d.]+", version) else ""
    return "MSH|^~\\&|||||||" + kind + "|||" + version


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
