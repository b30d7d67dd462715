"""OBR/OBX of an ORU^R01 -> Observation per OBX and a DiagnosticReport per OBR.

Per the IG's segment-obx-to-observation and segment-obr-to-diagnosticreport maps. The report
lists its Observations in ``result`` and, when the order has an ORC, the ServiceRequest it
answers in ``basedOn``.
"""

from __future__ import annotations

import logging
import re

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation, ObservationReferenceRange
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.reference import Reference

from hie.fhir import conceptmaps as cm
from hie.fhir.bundle import Builder
from hie.fhir.dates import datetime_at, instant_at
from hie.fhir.datatypes import codeable, coded, decimal, quantity, some
from hie.fhir.orders import add_service_request, order_groups, order_number
from hie.fhir.segment import Segment
from hie.fhir.values import observation_value

log = logging.getLogger(__name__)

_NUMBER = r"-?\d+(?:\.\d+)?"
_BETWEEN = re.compile(rf"\s*({_NUMBER})\s*-\s*({_NUMBER})\s*")
_BOUND = re.compile(rf"\s*(<=?|>=?)\s*({_NUMBER})\s*")


def add_results(b: Builder) -> None:
    """Add the Observations, DiagnosticReport and (with an ORC) ServiceRequest of each OBR."""
    for group in order_groups(b.msg):
        if group.obr is None:
            continue
        based_on = add_service_request(b, group.obr, group.orc) if group.orc else None
        results = [add_observation(b, obx, group.obr) for obx in group.obx]
        _add_report(b, group.obr, group.orc, some(results), based_on)


def add_observation(b: Builder, obx: Segment, obr: Segment | None) -> Reference | None:
    """Add the Observation of one OBX; None when OBX-3 does not say what was observed."""
    code = codeable(obx, 3)
    if code is None:
        log.warning(
            "%s is empty: an Observation needs a code; OBX left out (message %s)",
            obx.where(3),
            obx.msg.control_id,
        )
        return None
    observation = Observation(
        status=cm.OBSERVATION_STATUS.get(obx.get(11).upper(), "unknown"),
        code=code,
        subject=b.patient,
        encounter=b.encounter,
        effectiveDateTime=datetime_at(obx, 14) or (datetime_at(obr, 7) if obr else None),
        referenceRange=_reference_range(obx),
        interpretation=some([_interpretation(obx, r) for r in obx.reps(8)]),
        **observation_value(obx),
    )
    return b.add(observation)


def _reference_range(obx: Segment) -> list[ObservationReferenceRange] | None:
    """OBX-7 as text (the IG), with low/high when it reads ``a-b``, ``<b``, ``>a``."""
    text = obx.get(7)
    if not text:
        return None
    low = high = None
    if between := _BETWEEN.fullmatch(text):
        low, high = decimal(between[1]), decimal(between[2])
    elif bound := _BOUND.fullmatch(text):
        value = decimal(bound[2])
        low, high = (value, None) if bound[1].startswith(">") else (None, value)
    return [
        ObservationReferenceRange(
            low=quantity(low, obx, 6) if low is not None else None,
            high=quantity(high, obx, 6) if high is not None else None,
            text=text,
        )
    ]


def _interpretation(obx: Segment, rep: int) -> CodeableConcept | None:
    """One OBX-8 flag: v3 ObservationInterpretation when table 0078 maps it, else v2-0078."""
    code = obx.get(8, rep, 1)
    if not code:
        return None
    system = cm.V3_INTERPRETATION if code.upper() in cm.INTERPRETATION else cm.v2_table("0078")
    return coded(system, code.upper())


def _add_report(
    b: Builder,
    obr: Segment,
    orc: Segment | None,
    results: list[Reference] | None,
    based_on: Reference | None,
) -> None:
    code = codeable(obr, 4)
    if code is None:
        log.warning(
            "%s is empty: a DiagnosticReport needs a code; only its Observations are kept "
            "(message %s)",
            obr.where(4),
            obr.msg.control_id,
        )
        return
    placer, filler = order_number(obr, orc, 2, "PLAC"), order_number(obr, orc, 3, "FILL")
    start, end = datetime_at(obr, 7), datetime_at(obr, 8)
    report = DiagnosticReport(
        identifier=some([filler, placer]),
        basedOn=[based_on] if based_on else None,
        status=cm.REPORT_STATUS.get(obr.get(25).upper(), "unknown"),
        category=[coded(cm.v2_table("0074"), section)] if (section := obr.get(24)) else None,
        code=code,
        subject=b.patient,
        encounter=b.encounter,
        effectiveDateTime=start if not end else None,
        effectivePeriod=Period(start=start, end=end) if end else None,
        issued=instant_at(obr, 22),
        result=results,
    )
    # The filler (the lab) numbers its reports; the placer's number is the fallback.
    b.add(report, filler or placer)
