"""Transforms: the DTL action model (IRIS ``Ens.DataTransformDTL``) and how it runs, in HIE.

A transform is data: HIE's YAML form (``transform_from_data``) or an IRIS DTL class read by
``hie.iris.dtl``; both give the same ``Transform``, which routing rules send through by name.

``Transform.apply(source)`` returns a new target: for an HL7 target class, an ``HL7Message``
(``create="new"`` starts from the source's MSH alone, since every HL7 message needs one;
``copy`` and ``existing`` start from a copy of the source); for any other class, a ``dict`` of
the properties assigned (``target.LastName``). Values are set as ER7 text, unescaped, like
IRIS ``SetValueAt``: copying ``source.{PID:5}`` copies its components.

``<code>`` and ``<sql>`` hold ObjectScript that HIE cannot run: loading refuses them unless
``allow_partial=True``, which skips them and lists them in ``Transform.skipped``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from hie.errors import ConfigError
from hie.hl7 import HL7Message
from hie.rules.access import segment_lines
from hie.rules.document import validate_document
from hie.rules.expressions import Context, Expression, compile_expression
from hie.rules.functions import to_str
from hie.rules.paths import ALL, VirtualPath, hl7_version, numeric_paths, parse_virtual_path

__all__ = ["DtlAction", "Transform", "TransformRegistry", "transform_from_data"]

_TARGET_PATH = re.compile(r"^target\.\{(.*)\}$", re.DOTALL)
_SOURCE_PATH = re.compile(r"^source\.\{(.*)\}$", re.DOTALL)


class DtlAction(BaseModel):
    """One DTL action; which fields matter depends on ``type``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["assign", "if", "foreach", "subtransform", "group", "comment", "code", "sql"]
    property: str = ""
    value: str = ""
    action: str = "set"
    key: str = ""
    condition: str = ""
    true: list[DtlAction] = []
    false: list[DtlAction] = []
    actions: list[DtlAction] = []
    class_name: str = ""
    source_obj: str = "source"
    target_obj: str = "target"
    text: str = ""
    line: int | None = Field(default=None, exclude=True)


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
    skipped: list[str] = Field(default=[], exclude=True)
    source_file: str = Field(default="", exclude=True)
    _exprs: dict[str, Expression] = PrivateAttr(default_factory=dict)
    _registry: TransformRegistry | None = PrivateAttr(default=None)

    @property
    def registry(self) -> TransformRegistry | None:
        """Where ``subtransform`` finds other transforms by class name."""
        return self._registry

    @registry.setter
    def registry(self, value: TransformRegistry | None) -> None:
        self._registry = value

    def compile(self, *, allow_partial: bool = False) -> Transform:
        """Compile every expression and path now; refuse code/sql unless ``allow_partial``."""
        self._walk(self.actions, allow_partial)
        return self

    def _walk(self, actions: list[DtlAction], allow_partial: bool) -> None:
        for a in actions:
            where = f"{self.source_file}:{a.line}" if a.line else self.source_file
            if a.type in ("code", "sql"):
                if not allow_partial:
                    raise ConfigError(
                        f"{where}: <{a.type}> holds ObjectScript HIE cannot run; rewrite it as "
                        "assign/if actions, or load with allow_partial=True to skip it"
                    )
                self.skipped.append(f"<{a.type}> at {where}")
            if a.type == "assign" and a.action not in ("clear", "remove"):
                self._expr(a.value or '""', where)
            if a.type == "if":
                self._expr(a.condition, where)
            if a.type == "assign" or a.type == "foreach":
                self._check_property(a, where)
            for inner in (a.true, a.false, a.actions):
                self._walk(inner, allow_partial)

    def _check_property(self, a: DtlAction, where: str) -> None:
        match = _TARGET_PATH.match(a.property) or _SOURCE_PATH.match(a.property)
        if match:
            try:
                parse_virtual_path(match.group(1))
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        elif not re.fullmatch(r"(target|source)\.[A-Za-z%][\w.]*|[A-Za-z%]\w*", a.property):
            raise ConfigError(f"{where}: {a.property!r} is not a property DTL can assign")

    def _expr(self, text: str, where: str = "") -> Expression:
        found = self._exprs.get(text)
        if found is None:
            found = self._exprs[text] = compile_expression(text, where=where)
        return found

    @property
    def hl7_target(self) -> bool:
        """True when the target is an HL7 message."""
        return "hl7" in self.target_class.lower() or self.target_class == ""

    def apply(self, source: HL7Message, *, aux: Any = None) -> Any:
        """Transform ``source`` into a new target (``HL7Message`` or ``dict``)."""
        target: Any
        if not self.hl7_target:
            target = {}
        elif self.create == "new":
            target = HL7Message(source.to_er7().split("\r")[0])
            version = self.target_doc_type.split(":")[0]
            if re.fullmatch(r"\d+(\.\d+)*", version):
                target.set("MSH-12", version)
        else:
            target = source.copy()
        ctx = Context(source=source, target=target, aux=aux)
        self._run(self.actions, ctx)
        return ctx.target

    def _run(self, actions: list[DtlAction], ctx: Context) -> None:
        for a in actions:
            if a.type == "assign":
                self._assign(a, ctx)
            elif a.type == "if":
                branch = a.true if self._expr(a.condition).is_true(ctx) else a.false
                self._run(branch, ctx)
            elif a.type == "foreach":
                self._foreach(a, ctx)
            elif a.type == "group":
                self._run(a.actions, ctx)
            elif a.type == "subtransform":
                self._subtransform(a, ctx)

    def _foreach(self, a: DtlAction, ctx: Context) -> None:
        match = _SOURCE_PATH.match(a.property) or _TARGET_PATH.match(a.property)
        if match is None:
            return
        owner = ctx.source if a.property.startswith("source") else ctx.target
        count = _count(owner, parse_virtual_path(match.group(1)), ctx.variables)
        for i in range(1, count + 1):
            ctx.variables[a.key or "k1"] = i
            self._run(a.actions, ctx)

    def _subtransform(self, a: DtlAction, ctx: Context) -> None:
        sub = self.registry.get(a.class_name) if self.registry else None
        if sub is None:
            raise ConfigError(f"{self.name}: subtransform {a.class_name!r} is not loaded")
        src = ctx.source if a.source_obj.startswith("source") else ctx.target
        result = sub.apply(src, aux=ctx.aux)
        if a.target_obj == "target":
            ctx.target = result
        else:
            ctx.variables[a.target_obj] = result

    def _assign(self, a: DtlAction, ctx: Context) -> None:
        value = "" if a.action in ("clear", "remove") else self._expr(a.value or '""')(ctx)
        match = _TARGET_PATH.match(a.property)
        if match is None:
            prop = a.property.split(".", 1)[-1] if "." in a.property else a.property
            if a.property.startswith("target.") and isinstance(ctx.target, dict):
                old = ctx.target.get(prop, "") if a.action == "append" else ""
                ctx.target[prop] = to_str(old) + to_str(value)
            else:
                ctx.variables[prop] = value  # a DTL local variable (tVar)
            return
        if not isinstance(ctx.target, HL7Message):
            raise ConfigError(f"{self.name}: {a.property} needs an HL7 target")
        path = parse_virtual_path(match.group(1))
        if path.field is None:
            ctx.target = _put_segments(ctx.target, path, to_str(value), a.action, ctx.variables)
            return
        for numeric in _target_paths(ctx.target, path, ctx.variables):
            if a.action == "append":
                ctx.target.set_raw(numeric, ctx.target.get_raw(numeric) + to_str(value))
            else:
                ctx.target.set_raw(numeric, to_str(value))

    def to_yaml(self) -> str:
        """HIE's YAML form; ``load_transform`` reads it back to the same behaviour."""
        data = {"kind": "transform", **self.model_dump(mode="json", exclude_defaults=True)}
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _count(owner: Any, path: VirtualPath, variables: dict[str, Any]) -> int:
    if not isinstance(owner, HL7Message):
        return 0
    names = owner.segment_names()
    if path.field is None:
        return len(segment_lines(owner, path, variables))
    paths = numeric_paths(names, path, hl7_version(owner.version), variables)
    if path.field is not None and path.field.index == ALL:
        return max((len(owner.get_all(p)) for p in paths), default=0)
    return len(paths)


def _target_paths(msg: HL7Message, path: VirtualPath, variables: dict[str, Any]) -> list[str]:
    found = numeric_paths(msg.segment_names(), path, hl7_version(msg.version), variables)
    if found:
        return found
    # The segment does not exist yet: create it (groups cannot be placed without a schema).
    assert path.segment is not None
    index = path.segment.index
    index = variables.get(index, 1) if isinstance(index, str) and index != ALL else index
    single = VirtualPath(
        path.text,
        (),
        path.segment.__class__(path.segment.name, 1),
        path.field,
        path.component,
        path.subcomponent,
    )
    numeric = numeric_paths([path.segment.name], single, hl7_version(msg.version), variables)[0]
    return [numeric.replace(f"{path.segment.name}(1)", f"{path.segment.name}({index or 1})", 1)]


def _put_segments(
    msg: HL7Message, path: VirtualPath, value: str, action: str, variables: dict[str, Any]
) -> HL7Message:
    """Replace (or remove) whole segments or a group; returns the rebuilt message."""
    lines = [line for line in msg.to_er7().split("\r") if line]
    current = segment_lines(msg, path, variables)
    new = [line for line in value.split("\r") if line] if action not in ("clear", "remove") else []
    if not new and action == "set":
        return msg  # IRIS leaves the target alone when the source segment is missing
    if current:
        start = lines.index(current[0])
        lines[start : start + len(current)] = new
    else:
        lines.extend(new)
    if not lines or not lines[0].startswith("MSH"):
        raise ConfigError(f"{path.text}: the target message would have no MSH segment")
    return HL7Message("\r".join(lines) + "\r")


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
