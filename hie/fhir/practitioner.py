"""XCN (a person with an id and a name: ORC-12, PV1-7, RXA-10) -> a Practitioner reference."""

from __future__ import annotations

from fhir.resources.R4B.humanname import HumanName
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.reference import Reference

from hie.fhir.bundle import Builder
from hie.fhir.datatypes import hd_system, human_name, identifier_type
from hie.fhir.segment import Segment


def practitioner(b: Builder, seg: Segment, field: int, rep: int = 1) -> Reference | None:
    """A reference to the practitioner an XCN names, or None when it names nobody.

    With an id and an assigning authority (XCN-9) the practitioner is a conditional-create
    entry, so the server keeps one per id. An id without an authority cannot be matched safely,
    so it stays a logical reference (identifier and name), as does a name alone.
    """
    name = human_name(seg, field, rep, xcn=True)
    value = seg.get(field, rep, 1)
    if not value and name is None:
        return None
    display = _display(name)
    if not value:
        return Reference(display=display)
    identifier = Identifier(
        value=value,
        system=hd_system(seg, field, rep, 9),
        type=identifier_type(seg.get(field, rep, 13)),
    )
    if identifier.system is None:
        return Reference(identifier=identifier, type="Practitioner", display=display)
    entry = b.add(Practitioner(identifier=[identifier], name=[name] if name else None), identifier)
    return Reference(reference=entry.reference, display=display)


def _display(name: HumanName | None) -> str | None:
    if name is None:
        return None
    parts = [*(name.prefix or []), *(name.given or []), name.family or "", *(name.suffix or [])]
    return " ".join(p for p in parts if p) or None
