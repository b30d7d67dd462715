"""IRIS virtual property paths (``{PID:PatientName(1).FamilyName}``) -> numeric HL7 positions.

A path is parsed once into a ``VirtualPath``; names are resolved to numbers per HL7 version,
lazily, from hl7apy's structures, and cached. IRIS spells names in CamelCase
(``PatientIdentifierList``) and hl7apy in capitals (``PATIENT_IDENTIFIER_LIST``); both are
compared after removing everything but letters and digits and lowercasing.

Segment groups (``PIDgrp``, ``ORCgrp(2).OBRgrp``) are resolved by position in the message: IRIS
names a group after its first segment, so ``ORCgrp(2)`` starts at the second ORC and runs to
the next ORC. Indexes: ``(n)`` one, ``()`` / ``(*)`` every one (a rule is then true when any
value satisfies it), ``(k1)`` a DTL ``foreach`` key variable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from hie.errors import ConfigError

__all__ = [
    "ALL",
    "Step",
    "VirtualPath",
    "check_names",
    "field_number",
    "hl7_version",
    "numeric_paths",
    "parse_virtual_path",
    "segment_positions",
]

#: Index meaning every repetition / segment: ``()`` or ``(*)``.
ALL: Final = "*"

Index = int | str | None  # int, ALL, a variable name, or None (not given)

_STEP = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(?:\(\s*([^()]*?)\s*\))?\s*$")
_SUPPORTED: tuple[str, ...] = ("2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7")
_SUPPORTED += ("2.7.1", "2.8", "2.8.1", "2.8.2")
#: IRIS schema names that hl7apy spells differently (same position); tried when direct fails.
_ALIASES: Final = (
    {"messagecode", "messagetype"},
    {"familylastname", "familyname", "surname"},
    {"givenname", "firstname"},
)


@dataclass(frozen=True)
class Step:
    """One ``name(index)`` step of a path."""

    name: str
    index: Index = None


@dataclass(frozen=True)
class VirtualPath:
    """A parsed virtual property path; ``field`` is None for a whole segment or group."""

    text: str
    groups: tuple[Step, ...]
    segment: Step | None  # None when the path names only a group (``{PR1grp(1)}``)
    field: Step | None = None
    component: str | None = None
    subcomponent: str | None = None

    @property
    def has_all(self) -> bool:
        """True when any step asks for every repetition or segment."""
        steps = [*self.groups, self.segment, self.field]
        return any(s is not None and s.index == ALL for s in steps)


def _index(text: str | None) -> Index:
    if text is None:
        return None
    if text in ("", "*"):
        return ALL
    if text.isdigit():
        if int(text) == 0:
            raise ValueError("positions start at 1")
        return int(text)
    if re.fullmatch(r"[A-Za-z%][A-Za-z0-9]*", text):
        return text  # a foreach key variable such as k1
    raise ValueError(f"index ({text}) must be a number, *, empty or a key variable")


def _step(text: str) -> Step:
    m = _STEP.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not name(index)")
    return Step(m.group(1), _index(m.group(2)))


@lru_cache(maxsize=4096)
def parse_virtual_path(text: str) -> VirtualPath:
    """Parse the inside of ``{...}``: ``PID:PatientName(1).FamilyName``, ``MSH:9.1``,
    ``PID-3(2).1``, ``PIDgrp(1).PID:3``, ``NK1(1)``, ``PR1grp(1)``.

    Raises ``ConfigError`` when the text is not a path.
    """
    try:
        return _parse(text.strip())
    except ValueError as exc:
        raise ConfigError(f"{{{text}}} is not a virtual property path: {exc}") from exc


def _parse(text: str) -> VirtualPath:
    head, sep, tail = text.partition(":")
    if not sep:
        m = re.match(r"^((?:[^.]*\.)*[A-Za-z0-9]{3}(?:\([^()]*\))?)-(.+)$", text)
        if m:
            head, tail, sep = m.group(1), m.group(2), "-"
    steps = [_step(s) for s in head.split(".")] if head else []
    if not steps:
        raise ValueError("no segment")
    last = steps[-1]
    if not sep and (last.name.lower().endswith("grp") or len(last.name) != 3):
        return VirtualPath(text, tuple(steps), None)
    if len(last.name) != 3:
        raise ValueError(f"{last.name!r} is not a segment name")
    segment = Step(last.name.upper(), last.index)
    if not sep:
        return VirtualPath(text, tuple(steps[:-1]), segment)
    parts = tail.split(".")
    if len(parts) > 3 or not all(parts):
        raise ValueError("expected field(rep).component.subcomponent after the segment")
    field = _step(parts[0])
    comp = _step(parts[1]).name if len(parts) > 1 else None
    sub = _step(parts[2]).name if len(parts) > 2 else None
    return VirtualPath(text, tuple(steps[:-1]), segment, field, comp, sub)


def hl7_version(text: str | None) -> str:
    """The hl7apy version closest to MSH-12 (``2.5.1``, ``2.3``); 2.5 when unknown."""
    text = (text or "").strip()
    if text in _SUPPORTED:
        return text
    short = ".".join(text.split(".")[:2])
    return short if short in _SUPPORTED else "2.5"


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _candidates(name: str) -> list[str]:
    norm = _norm(name)
    for group in _ALIASES:
        if norm in group:
            return [norm, *sorted(group - {norm})]
    return [norm]


@lru_cache(maxsize=32)
def _library(version: str) -> Any:
    from hl7apy import load_library  # slow import; only paths with names need it

    return load_library(version)


def _children(lib: Any, struct: Any) -> list[tuple[str, Any]]:
    """(number_name, struct) children of a field/component struct, from the datatype if needed."""
    kids = struct[1]
    if kids is None and len(struct) > 2 and struct[2]:
        kids = lib.DATATYPES_STRUCTS.get(struct[2])
    return [(k[0], k[1]) for k in kids or ()]


def _pick(name: str, options: list[tuple[str, Any]], what: str) -> tuple[int, Any]:
    if name.isdigit():
        number = int(name)
        return number, options[number - 1][1] if 0 < number <= len(options) else None
    wanted = _candidates(name)
    for cand in wanted:
        for number, (_, struct) in enumerate(options, 1):
            long_name = struct[3] if len(struct) > 3 else None
            if long_name and _norm(long_name) == cand:
                return number, struct
    # IRIS's schemas cut long names short (XPN.3 "SecondandFurtherGivenNamesor" for "Second And
    # Further Given Names Or Initials Thereof"): a long enough prefix of one name only is it.
    prefix = wanted[0]
    if len(prefix) >= 12:
        hits = [
            (number, struct)
            for number, (_, struct) in enumerate(options, 1)
            if len(struct) > 3 and struct[3] and _norm(struct[3]).startswith(prefix)
        ]
        if len(hits) == 1:
            return hits[0]
    raise KeyError(f"no {what} named {name!r}")


_FALLBACK: Final = ("2.5.1", "2.3.1", "2.8", "2.4", "2.6", "2.7", "2.3", "2.2")


@lru_cache(maxsize=8192)
def field_number(
    segment: str, field: str, component: str | None, sub: str | None, version: str
) -> tuple[int, int | None, int | None]:
    """Numbers of a named (or numeric) field, component and subcomponent in ``version``.

    A name is looked up in ``version`` first; names change between versions (PID-3 is
    ``PatientIDInternalID`` in 2.3, ``PatientIdentifierList`` from 2.3.1), so a name the
    message's version lacks is then looked up in the other versions, where positions stay put.
    Raises ``ConfigError`` when no version knows the name.
    """
    try:
        return _field_number(segment, field, component, sub, version)
    except ConfigError as first:
        for other in _FALLBACK:
            if other != version:
                try:
                    return _field_number(segment, field, component, sub, other)
                except ConfigError:
                    continue
        raise first from None


def _field_number(
    segment: str, field: str, component: str | None, sub: str | None, version: str
) -> tuple[int, int | None, int | None]:
    if field.isdigit() and (component is None or component.isdigit()):
        if sub is None or sub.isdigit():  # all numeric: no schema needed
            return int(field), _int(component), _int(sub)
    lib = _library(version)
    try:
        seg = lib.SEGMENTS[segment]
    except KeyError:
        raise ConfigError(f"segment {segment} is not in HL7 {version}; use numbers") from None
    fields = [(f[0], f[1]) for f in seg[1]]
    try:
        f_no, f_struct = _pick(field, fields, f"field in {segment}")
        c_no = s_no = None
        if component is not None:
            c_no, c_struct = _pick(component, _children(lib, f_struct) if f_struct else [], "part")
            if sub is not None:
                s_no, _ = _pick(sub, _children(lib, c_struct) if c_struct else [], "part")
    except KeyError as exc:
        dotted = ".".join(p for p in (field, component, sub) if p)
        raise ConfigError(f"{segment}:{dotted} does not resolve in HL7 {version}: {exc}") from None
    return f_no, c_no, s_no


def _int(text: str | None) -> int | None:
    return None if text is None else int(text)


def check_names(path: VirtualPath) -> None:
    """Raise ``ConfigError`` when a named path resolves in no supported version (a typo)."""
    if path.segment is None or path.field is None:
        return
    args = (path.segment.name, path.field.name, path.component, path.subcomponent)
    try:
        field_number(*args, "2.5.1")
    except ConfigError as exc:
        raise ConfigError(f"{{{path.text}}}: {exc}") from None


# -- locating paths in a message ---------------------------------------------------------------


def _resolve_index(index: Index, variables: dict[str, Any] | None) -> int | str | None:
    if isinstance(index, str) and index != ALL:
        try:
            return int((variables or {})[index])
        except (KeyError, ValueError):
            problem = f"key variable ({index}) is not set by an enclosing foreach"
            raise ConfigError(problem) from None
    return index


def _pick_positions(found: list[int], index: int | str | None) -> list[int]:
    if index == ALL:
        return found
    n = 1 if index is None else int(index)
    return found[n - 1 : n]


def group_scopes(
    names: list[str], groups: tuple[Step, ...], variables: dict[str, Any] | None = None
) -> list[tuple[int, int]]:
    """The ``[start, end)`` ranges of ``names`` that the group steps select."""
    scopes = [(0, len(names))]
    for step in groups:
        lead = step.name[:-3].upper() if step.name.lower().endswith("grp") else ""
        if len(lead) != 3:
            continue  # a group not named after its first segment: no narrowing possible
        index = _resolve_index(step.index, variables)
        narrowed = []
        for start, end in scopes:
            starts = [i for i in range(start, end) if names[i] == lead]
            for pos in _pick_positions(starts, index):
                nxt = next((i for i in range(pos + 1, end) if names[i] == lead), end)
                narrowed.append((pos, nxt))
        scopes = narrowed
    return scopes


def segment_positions(
    names: list[str], path: VirtualPath, variables: dict[str, Any] | None = None
) -> list[int]:
    """Positions in ``names`` of the segments ``path`` selects (inside its groups)."""
    assert path.segment is not None
    index = _resolve_index(path.segment.index, variables)
    out: list[int] = []
    for start, end in group_scopes(names, path.groups, variables):
        found = [i for i in range(start, end) if names[i] == path.segment.name]
        out.extend(_pick_positions(found, index))
    return out


def numeric_paths(
    names: list[str], path: VirtualPath, version: str, variables: dict[str, Any] | None = None
) -> list[str]:
    """``hie.hl7`` paths (``PID(2)-3(*).1``) for a field path, one per selected segment."""
    assert path.segment is not None and path.field is not None
    f_no, c_no, s_no = field_number(
        path.segment.name, path.field.name, path.component, path.subcomponent, version
    )
    rep = _resolve_index(path.field.index, variables)
    tail = f"-{f_no}" + ("" if rep is None else f"({rep})")
    tail += "" if c_no is None else f".{c_no}"
    tail += "" if s_no is None else f".{s_no}"
    out = []
    for pos in segment_positions(names, path, variables):
        nth = names[: pos + 1].count(path.segment.name)
        out.append(f"{path.segment.name}({nth}){tail}")
    return out
