"""HL7 v2 -> FHIR: ``HL7ToFHIR``, a built-in transform that turns a message into a FHIR
transaction ``Bundle``, and ``fhir_json`` to send one.

The resources are fhir.resources models from its ``fhir.resources.R4B`` package: FHIR R4B, the
release compatible with R4 (the package's top-level models are R5). Each resource is validated
as it is built, so a Bundle that leaves ``to_fhir_bundle`` is valid FHIR. What maps to what,
and what is left out, is documented in docs/hl7-to-fhir.md.

Modules: ``segment`` (reading a segment by field number), ``dates`` and ``datatypes`` (v2 data
types), ``conceptmaps`` (code tables), one per resource family (``patient``, ``encounter``,
``practitioner``, ``orders``, ``results`` with ``values``, ``immunization``, ``scheduling``),
``bundle`` (entries, conditional creates, JSON) and ``transform`` (which types convert).
"""

from __future__ import annotations

from hie.fhir.bundle import fhir_json
from hie.fhir.transform import HL7ToFHIR, supported, to_fhir_bundle

__all__ = ["HL7ToFHIR", "fhir_json", "supported", "to_fhir_bundle"]
