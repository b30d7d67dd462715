"""IRIS DTL classes (``Ens.DataTransformDTL``, ``XData DTL``) -> ``Transform``.

Reads a ``.cls`` file, an IRIS export or a bare ``<transform>`` (``hie.iris.classfile``) into
the same data as HIE's YAML form, so both compile through ``transform_from_data``. Errors name
the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lxml import etree

from hie.errors import ConfigError
from hie.iris.classfile import Definition, read_definition, tag_name
from hie.rules.transform import Transform, TransformRegistry, transform_from_data

__all__ = ["load_dtl", "parse_dtl"]

_ACTIONS = {"assign", "if", "foreach", "subtransform", "group", "comment", "code", "sql"}


def load_dtl(
    path: str | Path, *, allow_partial: bool = False, registry: TransformRegistry | None = None
) -> Transform:
    """Load an IRIS DTL class (``.cls``) or exported DTL XML; raises ``ConfigError``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read transform {path}: {exc}") from exc
    return parse_dtl(data, source=str(path), allow_partial=allow_partial, registry=registry)


def parse_dtl(
    text: str | bytes,
    *,
    source: str,
    allow_partial: bool = False,
    registry: TransformRegistry | None = None,
) -> Transform:
    """Parse DTL class text or ``<transform>`` XML; ``source`` names the file in errors."""
    found = read_definition(text, xdata="DTL", root="transform", source=source)
    root = found.root
    data = {
        "name": found.class_name,
        "source_class": root.get("sourceClass", ""),
        "target_class": root.get("targetClass", ""),
        "source_doc_type": root.get("sourceDocType", ""),
        "target_doc_type": root.get("targetDocType", ""),
        "create": root.get("create", "new"),
        "actions": _actions(root, found),
    }
    return transform_from_data(data, source=source, allow_partial=allow_partial, registry=registry)


def _actions(parent: etree._Element, found: Definition) -> list[dict[str, Any]]:
    out = []
    for el in parent:
        name = tag_name(el)
        if not name:
            continue
        if name not in _ACTIONS:
            raise found.error(el, f"<{name}> is not a DTL action")
        out.append(_action(el, name, found))
    return out


def _action(el: etree._Element, name: str, found: Definition) -> dict[str, Any]:
    fields: dict[str, Any] = {"type": name, "line": found.line(el)}
    if name == "assign":
        fields.update(property=el.get("property", ""), value=el.get("value", ""))
        fields["action"] = el.get("action", "set")
    elif name == "if":
        fields["condition"] = el.get("condition", "0")
        for branch in el:
            if tag_name(branch) in ("true", "false"):
                fields[tag_name(branch)] = _actions(branch, found)
    elif name == "foreach":
        fields.update(property=el.get("property", ""), key=el.get("key", "k1"))
        fields["actions"] = _actions(el, found)
    elif name == "group":
        fields["actions"] = _actions(el, found)
    elif name == "subtransform":
        fields.update(class_name=el.get("class", ""), source_obj=el.get("sourceObj", "source"))
        fields["target_obj"] = el.get("targetObj", "target")
    elif name in ("comment", "code", "sql"):
        fields["text"] = "".join(el.itertext()).strip()
    return fields
