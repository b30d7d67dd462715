"""PV1 -> Encounter (the IG's segment-pv1-to-encounter), with the status the event implies."""

from __future__ import annotations

import logging

from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.encounter import Encounter, EncounterLocation, EncounterParticipant
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.reference import Reference

from hie.fhir import conceptmaps as cm
from hie.fhir.bundle import Builder
from hie.fhir.dates import datetime_at
from hie.fhir.datatypes import coded, cx_identifier
from hie.fhir.practitioner import practitioner
from hie.fhir.segment import Segment, first

log = logging.getLogger(__name__)

_ATTENDER = ("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "ATND", "attender")


def add_encounter(b: Builder) -> None:
    """Add the Encounter of the PV1, when the PV1 describes a visit.

    A PV1 that only says "not applicable" (``PV1||N``, common in A28/A31 and results) describes
    none, and an Encounter made of it would be noise on the server.
    """
    pv1 = first(b.msg, "PV1")
    if pv1 is None or not _describes_visit(pv1):
        return
    patient_class = pv1.get(2, 1, 1).upper()
    identifier = cx_identifier(pv1, 19, default_type="VN")  # PV1-19 is the visit number
    start, end = datetime_at(pv1, 44), datetime_at(pv1, 45)
    attender = practitioner(b, pv1, 7)
    encounter = Encounter(
        status=_status(b, pv1, patient_class),
        class_fhir=_class(pv1, patient_class),
        identifier=[identifier] if identifier else None,
        subject=b.patient,
        period=Period(start=start, end=end) if start or end else None,
        location=_location(pv1, patient_class),
        participant=[EncounterParticipant(type=[coded(*_ATTENDER)], individual=attender)]
        if attender
        else None,
        serviceType=coded(cm.v2_table("0069"), code) if (code := pv1.get(10, 1, 1)) else None,
    )
    b.encounter = b.add(encounter, identifier)


def _describes_visit(pv1: Segment) -> bool:
    return pv1.get(2, 1, 1).upper() not in ("", "N") or any(pv1.get(f) for f in (3, 19, 44))


def _status(b: Builder, pv1: Segment, patient_class: str) -> str:
    if b.msg.message_code == "ADT" and b.msg.trigger_event in cm.TRIGGER_STATUS:
        return cm.TRIGGER_STATUS[b.msg.trigger_event]
    if pv1.get(45):
        return "finished"  # a discharge date/time: the IG's PV1-45 -> status
    return cm.CLASS_STATUS.get(patient_class, "unknown")


def _class(pv1: Segment, patient_class: str) -> Coding:
    mapped = cm.ENCOUNTER_CLASS.get(patient_class)
    if mapped is None:
        if patient_class:
            log.warning(
                "PV1-2 %r is not in table 0004; Encounter.class is 'unknown' (message %s)",
                patient_class,
                pv1.msg.control_id,
            )
        # Encounter.class is required: an unknown class is said so, not guessed.
        return Coding(system=cm.V3_NULL_FLAVOR, code="UNK", display="unknown")
    system, code, display = mapped
    return Coding(system=system, code=code, display=display)


def _location(pv1: Segment, patient_class: str) -> list[EncounterLocation] | None:
    """PV1-3 (point of care ^ room ^ bed ^ facility ...) as the display of the location.

    A Location resource per message would pile up on the server (a PL has no identifier to
    make it conditional), so the location travels as text.
    """
    text = pv1.get(3, 1, 9) or ", ".join(
        p for p in (pv1.get(3, 1, c, 1) for c in (1, 2, 3, 4)) if p
    )
    if not text:
        return None
    status = "planned" if patient_class == "P" else "active"
    return [EncounterLocation(location=Reference(display=text), status=status)]
