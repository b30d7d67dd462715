"""HL7 v2 code tables mapped to FHIR codes, as the HL7 v2-to-FHIR IG's ConceptMaps say.

Each map names the IG ConceptMap it copies (http://hl7.org/fhir/uv/v2mappings/ConceptMap/<id>).
Codes the IG leaves unmatched, and tables it has no ConceptMap for, are marked *local*: the
choice made here, also listed in docs/hl7-to-fhir.md. A code no map knows maps to None, and the
mapper leaves the element out (or keeps the v2 code under its own v2 table system).
"""

from __future__ import annotations

from urllib.parse import quote

_URI_SAFE = ":/?#[]@!$&'()*+,;=%~"

V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V3_MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
V3_NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
UCUM = "http://unitsofmeasure.org"


def v2_table(table: str) -> str:
    """The FHIR system of an HL7 v2 table, for example ``v2_table("0203")``."""
    return f"http://terminology.hl7.org/CodeSystem/v2-{table}"


#: PID-8 (table 0001) -> Patient.gender: table-hl70001-to-administrative-gender.
GENDER = {"F": "female", "M": "male", "O": "other", "U": "unknown", "A": "other", "N": "other"}

#: PV1-2 (table 0004) -> Encounter.class: table-hl70004-to-v3-actcode. Codes without a v3 ActCode
#: stay v2-0004 codes, as the IG's second group says.
ENCOUNTER_CLASS = {
    "E": (V3_ACT_CODE, "EMER", "emergency"),
    "I": (V3_ACT_CODE, "IMP", "inpatient encounter"),
    "O": (V3_ACT_CODE, "AMB", "ambulatory"),
    "P": (V3_ACT_CODE, "PRENC", "pre-admission"),
    "R": (v2_table("0004"), "R", "Recurring patient"),
    "B": (v2_table("0004"), "B", "Obstetrics"),
    "C": (v2_table("0004"), "C", "Commercial Account"),
    "N": (v2_table("0004"), "N", "Not Applicable"),
    "U": (v2_table("0004"), "U", "Unknown"),
}

#: PV1-2 (table 0004) -> Encounter.status: table-hl70004-to-encounter-status.
CLASS_STATUS = {
    "E": "in-progress",
    "I": "in-progress",
    "O": "in-progress",
    "P": "planned",
    "R": "in-progress",
    "B": "in-progress",
    "C": "in-progress",
    "N": "in-progress",
    "U": "unknown",
}

#: Y/N (table 0136: PID-30) -> boolean: table-hl70136-to-special-values.
YES_NO = {"Y": True, "N": False}

#: MSH-9.2 -> Encounter.status, *local*: the event says what happened to the visit, which is
#: better evidence than the patient class. Events not listed (A08, A28, ...) use PV1-45 and PV1-2.
TRIGGER_STATUS = {
    "A01": "in-progress",
    "A02": "in-progress",
    "A03": "finished",
    "A04": "in-progress",
    "A05": "planned",
    "A06": "in-progress",
    "A07": "in-progress",
    "A11": "cancelled",
    "A12": "in-progress",
    "A13": "in-progress",
    "A14": "planned",
}

#: PID-16 (table 0002) -> Patient.maritalStatus: table-hl70002-to-v3-maritalstatus.
MARITAL_STATUS = {
    "A": (V3_MARITAL, "L"),
    "D": (V3_MARITAL, "D"),
    "M": (V3_MARITAL, "M"),
    "S": (V3_MARITAL, "S"),
    "W": (V3_MARITAL, "W"),
    "C": (V3_MARITAL, "C"),
    "G": (V3_MARITAL, "T"),
    "P": (V3_MARITAL, "T"),
    "R": (V3_MARITAL, "T"),
    "E": (V3_MARITAL, "L"),
    "N": (V3_MARITAL, "A"),
    "I": (V3_MARITAL, "I"),
    "B": (V3_MARITAL, "U"),
    "U": (V3_NULL_FLAVOR, "UNK"),
    "O": (V3_NULL_FLAVOR, "OTH"),
    "T": (V3_NULL_FLAVOR, "NAVU"),
}

#: OBX-8 (table 0078) -> Observation.interpretation: table-hl70078-to-v3-observationinterpretation
#: maps each code to the same code in v3 ObservationInterpretation. AC, HM, OBX, QCF and TOX are
#: unmatched there and stay v2-0078 codes.
INTERPRETATION = frozenset(
    "< > A AA B CAR D DET E EX EXP H HH HU I IE IND L LL LU MS N NCL ND NEG NR NS POS R RR S "
    "SDD SYN-R SYN-S U VS UNE W WR".split()
)

#: OBX-11 (table 0085) -> Observation.status: table-hl70085-to-observation-status; B, I, N, O, R,
#: S, U and V are unmatched in the IG and *local* here.
OBSERVATION_STATUS = {
    "A": "amended",
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "P": "preliminary",
    "X": "cancelled",
    "W": "entered-in-error",
    "B": "amended",
    "I": "registered",
    "N": "cancelled",
    "O": "registered",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "V": "final",
}

#: OBR-25 (table 0123) -> DiagnosticReport.status: table-hl70123-queries-to-diagnostic-report-
#: status; A, M and N are unmatched in the IG and *local* here.
REPORT_STATUS = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "P": "preliminary",
    "C": "corrected",
    "R": "partial",
    "F": "final",
    "X": "cancelled",
    "A": "partial",
    "M": "partial",
    "N": "registered",
}

#: ORC-1 (table 0119) -> ServiceRequest.status when ORC-5 is empty: table-hl70119-to-request-status.
ORDER_CONTROL_STATUS = {
    "AF": "active",
    "CA": "active",
    "CR": "revoked",
    "DC": "revoked",
    "DF": "revoked",
    "DR": "revoked",
    "FU": "completed",
    "HD": "active",
    "HR": "on-hold",
    "NW": "active",
    "OC": "revoked",
    "OD": "revoked",
    "OH": "on-hold",
    "OK": "active",
    "PR": "active",
    "PY": "active",
    "RL": "active",
    "RO": "active",
    "RQ": "active",
}

#: ORC-5 (table 0038) -> ServiceRequest.status, *local*: the IG leaves ORC-5 unmapped.
ORDER_STATUS = {
    "A": "active",
    "CA": "revoked",
    "CM": "completed",
    "DC": "revoked",
    "ER": "entered-in-error",
    "HD": "on-hold",
    "IP": "active",
    "RP": "revoked",
    "SC": "active",
}

#: RXA-20 (table 0322) -> Immunization.status: table-hl70322-to-event-status.
IMMUNIZATION_STATUS = {"CP": "completed", "PA": "completed", "RE": "not-done", "NA": "not-done"}

#: SCH-25 (table 0278) -> Appointment.status: table-hl70278-to-appointmentstatus.
APPOINTMENT_STATUS = {
    "PENDING": "pending",
    "WAITLIST": "waitlist",
    "BOOKED": "booked",
    "STARTED": "checked-in",
    "COMPLETE": "fulfilled",
    "CANCELLED": "cancelled",
    "DELETED": "entered-in-error",
    "NOSHOW": "noshow",
}

#: XAD-7 (table 0190) -> Address.use: table-hl70190-to-address-use.
ADDRESS_USE = {"BA": "old", "BI": "billing", "C": "temp", "B": "work", "H": "home", "O": "work"}
#: XAD-7 (table 0190) -> Address.type: table-hl70190-to-address-type.
ADDRESS_TYPE = {"M": "postal", "SH": "postal"}

#: XPN-7 (table 0200) -> HumanName.use: table-hl70200-to-name-use.
NAME_USE = {
    "BAD": "old",
    "D": "usual",
    "L": "official",
    "M": "maiden",
    "MSK": "anonymous",
    "N": "nickname",
    "NAV": "temp",
    "R": "official",
    "TEMP": "temp",
}

#: XTN-2 (table 0201) -> ContactPoint.use: table-hl70201-to-contact-point-use.
TELECOM_USE = {"PRN": "home", "WPN": "work", "PRS": "mobile"}
#: XTN-3 (table 0202) -> ContactPoint.system: table-hl70202-to-contact-point-system (CP is a
#: phone whose use is mobile, the IG's second group).
TELECOM_SYSTEM = {
    "PH": "phone",
    "CP": "phone",
    "FX": "fax",
    "MD": "other",
    "SAT": "other",
    "BP": "pager",
    "INTERNET": "email",
    "X.400": "email",
    "TDD": "other",
    "TTY": "other",
}

#: Coding system names (table 0396) -> FHIR system URIs, for the systems HL7 v2 feeds use most.
CODING_SYSTEMS = {
    "LN": "http://loinc.org",
    "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "SNOMED": "http://snomed.info/sct",
    "SNOMED-CT": "http://snomed.info/sct",
    "UCUM": UCUM,
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "MVX": "http://hl7.org/fhir/sid/mvx",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "CDCREC": "urn:oid:2.16.840.1.113883.6.238",
}


def coding_system(name: str) -> str | None:
    """The FHIR system for a v2 coding system name (CWE-3): table 0396 names, ``HL7nnnn`` as the
    v2 table, a URI or OID as given, anything else as ``urn:id:<name>`` so it stays a URI."""
    if not name:
        return None
    known = CODING_SYSTEMS.get(name.upper())
    if known:
        return known
    upper = name.upper()
    if upper.startswith("HL7") and upper[3:].lstrip("-").isdigit():
        return v2_table(upper[3:].lstrip("-").zfill(4))
    return local_uri(name)


def local_uri(name: str) -> str:
    """A URI for a name that is not one: an OID becomes ``urn:oid:``, a URI stays itself."""
    if name.startswith(("urn:", "http://", "https://")):
        return quote(name, safe=_URI_SAFE)  # only to escape what a URI cannot hold
    if all(part.isdigit() for part in name.split(".")) and "." in name:
        return f"urn:oid:{name}"
    return f"urn:id:{quote(name, safe='')}"
