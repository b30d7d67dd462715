"""HL7 v2 data types as FHIR data types: CX/EI -> Identifier, XPN/XCN -> HumanName,
XAD -> Address, XTN -> ContactPoint, CWE/CE -> CodeableConcept, NM + units -> Quantity.

Each reader takes a ``Segment``, a field and a repetition, reads components by number and
follows the IG's datatype maps (datatype-cx-to-identifier, datatype-xpn-to-humanname, ...). It
returns None when nothing is left: FHIR forbids empty strings, lists and elements.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TypeVar

from fhir.resources.R4B.address import Address
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.contactpoint import ContactPoint
from fhir.resources.R4B.humanname import HumanName
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.quantity import Quantity

from hie.fhir import conceptmaps as cm
from hie.fhir.segment import Segment

T = TypeVar("T")


def some(items: list[T | None]) -> list[T] | None:
    """The items that are not None, or None when none are left (FHIR forbids empty lists)."""
    kept = [i for i in items if i is not None]
    return kept or None


def decimal(text: str) -> Decimal | None:
    """An HL7 NM as a Decimal (precision as written), or None when it is not a finite number."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


# -- identifiers -------------------------------------------------------------------------------


def hd_system(seg: Segment, field: int, rep: int, comp: int) -> str | None:
    """An assigning authority (HD: namespace & universal id & id type) as an Identifier.system.

    The universal id wins (an OID -> ``urn:oid:``, ``UUID`` -> ``urn:uuid:``, a URI as is); a
    namespace alone becomes ``urn:id:<namespace>`` so identifiers from one authority share it.
    """
    universal = seg.get(field, rep, comp, 2)
    kind = seg.get(field, rep, comp, 3).upper()
    if universal:
        return f"urn:uuid:{universal}" if kind == "UUID" else cm.local_uri(universal)
    namespace = seg.get(field, rep, comp, 1)
    return cm.local_uri(namespace) if namespace else None


def code(text: str) -> str:
    """``text`` as a FHIR code: single spaces only (v2 senders pad codes; FHIR refuses that)."""
    return " ".join(text.split())


def identifier_type(type_code: str) -> CodeableConcept | None:
    """An identifier type code (table 0203) as Identifier.type."""
    return coded(cm.v2_table("0203"), type_code) if type_code.strip() else None


def cx_identifier(
    seg: Segment, field: int, rep: int = 1, default_type: str = ""
) -> Identifier | None:
    """CX (id ^ check digit ^ scheme ^ assigning authority ^ type) -> Identifier; the type is
    CX-5, else ``default_type``."""
    value = seg.get(field, rep, 1)
    if not value:
        return None
    return Identifier(
        value=value,
        system=hd_system(seg, field, rep, 4),
        type=identifier_type(seg.get(field, rep, 5) or default_type),
    )


def ei_identifier(seg: Segment, field: int, type_code: str = "", rep: int = 1) -> Identifier | None:
    """EI (entity id ^ namespace ^ universal id ^ type) -> Identifier, typed ``type_code``."""
    value = seg.get(field, rep, 1)
    if not value:
        return None
    universal, namespace = seg.get(field, rep, 3), seg.get(field, rep, 2)
    if universal and seg.get(field, rep, 4).upper() == "UUID":
        system: str | None = f"urn:uuid:{universal}"
    else:
        system = cm.local_uri(universal or namespace) if universal or namespace else None
    return Identifier(value=value, system=system, type=identifier_type(type_code))


# -- names, addresses, telecom -----------------------------------------------------------------


def human_name(seg: Segment, field: int, rep: int = 1, *, xcn: bool = False) -> HumanName | None:
    """XPN -> HumanName; ``xcn`` reads the same parts one component later, plus XCN-10 as use.

    Family is the surname of its FN; the middle name is a second given name; the degree a
    second suffix (datatype-xpn-to-humanname).
    """
    at = 1 if xcn else 0
    family = seg.get(field, rep, 1 + at, 1)
    given = some([seg.get(field, rep, 2 + at) or None, seg.get(field, rep, 3 + at) or None])
    suffix = some([seg.get(field, rep, 4 + at) or None, seg.get(field, rep, 6 + at) or None])
    prefix = seg.get(field, rep, 5 + at)
    if not (family or given or suffix or prefix):
        return None
    use = cm.NAME_USE.get(seg.get(field, rep, 10 if xcn else 7).upper())
    return HumanName(
        family=family or None,
        given=given,
        prefix=[prefix] if prefix else None,
        suffix=suffix,
        use=use,
    )


def address(seg: Segment, field: int, rep: int = 1) -> Address | None:
    """XAD -> Address: lines from the SAD's three parts and the other designation, then city,
    state, zip, country, county and the type (datatype-xad-to-address)."""
    streets = [seg.get(field, rep, 1, s) for s in (1, 2, 3)]
    line = some([p or None for p in (*streets, seg.get(field, rep, 2))])
    parts = {
        "city": seg.get(field, rep, 3),
        "state": seg.get(field, rep, 4),
        "postalCode": seg.get(field, rep, 5),
        "country": seg.get(field, rep, 6),
        "district": seg.get(field, rep, 9),
    }
    if not line and not any(parts.values()):
        return None
    kind = seg.get(field, rep, 7).upper()
    return Address(
        line=line,
        use=cm.ADDRESS_USE.get(kind),
        type=cm.ADDRESS_TYPE.get(kind),
        **{k: v for k, v in parts.items() if v},
    )


def contact_point(seg: Segment, field: int, rep: int, default_use: str) -> ContactPoint | None:
    """XTN -> ContactPoint (datatype-xtn-to-contactpoint).

    An e-mail address is XTN-4; a number is XTN-12, else built from country, area, local
    number and extension (XTN-5..8), else the old XTN-1. ``default_use`` applies only when
    XTN-2 is empty (PID-13 home, PID-14 work).
    """
    equipment = seg.get(field, rep, 3).upper()
    email = seg.get(field, rep, 4)
    system = cm.TELECOM_SYSTEM.get(equipment)
    if system is None and not equipment:
        system = "email" if email or "@" in seg.get(field, rep, 1) else "phone"
    value = email if system == "email" else _number(seg, field, rep)
    value = value or seg.get(field, rep, 1)
    if not value:
        return None
    use_code = seg.get(field, rep, 2).upper()
    use = cm.TELECOM_USE.get(use_code) if use_code else default_use
    if equipment == "CP":
        use = "mobile"
    return ContactPoint(system=system, value=value, use=use)


def _number(seg: Segment, field: int, rep: int) -> str:
    if unformatted := seg.get(field, rep, 12):
        return unformatted
    country, area, local, ext = (seg.get(field, rep, c) for c in (5, 6, 7, 8))
    if not local:
        return ""
    number = " ".join(p for p in (f"+{country}" if country else "", area, local) if p)
    return f"{number} X{ext}" if ext else number


# -- codes and quantities ----------------------------------------------------------------------


def coding(value: str, display: str, system_name: str) -> Coding | None:
    """One CWE triplet (code ^ text ^ coding system) -> Coding."""
    if not value:
        return None
    return Coding(code=code(value), display=display or None, system=cm.coding_system(system_name))


def codeable(seg: Segment, field: int, rep: int = 1) -> CodeableConcept | None:
    """CWE/CE -> CodeableConcept: the code, the alternate code, and CWE-9 (else a lone CWE-2)
    as text (datatype-cwe-to-codeableconcept)."""

    def c(n: int) -> str:
        return seg.get(field, rep, n)

    codings = some([coding(c(1), c(2), c(3)), coding(c(4), c(5), c(6))])
    text = c(9) or (c(2) if not c(1) else "")
    if not codings and not text:
        return None
    return CodeableConcept(coding=codings, text=text or None)


def coded(system: str, value: str, display: str | None = None) -> CodeableConcept:
    """A CodeableConcept of one code in a known system."""
    return CodeableConcept(coding=[Coding(system=system, code=code(value), display=display)])


def quantity(
    value: Decimal, seg: Segment, units_field: int, rep: int = 1, comparator: str | None = None
) -> Quantity:
    """A number with the units of a CWE field (OBX-6, RXA-7): UCUM system and code only when
    the units name UCUM as their coding system, else the units as unit text."""
    units, text, system = (seg.get(units_field, rep, n) for n in (1, 2, 3))
    if system.upper() != "UCUM" and seg.get(units_field, rep, 6).upper() == "UCUM":
        units, text, system = (seg.get(units_field, rep, n) for n in (4, 5, 6))
    if system.upper() == "UCUM" and units:
        return Quantity(
            value=value, comparator=comparator, unit=text or units, system=cm.UCUM, code=code(units)
        )
    return Quantity(value=value, comparator=comparator, unit=(text or units) or None)
