"""Assigning into a transform's HL7 target: fields, repetitions, whole segments and groups.

Values are ER7 text, written unescaped like IRIS ``SetValueAt``: copying ``source.{PID:5}``
copies its components. The assign actions (``<assign action=...>``) on a virtual path:

- a field: ``set``; ``clear`` empties it; ``remove`` takes out repetition ``key`` (or the one
  the path names) and otherwise empties it; ``append`` adds a repetition (a component or
  subcomponent is extended as text instead); ``insert`` puts a repetition at ``key``;
- ``MSH:1`` / ``MSH:2`` (the delimiters): left as they are; every field of the message is
  written with its own delimiters, and DTLs set them mostly to the standard ``|`` and ``^~\\&``;
- segments or a group: ``set`` replaces them (a missing source segment leaves the target
  alone, as in IRIS); ``clear`` / ``remove`` delete them; ``append`` adds the value after the
  last segment of that name; ``insert`` adds it before the ``key``-th one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hie.errors import ConfigError
from hie.hl7 import HL7Message
from hie.hl7.path import parse_path
from hie.rules.access import segment_lines
from hie.rules.paths import (
    ALL,
    Step,
    VirtualPath,
    group_scopes,
    hl7_version,
    numeric_paths,
    segment_positions,
)

__all__ = ["assign_hl7", "count"]

_HEADERS = frozenset({"MSH", "FHS", "BHS"})


def count(owner: Any, path: VirtualPath, variables: dict[str, Any]) -> int:
    """How many segments, groups or repetitions ``path`` selects (what a foreach runs over)."""
    if not isinstance(owner, HL7Message):
        return 0
    if path.field is None:
        if path.segment is None:  # a group: one per scope (segment_lines would count lines)
            return len(group_scopes(owner.segment_names(), path.groups, variables))
        return len(segment_lines(owner, path, variables))
    paths = numeric_paths(owner.segment_names(), path, hl7_version(owner.version), variables)
    if path.field.index == ALL:
        return max((len(owner.get_all(p)) for p in paths), default=0)
    return len(paths)


def assign_hl7(
    msg: HL7Message,
    path: VirtualPath,
    value: str,
    *,
    action: str = "set",
    key: int | None = None,
    variables: dict[str, Any],
) -> HL7Message:
    """Assign ``value`` at ``path`` in ``msg`` (see the module docstring); the message that
    results (whole-segment changes rebuild it)."""
    if path.field is None:
        return _assign_segments(msg, path, value, action, key, variables)
    for numeric in _target_paths(msg, path, variables):
        _assign_field(msg, numeric, value, action, key)
    return msg


def _assign_field(msg: HL7Message, numeric: str, value: str, action: str, key: int | None) -> None:
    p = parse_path(numeric)
    if p.field <= 2 and p.segment in _HEADERS:
        return  # the delimiters (module docstring)
    whole = f"{p.segment}({p.segment_index or 1})-{p.field}(*)"
    rep = msg.delimiters.repetition
    if action == "set":
        msg.set_raw(numeric, value)
    elif action == "append" and p.component is not None:
        msg.set_raw(numeric, msg.get_raw(numeric) + value)
    elif action in ("append", "insert", "remove"):
        reps = msg.get_raw(whole).split(rep) if msg.get_raw(whole) else []
        at = key if key is not None else (p.repetition if p.repetition not in (None, -1) else None)
        if action == "append":
            reps.append(value)
        elif action == "insert":
            reps.insert(len(reps) if at is None else max(at - 1, 0), value)
        elif at is not None and 0 < at <= len(reps):
            reps.pop(at - 1)
        elif at is None:
            reps = []
        msg.set_raw(whole, rep.join(reps))
    elif action == "clear":
        msg.set_raw(numeric, "")
    else:
        raise ConfigError(f"assign action {action!r} is not set, clear, remove, append or insert")


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
        Step(path.segment.name, 1),
        path.field,
        path.component,
        path.subcomponent,
    )
    numeric = numeric_paths([path.segment.name], single, hl7_version(msg.version), variables)[0]
    return [numeric.replace(f"{path.segment.name}(1)", f"{path.segment.name}({index or 1})", 1)]


def _assign_segments(
    msg: HL7Message,
    path: VirtualPath,
    value: str,
    action: str,
    key: int | None,
    variables: dict[str, Any],
) -> HL7Message:
    """Replace, remove or add whole segments or a group; returns the rebuilt message."""
    lines = [line for line in msg.to_er7().split("\r") if line]
    new = [line for line in value.split("\r") if line]
    if action in ("append", "insert"):
        if path.segment is None:
            raise ConfigError(f"{{{path.text}}}: append and insert take segments, not groups")
        names = [line[:3] for line in lines]
        every = replace(path, segment=Step(path.segment.name, ALL))
        positions = segment_positions(names, every, variables)
        index = key if key is not None else path.segment.index
        if action == "insert" and isinstance(index, int) and 0 < index <= len(positions):
            at = positions[index - 1]
        else:
            at = positions[-1] + 1 if positions else len(lines)
        lines[at:at] = new
    else:
        if action not in ("clear", "remove") and not new:
            return msg  # IRIS leaves the target alone when the source segment is missing
        if action in ("clear", "remove"):
            new = []
        names = [line[:3] for line in lines]
        if path.segment is None:
            scopes = group_scopes(names, path.groups, variables)
            chosen = {i for start, end in scopes for i in range(start, end)}
        else:
            chosen = set(segment_positions(names, path, variables))
        # The new lines take the place of the first selected one; the others are removed.
        first = min(chosen, default=len(lines))
        rest = [line for i, line in enumerate(lines) if i > first and i not in chosen]
        lines = lines[:first] + new + rest
    if not lines or not lines[0].startswith("MSH"):
        raise ConfigError(f"{{{path.text}}}: the target message would have no MSH segment")
    return HL7Message("\r".join(lines) + "\r")
