"""RXA of a VXU^V04 -> Immunization, per the IG's segment-rxa-to-immunization map.

The vaccine from RXA-5, when from RXA-3, the dose from RXA-6/RXA-7 (999 is the CDC's "amount
unknown" and is left out), lot and expiry from RXA-15/RXA-16, the manufacturer from RXA-17,
status ``completed`` unless RXA-20 (table 0322) or RXA-21 ``D`` (deleted) says otherwise, and
the identifier from the ORC before the RXA (filler, else placer number).
"""

from __future__ import annotations

import logging
from typing import Any

from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.immunization import Immunization, ImmunizationPerformer
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference

from hie.fhir import conceptmaps as cm
from hie.fhir.bundle import Builder
from hie.fhir.dates import date_at, datetime_at
from hie.fhir.datatypes import codeable, coded, decimal, ei_identifier, quantity
from hie.fhir.practitioner import practitioner
from hie.fhir.segment import Segment, in_order

log = logging.getLogger(__name__)

_ADMINISTERING = (cm.v2_table("0443"), "AP", "Administering Provider")
_UNKNOWN_AMOUNT = 999


def add_immunizations(b: Builder) -> None:
    """Add an Immunization per RXA, identified by the ORC that precedes it."""
    orc: Segment | None = None
    for seg in in_order(b.msg):
        if seg.name == "ORC":
            orc = seg
        elif seg.name == "RXA":
            _add(b, seg, orc)


def _add(b: Builder, rxa: Segment, orc: Segment | None) -> None:
    vaccine = codeable(rxa, 5)
    occurrence = _occurrence(rxa)
    if vaccine is None or not occurrence:
        log.warning(
            "%s has no vaccine (RXA-5) or no date (RXA-3), both of which an Immunization "
            "needs; left out (message %s)",
            rxa.where(5) if vaccine is None else rxa.where(3),
            rxa.msg.control_id,
        )
        return
    identifier = _identifier(orc)
    status = _status(rxa)
    performer = practitioner(b, rxa, 10)
    immunization = Immunization(
        identifier=[identifier] if identifier else None,
        status=status,
        statusReason=codeable(rxa, 18) if status == "not-done" else None,
        vaccineCode=vaccine,
        patient=b.patient,
        encounter=b.encounter,
        doseQuantity=_dose(rxa),
        lotNumber=rxa.get(15) or None,
        expirationDate=date_at(rxa, 16),
        manufacturer=_manufacturer(rxa),
        performer=[ImmunizationPerformer(function=coded(*_ADMINISTERING), actor=performer)]
        if performer
        else None,
        **occurrence,
    )
    b.add(immunization, identifier)


def _occurrence(rxa: Segment) -> dict[str, Any]:
    # occurrence[x] is required: a date that does not parse is kept as the text it was.
    if when := datetime_at(rxa, 3):
        return {"occurrenceDateTime": when}
    text = rxa.get(3, 1, 1)
    return {"occurrenceString": text} if text else {}


def _identifier(orc: Segment | None) -> Identifier | None:
    if orc is None:
        return None
    return ei_identifier(orc, 3, "FILL") or ei_identifier(orc, 2, "PLAC")


def _status(rxa: Segment) -> str:
    if rxa.get(21).upper() == "D":
        return "entered-in-error"
    return cm.IMMUNIZATION_STATUS.get(rxa.get(20).upper(), "completed")


def _dose(rxa: Segment) -> Quantity | None:
    amount = decimal(rxa.get(6))
    if amount is None or amount == _UNKNOWN_AMOUNT:
        return None
    return quantity(amount, rxa, 7)


def _manufacturer(rxa: Segment) -> Reference | None:
    """RXA-17 (an MVX code): a logical reference, since the manufacturer is not ours to create."""
    code, name = rxa.get(17, 1, 1), rxa.get(17, 1, 2)
    if not code and not name:
        return None
    system = cm.coding_system(rxa.get(17, 1, 3) or "MVX")
    identifier = Identifier(system=system, value=code) if code else None
    return Reference(identifier=identifier, display=name or None)
