"""An HL7 message laid out for reading: segments, numbered and named fields, escapes decoded.

Names come from hl7apy's structures for the message's own version (MSH-12, mapped by
``hie.rules.paths.hl7_version``), so ``PID-3`` reads "Patient Identifier List" in 2.5 and
"Patient ID (Internal ID)" in 2.3. Values are split into repetitions and components and each
leaf is unescaped; the template escapes the text for HTML, so nothing here builds markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hie.errors import HIEError
from hie.hl7 import Delimiters, HL7Message, unescape
from hie.rules.paths import hl7_version

#: Values longer than this are folded (a base64 PDF in OBX-5 can be megabytes).
FOLD_AT = 200

_HEADER_SEGMENTS = frozenset({"MSH", "FHS", "BHS"})


@dataclass(frozen=True, slots=True)
class FieldView:
    """One non-empty field: ``PID-3``, its name, and its repetitions of decoded components."""

    number: int
    name: str
    repetitions: list[list[str]]
    size: int

    @property
    def folded(self) -> bool:
        """True when the value is long enough to show folded."""
        return self.size > FOLD_AT

    def text(self, component_sep: str = "^", repetition_sep: str = "~") -> str:
        """The decoded value on one line, components and repetitions re-joined for reading."""
        return repetition_sep.join(component_sep.join(r) for r in self.repetitions)


@dataclass(frozen=True, slots=True)
class SegmentView:
    """One segment: its name, its 1-based position in the message and its non-empty fields."""

    name: str
    position: int
    fields: list[FieldView]


@lru_cache(maxsize=16)
def _library(version: str) -> Any:
    from hl7apy import load_library  # slow import: only the message page needs it

    return load_library(version)


@lru_cache(maxsize=2048)
def field_names(segment: str, version: str) -> tuple[str, ...]:
    """Long names of ``segment``'s fields in HL7 ``version`` (index 0 is field 1); () if unknown."""
    lib = _library(hl7_version(version))
    try:
        structure = lib.SEGMENTS[segment][1]
    except (KeyError, IndexError, TypeError):
        return ()
    names = []
    for entry in structure:  # ("PID_3", (kind, children, datatype, LONG_NAME, ...), ...)
        struct = entry[1]
        long_name = struct[3] if len(struct) > 3 and struct[3] else ""
        names.append(long_name.replace("_", " ").title())
    return tuple(names)


def _split(value: str, d: Delimiters, codec: str, header_field: bool) -> list[list[str]]:
    if header_field:  # MSH-1 / MSH-2 are the separators themselves
        return [[value]]
    reps = []
    for rep in value.split(d.repetition):
        comps = []
        for comp in rep.split(d.component):
            subs = comp.split(d.subcomponent)
            comps.append("&".join(unescape(s, d, codec) if d.escape in s else s for s in subs))
        reps.append(comps)
    return reps


def lay_out(raw: str) -> tuple[list[SegmentView], str]:
    """The segments of ``raw`` with named fields, and the version used for names.

    Raises ``HIEError`` (``HL7ParseError``) when ``raw`` is not HL7; callers show it as text.
    """
    message = HL7Message(raw)
    version = hl7_version(message.version)
    d = message.delimiters
    codec = message.codec
    out: list[SegmentView] = []
    for position, fields in enumerate(message.segments(), 1):
        name = fields[0]
        names = field_names(name, version) if len(name) == 3 else ()
        views = []
        for number, value in enumerate(fields[1:], 1):
            if not value:
                continue
            try:
                reps = _split(value, d, codec, name in _HEADER_SEGMENTS and number <= 2)
            except HIEError:
                reps = [[value]]  # a broken escape: show what was written
            label = names[number - 1] if number <= len(names) else ""
            views.append(FieldView(number, label, reps, len(value)))
        out.append(SegmentView(name, position, views))
    return out, version
