"""``HL7Message``: fast path access to HL7 v2 ER7 text, without a full parse.

The text is split into segments once; a segment's fields are split the first time they are read
and cached. Nothing else is parsed, which keeps routing on ``MSH-9`` and ``PID-3`` in the tens of
microseconds (hl7apy needs about 30 ms for the same message). Unmodified messages serialise to the
text they were built from, so the engine forwards exactly what it received.

Reading rules, in one place:

- ``PID-3`` without a repetition index means the first repetition; ``OBX-5`` without a segment
  index means the first OBX. ``(*)`` means all of them (``get_all``, ``set``).
- An empty value is a missing value: ``get`` returns ``default`` for both.
- ``get`` decodes escape sequences only in a leaf, a value with no separator below it. A field or
  component that still has components or subcomponents is returned as written, escapes intact,
  because decoding ``\\S\\`` there would make it indistinguishable from a real separator.
- ``get_raw`` / ``set_raw`` never touch escapes; ``set`` escapes the value it writes, so
  ``set("PID-5", "A^B")`` writes one value ``A\\S\\B``. Copy structure with ``set_raw``.
- A line that does not start with a segment name (a field broken by a line break) is kept as a
  segment of its own, so the message is still forwarded unchanged; ``validate`` names it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from hie.errors import HL7ParseError, MessageError
from hie.hl7.charset import python_codec, sniff_charset
from hie.hl7.escapes import Delimiters, escape, unescape
from hie.hl7.path import ALL, HL7Path, parse_path

if TYPE_CHECKING:
    from hl7apy.core import Message as HL7apyMessage

# Segments whose first field is the field separator itself (so SEG-1 is the separator, SEG-2 the
# encoding characters and SEG-3 the first field written after them).
_HEADERS = frozenset({"MSH", "FHS", "BHS"})
_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")


def normalise_terminators(text: str) -> str:
    """Turn ``\\r\\n`` and ``\\n`` segment terminators into HL7's ``\\r``."""
    if "\n" in text:
        return text.replace("\r\n", "\r").replace("\n", "\r")
    return text


class HL7Message:
    """One HL7 v2 message in ER7 text; see the module docstring for the reading rules.

    ``raw`` may be text or bytes; bytes are decoded with ``encoding`` (an HL7 charset name or a
    Python codec), else with the codec MSH-18 names, else UTF-8. Raises ``HL7ParseError`` when
    the message does not start with a usable MSH segment or has no type in MSH-9.
    """

    __slots__ = ("_cache", "_codec", "_delims", "_names", "_segs", "_text", "_trailing")

    def __init__(self, raw: str | bytes, *, encoding: str | None = None) -> None:
        self._codec: str | None = None
        if isinstance(raw, bytes | bytearray | memoryview):
            data = bytes(raw)
            self._codec = python_codec(encoding or sniff_charset(data))
            try:
                raw = data.decode(self._codec)
            except UnicodeDecodeError as exc:
                raise HL7ParseError(
                    f"message bytes are not valid {self._codec} (from MSH-18 or the default): "
                    f"{exc.reason} at byte {exc.start}"
                ) from exc
        text = normalise_terminators(raw)
        if not text.startswith("MSH") or len(text) < 8:
            raise HL7ParseError(
                f"no MSH segment at the start; the message begins with {text[:12]!r}",
                segment="MSH",
            )
        end = text.find(text[3], 4)
        self._delims = Delimiters.parse(text[3], text[4 : end if end > 0 else len(text)])
        segs = text.split("\r")
        self._trailing = segs[-1] == ""
        if "" in segs:  # blank lines carry nothing; the original text is kept for to_er7
            segs = [s for s in segs if s]
        self._segs = segs
        self._cache: list[list[str] | None] = [None] * len(segs)
        self._names: list[str] | None = None
        self._text: str | None = text
        if not self.get_raw("MSH-9"):
            raise HL7ParseError(
                "MSH-9 is empty; every message needs a type", segment="MSH", field=9
            )

    # -- segments -----------------------------------------------------------------------------

    def _fields(self, i: int) -> list[str]:
        fields = self._cache[i]
        if fields is None:
            fields = self._segs[i].split(self._delims.field)
            if fields[0] in _HEADERS:
                fields.insert(1, self._delims.field)
            self._cache[i] = fields
        return fields

    def _name_list(self) -> list[str]:
        if self._names is None:
            self._names = [s[:3] for s in self._segs]
        return self._names

    def _indexes(self, name: str) -> list[int]:
        return [i for i, n in enumerate(self._name_list()) if n == name]

    def _find(self, name: str, nth: int) -> int | None:
        names = self._name_list()
        if nth == 1:
            try:
                return names.index(name)
            except ValueError:
                return None
        found = self._indexes(name)
        return found[nth - 1] if nth <= len(found) else None

    def _store(self, i: int, fields: list[str]) -> None:
        fs = self._delims.field
        if fields[0] in _HEADERS:
            self._segs[i] = fields[0] + fs + fs.join(fields[2:])
        else:
            self._segs[i] = fs.join(fields)
        self._cache[i] = None  # a raw value may have brought a field separator: split again
        self._text = None

    def _insert(self, at: int, line: str) -> None:
        self._segs.insert(at, line)
        self._cache.insert(at, None)
        self._names = None
        self._text = None

    def segment_names(self) -> list[str]:
        """The segment names in order, for example ``["MSH", "EVN", "PID", "PV1"]``."""
        return list(self._name_list())

    def segments(self, name: str | None = None) -> list[list[str]]:
        """Copies of the segments' raw fields (index n is field n; index 0 the segment name).

        For MSH, index 1 is the field separator and index 2 the encoding characters, matching
        the standard's numbering.
        """
        indexes = range(len(self._segs)) if name is None else self._indexes(name)
        return [list(self._fields(i)) for i in indexes]

    def add_segment(self, text: str) -> None:
        """Append one segment given as ER7 text, for example ``"ZPI|1|VIP"``."""
        text = text.rstrip("\r\n")
        name = text[:3]
        if not _SEGMENT_NAME.match(name):
            raise ValueError(f"{text[:20]!r} does not start with a segment name like ZPI")
        if (len(text) > 3 and text[3] != self._delims.field) or "\r" in text or "\n" in text:
            raise ValueError(
                f"segment {name} must be one line whose fields are separated by "
                f"{self._delims.field!r}"
            )
        self._insert(len(self._segs), text)

    def remove_segments(self, name: str) -> int:
        """Remove every segment called ``name``; returns how many were removed. MSH stays."""
        if name == "MSH":
            raise ValueError("the MSH segment cannot be removed")
        keep = [i for i, n in enumerate(self._name_list()) if n != name]
        removed = len(self._segs) - len(keep)
        if removed:
            self._segs = [self._segs[i] for i in keep]
            self._cache = [self._cache[i] for i in keep]
            self._names = None
            self._text = None
        return removed

    # -- reading ------------------------------------------------------------------------------

    def _locate(self, p: HL7Path, seg: int) -> str | None:
        """The raw text at ``p`` inside segment index ``seg``, or None when it does not exist."""
        fields = self._fields(seg)
        if p.field >= len(fields):
            return None
        value = fields[p.field]
        if p.field <= 2 and fields[0] in _HEADERS:  # separators: no structure below them
            return value if p.component is None and p.repetition in (None, 1) else None
        d = self._delims
        part = _part(value, d.repetition, p.repetition or 1)
        if part is None or p.component is None:
            return part
        part = _part(part, d.component, p.component)
        if part is None or p.subcomponent is None:
            return part
        return _part(part, d.subcomponent, p.subcomponent)

    def _leaf(self, p: HL7Path, raw: str) -> str:
        d = self._delims
        if p.subcomponent is None and (
            d.subcomponent in raw or (p.component is None and d.component in raw)
        ):
            return raw  # still structured: decoding would be ambiguous (module docstring)
        if p.field <= 2 and p.segment in _HEADERS:
            return raw
        return unescape(raw, d, self.codec) if d.escape in raw else raw

    def get(self, path: str, default: str = "") -> str:
        """The decoded value at ``path`` (``MSH-9.1``, ``PID-3(2).1``, ``OBX(2)-5``) or ``default``.

        Raises ``ValueError`` for a malformed path or one with ``(*)`` (use ``get_all``).
        """
        p = _single(path)
        seg = self._find(p.segment, p.segment_index or 1)
        raw = None if seg is None else self._locate(p, seg)
        return self._leaf(p, raw) if raw else default

    def get_raw(self, path: str, default: str = "") -> str:
        """The value at ``path`` exactly as written (no escape decoding), or ``default``.

        ``PID-3(*)`` gives the whole field, every repetition, as ``set_raw`` would write it.
        """
        p = parse_path(path)
        if p.repetition == ALL and p.component is None and p.segment_index != ALL:
            seg = self._find(p.segment, p.segment_index or 1)
            fields = [] if seg is None else self._fields(seg)
            return fields[p.field] or default if p.field < len(fields) else default
        p = _single(path)
        seg = self._find(p.segment, p.segment_index or 1)
        raw = None if seg is None else self._locate(p, seg)
        return raw if raw else default

    def get_all(self, path: str) -> list[str]:
        """Every value ``path`` matches, decoded like ``get``.

        A segment or repetition index that is ``(*)`` or not given means all of them, so
        ``get_all("PID-3.1")`` equals ``get_all("PID-3(*).1")`` and ``get_all("OBX-5")`` reads
        every OBX. Each existing repetition gives one string (empty when it lacks the component);
        an empty field has no repetitions and gives nothing.
        """
        p = parse_path(path)
        if p.segment_index in (None, ALL):
            segs = self._indexes(p.segment)
        else:
            one = self._find(p.segment, p.segment_index)
            segs = [] if one is None else [one]
        out: list[str] = []
        for seg in segs:
            fields = self._fields(seg)
            if p.field >= len(fields) or not fields[p.field]:
                continue
            reps = fields[p.field].split(self._delims.repetition)
            every = p.repetition in (None, ALL)
            wanted = range(1, len(reps) + 1) if every else [p.repetition or 1]
            for rep in wanted:
                q = p._replace(repetition=rep)
                raw = self._locate(q, seg)
                out.append(self._leaf(q, raw) if raw else "")
        return out

    # -- writing ------------------------------------------------------------------------------

    def set(self, path: str, value: str) -> None:
        """Write ``value`` at ``path``, escaping delimiters; missing parts are created empty.

        ``OBX(*)-5`` writes every existing OBX; ``PID-3(*)`` replaces the whole field, every
        repetition, with ``value``. MSH-1 and MSH-2 cannot be set.
        """
        self._put(parse_path(path), escape(value, self._delims))

    def set_raw(self, path: str, value: str) -> None:
        """Write ``value`` at ``path`` as ER7 text, without escaping (it may carry structure)."""
        if "\r" in value or "\n" in value:
            raise ValueError(f"a raw value for {path} cannot contain a segment terminator")
        self._put(parse_path(path), value)

    def _put(self, p: HL7Path, value: str) -> None:
        if p.segment_index == ALL:
            for seg in self._indexes(p.segment):
                self._put_in(seg, p, value)
            return
        nth = p.segment_index or 1
        existing = self._indexes(p.segment)
        if len(existing) < nth:
            # New segments go right after the last one of the same name, else at the end.
            at = existing[-1] + 1 if existing else len(self._segs)
            for _ in range(nth - len(existing)):
                self._insert(at, p.segment)
                at += 1
        target = self._find(p.segment, nth)
        assert target is not None  # created above
        self._put_in(target, p, value)

    def _put_in(self, seg: int, p: HL7Path, value: str) -> None:
        fields = list(self._fields(seg))
        if p.field <= 2 and fields[0] in _HEADERS:
            raise ValueError(f"{p.segment}-1 and {p.segment}-2 hold the delimiters; they are fixed")
        fields.extend([""] * (p.field + 1 - len(fields)))
        d = self._delims

        def at_sub(text: str) -> str:
            return (
                value
                if p.subcomponent is None
                else _replace(text, d.subcomponent, p.subcomponent, lambda _: value)
            )

        def at_comp(text: str) -> str:
            return (
                at_sub(text)
                if p.component is None
                else _replace(text, d.component, p.component, at_sub)
            )

        old = fields[p.field]
        if p.repetition == ALL:
            new = (
                value
                if p.component is None
                else d.repetition.join(map(at_comp, old.split(d.repetition)))
            )
        else:
            new = _replace(old, d.repetition, p.repetition or 1, at_comp)
        fields[p.field] = new
        self._store(seg, fields)

    # -- whole message ------------------------------------------------------------------------

    def to_er7(self) -> str:
        """The message as ER7 text: the text it was built from (terminators normalised to
        ``\\r``) while unmodified, else its segments joined with ``\\r``, with a trailing ``\\r``
        when the original had one."""
        if self._text is None:
            self._text = "\r".join(self._segs) + ("\r" if self._trailing else "")
        return self._text

    __str__ = to_er7

    def __repr__(self) -> str:
        return f"<HL7Message {self.message_type} control_id={self.control_id!r}>"

    def copy(self) -> HL7Message:
        """An independent copy (modifying one does not change the other)."""
        return HL7Message(self.to_er7())

    def encode(self, charset: str | None = None) -> bytes:
        """The message as bytes in ``charset`` (HL7 name or codec), by default the codec it was
        decoded with, else the one MSH-18 names; raises ``MessageError`` if a character does not
        fit."""
        codec = python_codec(charset) if charset else self.codec
        try:
            return self.to_er7().encode(codec)
        except UnicodeEncodeError as exc:
            raise MessageError(
                f"message {self.control_id!r} cannot be written as {codec}: {exc.reason} "
                f"({exc.object[exc.start : exc.end]!r})"
            ) from exc

    @property
    def codec(self) -> str:
        """The Python codec for this message: the one its bytes were decoded with, else MSH-18's."""
        return self._codec or python_codec(self.charset)

    @property
    def delimiters(self) -> Delimiters:
        """The field separator and encoding characters from MSH-1 and MSH-2."""
        return self._delims

    # -- MSH shortcuts ------------------------------------------------------------------------

    @property
    def message_code(self) -> str:
        """MSH-9.1, for example ``ADT``."""
        return self.get("MSH-9.1")

    @property
    def trigger_event(self) -> str:
        """MSH-9.2, for example ``A01``."""
        return self.get("MSH-9.2")

    @property
    def message_structure(self) -> str:
        """MSH-9.3, for example ``ADT_A01``."""
        return self.get("MSH-9.3")

    @property
    def message_type(self) -> str:
        """``code^trigger`` with a literal ``^`` whatever the delimiters (``ADT^A01``; ``ACK``)."""
        trigger = self.trigger_event
        return f"{self.message_code}^{trigger}" if trigger else self.message_code

    @property
    def control_id(self) -> str:
        """MSH-10, the id the receiver echoes in MSA-2."""
        return self.get("MSH-10")

    @property
    def version(self) -> str:
        """MSH-12.1, for example ``2.5.1``."""
        return self.get("MSH-12.1")

    @property
    def charset(self) -> str:
        """MSH-18, first repetition (``UNICODE UTF-8``), or ``""`` when not given."""
        return self.get("MSH-18")

    @property
    def processing_id(self) -> str:
        """MSH-11.1: ``P`` production, ``T`` training, ``D`` debugging."""
        return self.get("MSH-11.1")

    @property
    def accept_ack_type(self) -> str:
        """MSH-15 (``AL``, ``NE``, ``ER``, ``SU``); empty means original acknowledgement mode."""
        return self.get("MSH-15")

    @property
    def app_ack_type(self) -> str:
        """MSH-16 (``AL``, ``NE``, ``ER``, ``SU``)."""
        return self.get("MSH-16")

    @property
    def sending_application(self) -> str:
        """MSH-3.1."""
        return self.get("MSH-3.1")

    @property
    def sending_facility(self) -> str:
        """MSH-4.1."""
        return self.get("MSH-4.1")

    @property
    def receiving_application(self) -> str:
        """MSH-5.1."""
        return self.get("MSH-5.1")

    @property
    def receiving_facility(self) -> str:
        """MSH-6.1."""
        return self.get("MSH-6.1")

    # -- full parse (slow; never on the routing path) -----------------------------------------

    def validate(self, *, strict: bool = False) -> list[str]:
        """Problems hl7apy finds in a copy of this message for its MSH-12 version; [] is valid.

        ``strict`` adds table and length warnings to structural errors. Takes milliseconds.
        """
        from hie.hl7.validation import validate_message

        return validate_message(self, strict=strict)

    def to_hl7apy(self) -> HL7apyMessage:
        """A full hl7apy parse of a copy. hl7apy drops Z segments: never forward its output."""
        from hie.hl7.validation import to_hl7apy

        return to_hl7apy(self)


def _single(path: str) -> HL7Path:
    p = parse_path(path)
    if p.has_all:
        raise ValueError(f"{path!r} names several values; use get_all() for (*)")
    return p


def _part(text: str, sep: str, index: int) -> str | None:
    if sep not in text:
        return text if index == 1 else None
    parts = text.split(sep)
    return parts[index - 1] if index <= len(parts) else None


def _replace(text: str, sep: str, index: int, change: Callable[[str], str]) -> str:
    parts = text.split(sep)
    parts.extend([""] * (index - len(parts)))
    parts[index - 1] = change(parts[index - 1])
    return sep.join(parts)
