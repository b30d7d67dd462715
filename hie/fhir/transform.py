"""``to_fhir_bundle`` and ``HL7ToFHIR``: which message types convert, and in what steps.

Every message gets its Patient (PID) and, when its PV1 describes a visit, an Encounter; then
the part its type carries: results (ORU^R01), orders (ORM^O01, OML^O21), immunizations
(VXU^V04), an appointment (SIU^S12). ADT events carry only the patient and the visit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from hie.errors import MessageError
from hie.fhir.bundle import Builder
from hie.fhir.encounter import add_encounter
from hie.fhir.immunization import add_immunizations
from hie.fhir.orders import add_orders
from hie.fhir.patient import add_patient
from hie.fhir.results import add_results
from hie.fhir.scheduling import add_appointment
from hie.hl7 import HL7Message
from hie.rules.transform import Transform

log = logging.getLogger(__name__)

_ADT = ("A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A12", "A13", "A28")

#: Message code -> the trigger events converted, and the steps after Patient and Encounter.
SUPPORTED: dict[str, tuple[frozenset[str], tuple[Callable[[Builder], None], ...]]] = {
    "ADT": (frozenset({*_ADT, "A31", "A40"}), ()),
    "ORU": (frozenset({"R01"}), (add_results,)),
    "ORM": (frozenset({"O01"}), (add_orders,)),
    "OML": (frozenset({"O21"}), (add_orders,)),
    "VXU": (frozenset({"V04"}), (add_immunizations,)),
    "SIU": (frozenset({"S12"}), (add_appointment,)),
}


def supported(msg: HL7Message) -> bool:
    """True when ``to_fhir_bundle`` converts messages of this one's type and trigger event."""
    events, _ = SUPPORTED.get(msg.message_code, (frozenset(), ()))
    return msg.trigger_event in events


def to_fhir_bundle(msg: HL7Message) -> Bundle:
    """The FHIR R4 transaction Bundle for one HL7 v2 message (see docs/hl7-to-fhir.md).

    Raises ``MessageError`` for a message type it does not convert, a message without PID,
    or resources fhir.resources refuses (the reason names the element).
    """
    if not supported(msg):
        raise MessageError(
            f"HL7ToFHIR does not convert {msg.message_type or 'untyped'} messages (control id "
            f"{msg.control_id!r}); it converts ADT^A01-A08, A11, A12, A13, A28, A31, A40, "
            "ORU^R01, ORM^O01, OML^O21, VXU^V04 and SIU^S12: route other types elsewhere"
        )
    _, steps = SUPPORTED[msg.message_code]
    msg = _with_segments(msg)
    b = Builder(msg)
    try:
        add_patient(b)
        add_encounter(b)
        for step in steps:
            step(b)
        return b.bundle()
    except ValidationError as exc:
        raise MessageError(
            f"the FHIR resources made from {msg.message_type} message {msg.control_id!r} are "
            f"not valid FHIR R4: {exc}"
        ) from exc


#: A segment start inside a one-segment message: a space, a segment id, the field separator.
_FLATTENED = re.compile(r" (?=[A-Z][A-Z0-9]{2}\|)")


def _with_segments(msg: HL7Message) -> HL7Message:
    """``msg``, or, when its segments were flattened onto one line with spaces between them (a
    copy-paste through a tool that ate the carriage returns), the message they make.

    Only a message that reads as a lone MSH is split: in any other, `` PID|`` could be field
    text, and such a message cannot convert anyway (no patient).
    """
    if msg.segment_names() != ["MSH"] or msg.delimiters.field != "|":
        return msg
    text = msg.to_er7().rstrip("\r\n")
    parts = _FLATTENED.split(text)
    if len(parts) < 2:
        return msg
    log.warning(
        "message %r has its segments on one line, separated by spaces; converting them as "
        "separate segments",
        msg.control_id,
    )
    return HL7Message("\r".join(p.rstrip() for p in parts) + "\r")


class HL7ToFHIR(Transform):
    """The built-in transform HL7 v2 -> FHIR R4 ``Bundle``; routing rules name it
    ``transform: HL7ToFHIR`` without listing it in ``transforms:``.

    Example::

        bundle = HL7ToFHIR().apply(HL7Message(er7))
        print(fhir_json(bundle))
    """

    name: str = "HL7ToFHIR"
    target_class: str = "fhir.resources.R4B.bundle:Bundle"

    def apply(self, source: Any, *, aux: Any = None) -> Bundle:
        """The Bundle for ``source``; ``MessageError`` when it does not convert."""
        if not isinstance(source, HL7Message):
            raise MessageError(
                f"HL7ToFHIR converts HL7 v2 messages, not a {type(source).__name__}; put it "
                "first among a send's transforms"
            )
        return to_fhir_bundle(source)
