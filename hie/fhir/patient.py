"""PID (and MRG of a merge) -> Patient, per the IG's segment-pid-to-patient map."""

from __future__ import annotations

import logging

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.patient import Patient, PatientLink
from fhir.resources.R4B.reference import Reference

from hie.errors import MessageError
from hie.fhir import conceptmaps as cm
from hie.fhir.bundle import Builder
from hie.fhir.dates import date_at, datetime_at
from hie.fhir.datatypes import (
    address,
    coded,
    contact_point,
    cx_identifier,
    human_name,
    identifier_type,
    some,
)
from hie.fhir.segment import Segment, first

log = logging.getLogger(__name__)


def add_patient(b: Builder) -> None:
    """Add the Patient of the first PID; every other resource refers to it."""
    pid = first(b.msg, "PID")
    if pid is None:
        raise MessageError(
            f"{b.msg.message_type} message {b.msg.control_id!r} has no PID segment; HL7ToFHIR "
            "needs the patient every resource it makes refers to"
        )
    identifiers = _identifiers(pid)
    deceased = datetime_at(pid, 29)
    patient = Patient(
        identifier=identifiers,
        name=some([human_name(pid, 5, r) for r in pid.reps(5)]),
        gender=_gender(pid),
        birthDate=date_at(pid, 7),
        address=some([address(pid, 11, r) for r in pid.reps(11)]),
        telecom=some(
            [contact_point(pid, 13, r, "home") for r in pid.reps(13)]
            + [contact_point(pid, 14, r, "work") for r in pid.reps(14)]
        ),
        maritalStatus=_marital_status(pid),
        deceasedDateTime=deceased,
        deceasedBoolean=None if deceased else cm.YES_NO.get(pid.get(30).upper()),
        link=_replaced(b),
    )
    # The condition is the first identifier with a system: PID-3 comes first, as it leads.
    key = next((i for i in identifiers or [] if i.system), None)
    b.patient = b.add(patient, key)


def _identifiers(pid: Segment) -> list[Identifier] | None:
    found = [cx_identifier(pid, f, r) for f in (3, 2, 4) for r in pid.reps(f)]
    if ssn := pid.get(19):
        found.append(
            Identifier(
                value=ssn,
                system="http://hl7.org/fhir/sid/us-ssn",
                type=identifier_type("SS"),
            )
        )
    return some(found)


def _gender(pid: Segment) -> str | None:
    code = pid.get(8, 1, 1).upper()
    gender = cm.GENDER.get(code)
    if code and gender is None:
        log.warning(
            "PID-8 %r is not in table 0001; gender left out (message %s)", code, pid.msg.control_id
        )
    return gender


def _marital_status(pid: Segment) -> CodeableConcept | None:
    code = pid.get(16, 1, 1).upper()
    if not code:
        return None
    system, target = cm.MARITAL_STATUS.get(code, (cm.v2_table("0002"), code))
    return coded(system, target)


def _replaced(b: Builder) -> list[PatientLink] | None:
    """A merge (A40): the surviving patient replaces the one each MRG-1 identifier names.

    The replaced record is referred to by identifier: it is the server's to find, and a
    conditional create here would bring it back to life.
    """
    mrg = first(b.msg, "MRG")
    if mrg is None:
        return None
    links = [
        PatientLink(other=Reference(identifier=old, type="Patient"), type="replaces")
        for r in mrg.reps(1)
        if (old := cx_identifier(mrg, 1, r)) is not None
    ]
    return links or None
