"""Reading virtual properties from an ``HL7Message`` (or a DTL target object)."""

from __future__ import annotations

from typing import Any

from hie.hl7 import HL7Message
from hie.rules.paths import (
    ALL,
    VirtualPath,
    group_scopes,
    hl7_version,
    numeric_paths,
    segment_positions,
)

__all__ = ["read_path", "read_property", "segment_lines"]


def segment_lines(
    msg: HL7Message, path: VirtualPath, variables: dict[str, Any] | None = None
) -> list[str]:
    """The raw ER7 lines of the segment(s) or group(s) ``path`` names (no field part)."""
    lines = msg.to_er7().split("\r")
    lines = [line for line in lines if line]
    names = [line[:3] for line in lines]
    if path.segment is None:
        scopes = group_scopes(names, path.groups, variables)
        return [line for start, end in scopes for line in lines[start:end]]
    return [lines[i] for i in segment_positions(names, path, variables)]


def read_path(obj: Any, path: VirtualPath, variables: dict[str, Any] | None = None) -> Any:
    """The value at ``path``: a string, or a list of strings when the path has ``()``/``(*)``.

    A whole segment or group reads as its ER7 text. A missing value reads as ``""``.
    """
    if obj is None:
        return [] if path.has_all else ""
    if not isinstance(obj, HL7Message):
        return read_property(obj, path.text, None)
    if path.field is None:
        return "\r".join(segment_lines(obj, path, variables))
    names = obj.segment_names()
    paths = numeric_paths(names, path, hl7_version(obj.version), variables)
    if not path.has_all:
        return obj.get(paths[0]) if paths else ""
    out: list[str] = []
    for numeric in paths:
        if path.field.index == ALL:
            out.extend(obj.get_all(numeric))
        else:
            out.append(obj.get(numeric))
    return out


_MESSAGE_PROPERTIES = {
    "doctype": lambda m: m.message_structure or f"{m.message_code}_{m.trigger_event}",
    "name": lambda m: f"{m.message_code}_{m.trigger_event}".strip("_"),
    "messagetype": lambda m: m.message_code,
    "typeversion": lambda m: m.version,
    "doctypecategory": lambda m: m.version,
    "parentid": lambda m: "",  # HIE splits batches before routing: no message has a parent
    "source": lambda m: "",
}


def read_property(obj: Any, prop: str, ctx: Any) -> Any:
    """A named property: of a message (``DocType``, ``Name``, ``ParentId``) or a target dict."""
    if isinstance(obj, HL7Message):
        getter = _MESSAGE_PROPERTIES.get(prop.lower())
        return str(getter(obj)) if getter else ""  # type: ignore[no-untyped-call]
    if isinstance(obj, dict):
        return obj.get(prop, "")
    return getattr(obj, prop, "") if obj is not None else ""
