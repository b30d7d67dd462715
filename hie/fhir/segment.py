"""``Segment``: one segment of an ``HL7Message`` read by field number, for the FHIR mappers.

Every read goes through ``HL7Message.get`` (escapes decoded, empty means missing), so the
mappers never split ER7 themselves. HL7's explicit null ``""`` reads as missing too: it asks a
receiver to delete a value, and a FHIR resource that is being created has nothing to delete.
"""

from __future__ import annotations

from dataclasses import dataclass

from hie.hl7 import HL7Message

_NULL = '""'


@dataclass(frozen=True, slots=True)
class Segment:
    """The ``nth`` (1-based) segment called ``name`` in ``msg``."""

    msg: HL7Message
    name: str
    nth: int = 1

    def path(
        self, field: int, rep: int = 1, comp: int | None = None, sub: int | None = None
    ) -> str:
        """The HL7 path of a value in this segment, for example ``OBX(2)-5(1).3``."""
        path = f"{self.name}({self.nth})-{field}({rep})"
        if comp is not None:
            path += f".{comp}"
            if sub is not None:
                path += f".{sub}"
        return path

    def where(self, field: int, comp: int | None = None) -> str:
        """How a warning names a field: ``OBX(2)-14`` or ``PID-7.1``."""
        nth = f"({self.nth})" if self.nth > 1 else ""
        return f"{self.name}{nth}-{field}" + (f".{comp}" if comp is not None else "")

    def get(self, field: int, rep: int = 1, comp: int | None = None, sub: int | None = None) -> str:
        """The decoded value, stripped, or ``""`` when it is empty, absent or ``""``.

        A component is read as its first subcomponent unless ``sub`` says otherwise: a ``&`` in
        a component is a separator (a literal one is written ``\\T\\``), and newer versions turn
        plain components (XAD-9) into coded ones.
        """
        if comp is not None and sub is None:
            sub = 1
        value = self.msg.get(self.path(field, rep, comp, sub)).strip()
        return "" if value == _NULL else value

    def reps(self, field: int) -> range:
        """The repetition numbers of ``field`` (empty when the field is)."""
        return range(1, len(self.msg.get_all(f"{self.name}({self.nth})-{field}")) + 1)


def segments(msg: HL7Message, name: str) -> list[Segment]:
    """Every segment called ``name``, in message order."""
    count = msg.segment_names().count(name)
    return [Segment(msg, name, n) for n in range(1, count + 1)]


def first(msg: HL7Message, name: str) -> Segment | None:
    """The first segment called ``name``, or None when the message has none."""
    return Segment(msg, name) if name in msg.segment_names() else None


def in_order(msg: HL7Message) -> list[Segment]:
    """Every segment in message order, each knowing which occurrence of its name it is."""
    seen: dict[str, int] = {}
    out: list[Segment] = []
    for name in msg.segment_names():
        seen[name] = seen.get(name, 0) + 1
        out.append(Segment(msg, name, seen[name]))
    return out
