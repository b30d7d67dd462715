"""Reading virtual properties from an ``HL7Message``, and properties from message objects.

Object properties read alike in every expression form (``Document.Info.TargetSystem``,
``source."account_id"``, ``tJSON.entry``): from pydantic models (an IRIS property may be a
field's alias), dicts (dynamic objects), lists (from 1) and other Python objects' attributes.
Whatever is absent reads as ``""``, as an unset property does in ObjectScript.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from hie.hl7 import HL7Message
from hie.rules.paths import (
    ALL,
    VirtualPath,
    group_scopes,
    hl7_version,
    numeric_paths,
    segment_positions,
)

__all__ = ["property_of", "read_path", "read_properties", "segment_lines"]


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
        return property_of(obj, path.text)
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


#: Values that have no properties: reading one of theirs gives "".
_PLAIN = (str, bytes, int, float, tuple)


def property_of(obj: Any, key: str | int) -> Any:
    """``obj``'s property ``key`` (of a message: ``DocType``, ``Name``...) or list element (from
    1); ``""`` when there is none."""
    if isinstance(obj, HL7Message):
        getter = _MESSAGE_PROPERTIES.get(str(key).lower())
        return str(getter(obj)) if getter else ""  # type: ignore[no-untyped-call]
    if isinstance(obj, BaseModel | dict | list):
        # The DTL object-path reader, so source.A.B here and source.A.(1).B there agree.
        from hie.rules.object_paths import child  # object_paths imports the expression parser

        return child(obj, key)
    if obj is None or isinstance(obj, _PLAIN) or not isinstance(key, str):
        return ""
    found = getattr(obj, key, "")
    return "" if found is None or callable(found) else found


def read_properties(obj: Any, keys: list[str | int]) -> Any:
    """The value at the end of a chain of properties (``Info.TargetSystem``), or ``""``."""
    for key in keys:
        obj = property_of(obj, key)
    return obj
