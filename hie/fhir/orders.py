"""ORC/OBR -> ServiceRequest (ORM^O01, OML^O21, and the order an ORU^R01 result answers).

Per the IG's segment-orc-to-servicerequest and segment-obr-to-servicerequest maps: placer and
filler numbers from ORC-2/ORC-3 (else OBR-2/OBR-3), status from ORC-5 (else ORC-1), intent
``order`` (``reflex-order`` when OBR-11 says G), what is ordered from OBR-4, the requester from
ORC-12 (else OBR-16).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.servicerequest import ServiceRequest

from hie.fhir import conceptmaps as cm
from hie.fhir.bundle import Builder
from hie.fhir.dates import datetime_at
from hie.fhir.datatypes import codeable, ei_identifier, some
from hie.fhir.practitioner import practitioner
from hie.fhir.segment import Segment, in_order
from hie.hl7 import HL7Message

log = logging.getLogger(__name__)


@dataclass
class OrderGroup:
    """One order: its ORC (optional in results), its OBR and the OBX under the OBR."""

    orc: Segment | None = None
    obr: Segment | None = None
    obx: list[Segment] = field(default_factory=list)


def order_groups(msg: HL7Message) -> list[OrderGroup]:
    """The orders of a message in order. An ORC starts one; an OBR joins the ORC before it,
    or starts one of its own when that ORC already has an OBR (results often omit ORC)."""
    groups: list[OrderGroup] = []
    current: OrderGroup | None = None
    for seg in in_order(msg):
        if seg.name == "ORC":
            current = OrderGroup(orc=seg)
            groups.append(current)
        elif seg.name == "OBR":
            if current is None or current.obr is not None:
                current = OrderGroup()
                groups.append(current)
            current.obr = seg
        elif seg.name == "OBX" and current is not None and current.obr is not None:
            current.obx.append(seg)
    return groups


def add_orders(b: Builder) -> None:
    """Add a ServiceRequest per ORC/OBR order (ORM^O01, OML^O21)."""
    for group in order_groups(b.msg):
        if group.obr is None:
            # An ORC without an OBR orders a medication (RXO) or only changes status: not a
            # ServiceRequest HL7ToFHIR can say what is requested of.
            log.info("ORC without OBR left out (message %s)", b.msg.control_id)
            continue
        add_service_request(b, group.obr, group.orc)


def add_service_request(b: Builder, obr: Segment, orc: Segment | None) -> Reference:
    """Add the ServiceRequest of one OBR (and its ORC); a reference to it."""
    placer, filler = order_number(obr, orc, 2, "PLAC"), order_number(obr, orc, 3, "FILL")
    requester = practitioner(b, orc, 12) if orc else None
    request = ServiceRequest(
        identifier=some([placer, filler]),
        status=_status(orc),
        intent="reflex-order" if obr.get(11).upper() == "G" else "order",
        code=codeable(obr, 4),
        subject=b.patient,
        encounter=b.encounter,
        authoredOn=datetime_at(orc, 9) if orc else None,
        requester=requester or practitioner(b, obr, 16),
    )
    # The placer number is the order's identity where it was placed; the filler's otherwise.
    return b.add(request, placer or filler)


def order_number(obr: Segment, orc: Segment | None, field: int, kind: str) -> Identifier | None:
    """The placer (field 2, ``PLAC``) or filler (field 3, ``FILL``) number: ORC's, else OBR's."""
    found = ei_identifier(orc, field, kind) if orc else None
    return found or ei_identifier(obr, field, kind)


def _status(orc: Segment | None) -> str:
    if orc is None:
        return "unknown"
    order_status = cm.ORDER_STATUS.get(orc.get(5).upper())
    return order_status or cm.ORDER_CONTROL_STATUS.get(orc.get(1).upper(), "unknown")
