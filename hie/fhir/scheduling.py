"""SCH/TQ1/AIS of an SIU^S12 -> Appointment, per the IG's segment-sch- and segment-ais-to-
appointment maps.

Identifiers from SCH-1 (placer) and SCH-2 (filler); status ``booked`` (S12 books a new
appointment) unless SCH-25 (table 0278) says otherwise; start and end from TQ1-7/TQ1-8, else the
deprecated SCH-11 (TQ-4/TQ-5), else AIS-4 plus the AIS-7 duration; minutes from SCH-9/SCH-10;
service type AIS-3, type SCH-8, reason SCH-7; the Patient as the participant.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from fhir.resources.R4B.appointment import Appointment, AppointmentParticipant

from hie.fhir import conceptmaps as cm
from hie.fhir.bundle import Builder
from hie.fhir.dates import instant_at
from hie.fhir.datatypes import codeable, decimal, ei_identifier, some
from hie.fhir.segment import Segment, first

log = logging.getLogger(__name__)

_MINUTES = {"M": 1, "MIN": 1, "MINUTE": 1, "MINUTES": 1, "H": 60, "HR": 60, "HOUR": 60}


def add_appointment(b: Builder) -> None:
    """Add the Appointment of the SCH (the first AIS gives service type and times)."""
    sch = first(b.msg, "SCH")
    if sch is None:
        log.warning("SIU message %s has no SCH segment; no Appointment", b.msg.control_id)
        return
    ais = first(b.msg, "AIS")
    start, end = _times(b, sch, ais)
    placer, filler = ei_identifier(sch, 1, "PLAC"), ei_identifier(sch, 2, "FILL")
    if not start:
        log.warning(
            "SIU message %s gives no start (TQ1-7, SCH-11.4, AIS-4); a booked Appointment "
            "should have one",
            b.msg.control_id,
        )
    appointment = Appointment(
        identifier=some([placer, filler]),
        status=cm.APPOINTMENT_STATUS.get(sch.get(25, 1, 1).upper(), "booked"),
        serviceType=some([codeable(ais, 3)]) if ais else None,
        appointmentType=codeable(sch, 8),
        reasonCode=some([codeable(sch, 7)]),
        start=start,
        end=end,
        minutesDuration=_minutes(sch, 9, 10),
        participant=[AppointmentParticipant(actor=b.patient, status="accepted")],
    )
    b.add(appointment, filler or placer)


def _times(b: Builder, sch: Segment, ais: Segment | None) -> tuple[str | None, str | None]:
    tq1 = first(b.msg, "TQ1")
    if tq1 is not None and (start := instant_at(tq1, 7)):
        return start, instant_at(tq1, 8)
    if start := instant_at(sch, 11, comp=4, sub=1):
        return start, instant_at(sch, 11, comp=5, sub=1)
    if ais is None or not (start := instant_at(ais, 4)):
        return None, None
    minutes = _minutes(ais, 7, 8)
    return start, _plus(start, minutes) if minutes else None


def _minutes(seg: Segment, amount_field: int, units_field: int) -> int | None:
    """A duration in minutes, when its units are minutes or hours (UCUM or plain words)."""
    amount = decimal(seg.get(amount_field))
    factor = _MINUTES.get(seg.get(units_field, 1, 1).upper())
    if amount is None or factor is None:
        return None
    minutes = int(amount * Decimal(factor))
    return minutes if minutes > 0 else None  # minutesDuration is a positiveInt


def _plus(start: str, minutes: int) -> str | None:
    try:
        return (datetime.fromisoformat(start) + timedelta(minutes=minutes)).isoformat()
    except OverflowError:  # a duration past the year 9999 is a typo, not an end
        return None
