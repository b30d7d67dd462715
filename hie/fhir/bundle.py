"""One FHIR transaction Bundle in the making, and ``fhir_json`` for sending one.

Every entry is POSTed under a ``urn:uuid:`` fullUrl that the other entries reference, so the
server resolves the references when it commits the transaction. An entry whose resource has an
identifier with a system is a conditional create (``ifNoneExist: identifier=system|value``):
a patient or order the server already holds is referenced, not created twice. Two entries with
the same condition would both create (neither exists yet when the server looks), so the second
is folded into the first.
"""

from __future__ import annotations

from urllib.parse import quote
from uuid import uuid4

from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from fhir_core.fhirabstractmodel import FHIRAbstractModel

from hie.errors import MessageError
from hie.hl7 import HL7Message


class Builder:
    """The entries of one Bundle, and the patient and encounter the mappers refer to."""

    def __init__(self, msg: HL7Message) -> None:
        self.msg = msg
        self.patient: Reference | None = None
        self.encounter: Reference | None = None
        self._entries: list[BundleEntry] = []
        self._conditional: dict[tuple[str, str], str] = {}

    def add(self, resource: Resource, identifier: Identifier | None = None) -> Reference:
        """Add ``resource`` (conditional on ``identifier`` when it has a system); a reference to
        its entry, or to the entry already added under the same condition."""
        kind = resource.get_resource_type()
        condition = if_none_exist(identifier)
        if condition is not None and (kind, condition) in self._conditional:
            return Reference(reference=self._conditional[(kind, condition)])
        url = f"urn:uuid:{uuid4()}"
        request = BundleEntryRequest(method="POST", url=kind, ifNoneExist=condition)
        self._entries.append(BundleEntry(fullUrl=url, resource=resource, request=request))
        if condition is not None:
            self._conditional[(kind, condition)] = url
        return Reference(reference=url)

    def bundle(self) -> Bundle:
        """The transaction Bundle of every entry added, validated by fhir.resources."""
        return Bundle(type="transaction", entry=self._entries or None)


def if_none_exist(identifier: Identifier | None) -> str | None:
    """``identifier=system|value`` for a conditional create; None without system or value.

    A value alone would match that value in any system, another patient's MRN included.
    """
    if identifier is None or not identifier.system or not identifier.value:
        return None
    token = f"{_escape(identifier.system)}|{_escape(identifier.value)}"
    return f"identifier={quote(token, safe=':/|')}"


def _escape(text: str) -> str:
    # FHIR search: a literal \ | , or $ in a token is preceded by a backslash.
    for char in "\\|,$":
        text = text.replace(char, "\\" + char)
    return text


def fhir_json(body: object) -> str:
    """FHIR JSON for a fhir.resources model (a ``Bundle`` from ``HL7ToFHIR``): ``resourceType``
    included, no nulls, element names as FHIR spells them. For an operation that POSTs it."""
    if not isinstance(body, FHIRAbstractModel):
        raise MessageError(
            f"a {type(body).__name__} is not a FHIR resource; fhir_json needs a fhir.resources "
            "model, such as the Bundle HL7ToFHIR makes"
        )
    return body.model_dump_json()
