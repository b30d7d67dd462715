"""OBX-5 -> Observation.value[x], by the value type in OBX-2 (the IG's segment-obx-to-observation).

NM is a valueQuantity with the units of OBX-6; ST, TX and FT a valueString (repetitions joined
by line breaks); CE, CWE, CNE, CF and IS a valueCodeableConcept; SN a valueQuantity with its
comparator, a valueRange (``1^-^5``), a valueRatio (``1^:^64``) or, for ``<>`` and ``+``, a
valueString; DT, DTM and TS a valueDateTime; TM a valueTime. A number that does not parse is
kept as a valueString and logged; a type not listed here leaves the value out, logged.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.range import Range
from fhir.resources.R4B.ratio import Ratio

from hie.fhir.dates import datetime_at, fhir_time
from hie.fhir.datatypes import codeable, decimal, quantity
from hie.fhir.segment import Segment

log = logging.getLogger(__name__)

_COMPARATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
_TEXT = frozenset({"ST", "TX", "FT"})
_CODED = frozenset({"CE", "CWE", "CNE", "CF", "IS"})
_DATES = frozenset({"DT", "DTM", "TS"})


def observation_value(obx: Segment) -> dict[str, Any]:
    """The ``value[x]`` element of one OBX as a keyword for ``Observation``, or ``{}``."""
    kind = obx.get(2, 1, 1).upper()
    if not obx.reps(5):
        return {}
    if kind == "NM":
        return _number(obx)
    if kind in _TEXT:
        text = "\n".join(t for r in obx.reps(5) if (t := obx.get(5, r)))
        return {"valueString": text} if text else {}
    if kind in _CODED:
        concept = codeable(obx, 5)
        return {"valueCodeableConcept": concept} if concept else {}
    if kind == "SN":
        return _structured_number(obx)
    if kind in _DATES:
        when = datetime_at(obx, 5)
        return {"valueDateTime": when} if when else {}
    if kind == "TM" and (time := fhir_time(obx.get(5, 1, 1))):
        return {"valueTime": time}
    log.warning(
        "%s: value type %r is not one HL7ToFHIR maps; the value is left out (message %s)",
        obx.where(5),
        kind,
        obx.msg.control_id,
    )
    return {}


def _number(obx: Segment) -> dict[str, Any]:
    text = obx.get(5, 1)
    value = decimal(text)
    if value is None:
        return _as_text(obx, text, "is not a number")
    return {"valueQuantity": quantity(value, obx, 6)}


def _structured_number(obx: Segment) -> dict[str, Any]:
    comparator, first, separator, second = (obx.get(5, 1, c) for c in (1, 2, 3, 4))
    text = " ".join(p for p in (comparator, first, separator, second) if p)
    low, high = decimal(first), decimal(second)
    if not text:
        return {}
    if comparator == "<>" or separator == "+":
        return {"valueString": _with_units(obx, text)}  # the IG's choice: no numeric form
    if low is None:
        return _as_text(obx, text, "is not a number")
    if separator in (":", "/") and high is not None:
        numerator = _quantity(low, obx, comparator)
        return {"valueRatio": Ratio(numerator=numerator, denominator=_quantity(high, obx))}
    if separator == "-" and high is not None:
        return {"valueRange": Range(low=_quantity(low, obx), high=_quantity(high, obx))}
    return {"valueQuantity": _quantity(low, obx, comparator)}


def _quantity(value: Decimal, obx: Segment, comparator: str = "") -> Quantity:
    return quantity(value, obx, 6, comparator=_COMPARATORS.get(comparator))


def _as_text(obx: Segment, text: str, problem: str) -> dict[str, Any]:
    log.warning(
        "%s %r %s; kept as valueString (message %s)",
        obx.where(5),
        text,
        problem,
        obx.msg.control_id,
    )
    return {"valueString": _with_units(obx, text)}


def _with_units(obx: Segment, text: str) -> str:
    units = obx.get(6, 1, 2) or obx.get(6, 1, 1)
    return f"{text} {units}" if units else text
