"""One HL7 segment on its own: what a DTL whose class is ``EnsLib.HL7.Segment`` reads or builds.

IRIS lets a transform map a single segment (``targetClass='EnsLib.HL7.Segment'
targetDocType='2.5:PID'``); its paths name fields of that segment only (``target.{SetIDPID}``,
``source.{3}``), and a parent runs it with ``<subtransform sourceObj='source.{PID}'
targetObj='target.{PID}'/>``. Between the two a segment travels as its ER7 text.

HIE runs such a transform on a ``SegmentView``: the segment inside a message of its own, behind a
stand-in MSH (unless the segment is the MSH), so that every HL7 path HIE knows works on it; the
view's field paths are the segment's (``{SetIDPID}`` is ``{PID:SetIDPID}``). Names resolve in
the version of the doc type (``2.5``), the stand-in MSH's MSH-12.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from hie.errors import HL7ParseError
from hie.hl7 import HL7Message
from hie.rules.paths import VirtualPath, parse_virtual_path

__all__ = ["SegmentView", "segment_of", "segment_path"]

_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")
#: A path that already names its segment: ``PID:5``, ``PID-5``.
_QUALIFIED = re.compile(r"^[A-Za-z][A-Za-z0-9]{2}(?:\([^()]*\))?[:-]")


def segment_of(doc_type: str) -> str:
    """The segment a doc type names (``2.5:PID`` -> ``PID``); ``""`` when it names none."""
    name = doc_type.rpartition(":")[2].strip()
    return name if _NAME.fullmatch(name) else ""


@lru_cache(maxsize=4096)
def segment_path(segment: str, inner: str) -> VirtualPath:
    """A path of a ``segment`` (``SetIDPID``) as an HL7 path (``PID:SetIDPID``); one that
    names its segment already is kept. Raises ``ConfigError`` when it is not a path."""
    text = inner.strip()
    return parse_virtual_path(text if _QUALIFIED.match(text) else f"{segment}:{text}")


@dataclass
class SegmentView:
    """A segment (``segment``: its name) held in ``message`` so HL7 paths work on it."""

    segment: str
    message: HL7Message

    @classmethod
    def of(cls, text: str, *, segment: str = "", version: str = "") -> SegmentView:
        """A view of the ER7 segment ``text`` (its first line); an empty one of ``segment``
        when ``text`` is empty."""
        line = next((part for part in re.split(r"[\r\n]+", text) if part.strip()), "")
        name = line[:3] if _NAME.fullmatch(line[:3]) else (segment or "ZZZ")
        if not line:
            line = "MSH|^~\\&" if name == "MSH" else name
        if name == "MSH":
            return cls(name, _header(line))
        carrier = f"MSH|^~\\&|||||||ZZZ|||{version}"
        return cls(name, HL7Message(f"{carrier}\r{line}\r"))

    def path(self, inner: str) -> VirtualPath:
        """A path of the segment (``SetIDPID``) as a path of the view (``PID:SetIDPID``)."""
        return segment_path(self.segment, inner)

    def text(self) -> str:
        """The segment's ER7 text."""
        lines = [line for line in self.message.to_er7().split("\r") if line]
        return lines[0] if self.segment == "MSH" else "\r".join(lines[1:])


def _header(line: str) -> HL7Message:
    """An MSH on its own as a message, even before it has a type (MSH-9)."""
    if len(line) < 8:  # not even its delimiters: an empty MSH
        line = "MSH|^~\\&"
    try:
        return HL7Message(line + "\r")
    except HL7ParseError:
        # A message needs MSH-9; a segment being built does not have it yet.
        fields = line.split(line[3])
        fields += [""] * (9 - len(fields))
        fields[8] = "ZZZ"
        msg = HL7Message(line[3:4].join(fields) + "\r")
        msg.set_raw("MSH-9", "")
        return msg
