"""HL7ToFHIR: each supported message type becomes a valid FHIR R4 transaction Bundle whose
resources carry the values of the fields they map, with conditional creates and references
that resolve inside the Bundle."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from hypothesis import given
from hypothesis import strategies as st

from hie.errors import ConfigError, MessageError
from hie.fhir import HL7ToFHIR, fhir_json, to_fhir_bundle
from hie.fhir.dates import fhir_datetime, parse_hl7
from hie.hl7 import HL7Message
from hie.hosts.router import RoutingEngine, RoutingSettings, compile_routing
from hie.messages import Envelope, decode_body, encode_body
from hie.production import Item, Production

# -- building messages: fields by number, so each test says which field it means ---------------


def seg(name: str, fields: dict[int, str]) -> str:
    """One segment with ``fields`` at their numbers (the rest empty)."""
    values = [fields.get(n, "") for n in range(1, max(fields) + 1)]
    return "|".join([name, *values])


def message(kind: str, *segments: str, control: str = "C1", ts: str = "20240102103000+0100") -> str:
    msh = f"MSH|^~\\&|SEND|FAC|RECV|FAC|{ts}||{kind}|{control}|P|2.5.1"
    return "\r".join([msh, *segments]) + "\r"


PID_FIELDS = {
    1: "1",
    3: "123^^^HOSP&1.2.3&ISO^MR~N456^^^NHS",
    5: "Doe&van^John^Quincy^Jr^Dr^^L~Jo^^^^^^N",
    7: "19800102",
    8: "F",
    11: "1 Main St^Apt 2^Springfield^IL^62701^USA^H",
    13: "^PRN^PH^^1^217^5551234~^NET^Internet^john@example.org",
    14: "^WPN^PH^^^217^5559876^12",
    16: "M",
}
PID = seg("PID", PID_FIELDS)
PV1 = seg(
    "PV1",
    {
        1: "1",
        2: "I",
        3: "4E^401^B^MAIN",
        7: "1234^Smith^Ann^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO",
        10: "MED",
        19: "V100^^^HOSP",
        44: "202401020900",
    },
)
ADT_A01 = message("ADT^A01^ADT_A01", "EVN|A01|20240102103000", PID, PV1)

ORC_RE = seg(
    "ORC",
    {
        1: "RE",
        2: "P100^EHR",
        3: "F200^LAB",
        12: "1234^Smith^Ann^^^^^^NPI&2.16.840.1.113883.4.6&ISO",
    },
)
OBR = seg(
    "OBR",
    {
        1: "1",
        2: "P100^EHR",
        3: "F200^LAB",
        4: "24323-8^Metabolic panel^LN",
        7: "20240102080000",
        22: "20240102100000",
        24: "CH",
        25: "F",
    },
)
OBX_NM = seg(
    "OBX",
    {
        1: "1",
        2: "NM",
        3: "2345-7^Glucose^LN",
        5: "105.50",
        6: "mg/dL^milligram per deciliter^UCUM",
        7: "70-99",
        8: "H",
        11: "F",
        14: "20240102081500",
    },
)
OBX_ST = seg("OBX", {1: "2", 2: "ST", 3: "8251-1^Comment^LN", 5: "hemolysed", 11: "P"})
OBX_TX = seg("OBX", {1: "3", 2: "TX", 3: "11488-4^Note^LN", 5: "line one~line two", 11: "F"})
OBX_CE = seg("OBX", {1: "4", 2: "CE", 3: "600-7^Culture^LN", 5: "3092008^S aureus^SCT", 11: "C"})
OBX_CWE = seg(
    "OBX",
    {1: "5", 2: "CWE", 3: "94500-6^SARS-CoV-2^LN", 5: "260373001^Detected^SCT", 8: "A~AA", 11: "F"},
)
OBX_SN_LT = seg("OBX", {1: "6", 2: "SN", 3: "1988-5^CRP^LN", 5: "<^5", 6: "mg/L^^UCUM", 11: "F"})
OBX_SN_RATIO = seg("OBX", {1: "7", 2: "SN", 3: "5370-2^Titer^LN", 5: "^1^:^64", 11: "F"})
OBX_SN_RANGE = seg("OBX", {1: "8", 2: "SN", 3: "5811-5^Cells^LN", 5: "^2^-^8", 6: "/[HPF]^^UCUM"})
OBX_DT = seg("OBX", {1: "9", 2: "DT", 3: "11368-8^Onset^LN", 5: "20231224", 11: "F"})
OBX_FT = seg("OBX", {1: "10", 2: "FT", 3: "18842-5^Summary^LN", 5: "See \\T\\ note", 11: "X"})
ORU_R01 = message(
    "ORU^R01^ORU_R01",
    PID,
    PV1,
    ORC_RE,
    OBR,
    OBX_NM,
    OBX_ST,
    OBX_TX,
    OBX_CE,
    OBX_CWE,
    OBX_SN_LT,
    OBX_SN_RATIO,
    OBX_SN_RANGE,
    OBX_DT,
    OBX_FT,
    control="R1",
)

ORC_NW = seg(
    "ORC",
    {
        1: "NW",
        2: "ORD77^EHR",
        3: "LAB88^LAB",
        5: "IP",
        9: "20240102091500",
        12: "1234^Smith^Ann^^^^^^NPI&2.16.840.1.113883.4.6&ISO",
    },
)
OBR_ORDER = seg("OBR", {1: "1", 2: "ORD77^EHR", 4: "58410-2^CBC panel^LN"})
ORM_O01 = message("ORM^O01", PID, PV1, ORC_NW, OBR_ORDER, control="O1")
OML_O21 = message(
    "OML^O21^OML_O21",
    PID,
    seg("ORC", {1: "NW", 2: "ORD78^EHR"}),
    seg("OBR", {1: "1", 2: "ORD78^EHR", 4: "2345-7^Glucose^LN", 11: "G"}),
    control="O2",
)

RXA = seg(
    "RXA",
    {
        1: "0",
        2: "1",
        3: "20240105103000",
        5: "208^COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose^CVX",
        6: "0.3",
        7: "mL^milliliter^UCUM",
        10: "77^Nurse^Nina",
        15: "LOT123",
        16: "20241231",
        17: "PFR^Pfizer, Inc^MVX",
        20: "CP",
    },
)
VXU_V04 = message(
    "VXU^V04^VXU_V04",
    PID,
    seg("ORC", {1: "RE", 3: "IMM-9^IIS"}),
    RXA,
    seg("RXR", {1: "C28161^Intramuscular^NCIT"}),
    control="V1",
)

SCH = seg("SCH", {1: "A10^EHR", 2: "S20^SCHED", 7: "FU^Follow-up", 25: "Booked"})
AIS = seg("AIS", {1: "1", 3: "45^Cardiology consult^L", 4: "20240110140000", 7: "30", 8: "min"})
SIU_S12 = message("SIU^S12^SIU_S12", SCH, PID, seg("RGS", {1: "1"}), AIS, control="S1")

ALL = {
    "ADT^A01": ADT_A01,
    "ORU^R01": ORU_R01,
    "ORM^O01": ORM_O01,
    "OML^O21": OML_O21,
    "VXU^V04": VXU_V04,
    "SIU^S12": SIU_S12,
}


# -- reading Bundles ---------------------------------------------------------------------------


def convert(er7: str) -> dict[str, Any]:
    """The Bundle as the FHIR JSON it travels as (what a server would read)."""
    bundle = to_fhir_bundle(HL7Message(er7))
    assert isinstance(bundle, Bundle)
    doc: dict[str, Any] = json.loads(fhir_json(bundle))
    return doc


def resources(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == kind]


def entry(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    """The one entry of a resource type (unpacking fails if there are none or several)."""
    (found,) = [e for e in doc["entry"] if e["resource"]["resourceType"] == kind]
    return dict(found)


def one(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    return dict(entry(doc, kind)["resource"])


def references(node: Any) -> list[str]:
    """Every ``reference`` string anywhere in a JSON tree."""
    if isinstance(node, dict):
        own = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return own + [r for v in node.values() for r in references(v)]
    if isinstance(node, list):
        return [r for v in node for r in references(v)]
    return []


def empties(node: Any, where: str = "") -> list[str]:
    """Paths of empty strings, lists and objects (FHIR forbids all three)."""
    if node in ("", [], {}, None):
        return [where]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in empties(v, f"{where}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in empties(v, f"{where}[{i}]")]
    return []


# -- Patient -----------------------------------------------------------------------------------


def test_patient_carries_identifiers_names_birth_date_gender_address_and_telecom() -> None:
    patient = one(convert(ADT_A01), "Patient")

    mrn, nhs = patient["identifier"]
    assert (mrn["value"], mrn["system"]) == ("123", "urn:oid:1.2.3")  # PID-3.1, PID-3.4.2 (ISO)
    assert mrn["type"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
        "code": "MR",
    }
    assert (nhs["value"], nhs["system"]) == ("N456", "urn:id:NHS")  # a namespace alone
    official, nickname = patient["name"]
    assert official == {
        "use": "official",
        "family": "Doe",
        "given": ["John", "Quincy"],
        "prefix": ["Dr"],
        "suffix": ["Jr"],
    }
    assert nickname == {"use": "nickname", "family": "Jo"}
    assert patient["birthDate"] == "1980-01-02"
    assert patient["gender"] == "female"
    assert patient["address"] == [
        {
            "use": "home",
            "line": ["1 Main St", "Apt 2"],
            "city": "Springfield",
            "state": "IL",
            "postalCode": "62701",
            "country": "USA",
        }
    ]
    assert patient["telecom"] == [
        {"system": "phone", "value": "+1 217 5551234", "use": "home"},
        {"system": "email", "value": "john@example.org"},
        {"system": "phone", "value": "217 5559876 X12", "use": "work"},
    ]
    assert patient["maritalStatus"]["coding"][0]["code"] == "M"


@pytest.mark.parametrize(
    ("pid7", "birth_date"),
    [
        ("1980", "1980"),
        ("198005", "1980-05"),
        ("19800512", "1980-05-12"),
        ("198005121030", "1980-05-12"),
        ("19800512103015.25-0500", "1980-05-12"),
    ],
)
def test_birth_date_keeps_the_precision_pid7_has(pid7: str, birth_date: str) -> None:
    er7 = ADT_A01.replace("|19800102|", f"|{pid7}|")
    assert one(convert(er7), "Patient")["birthDate"] == birth_date


@pytest.mark.parametrize(
    ("pid8", "gender"),
    [("M", "male"), ("F", "female"), ("O", "other"), ("U", "unknown"), ("A", "other")],
)
def test_gender_follows_the_table_0001_concept_map(pid8: str, gender: str) -> None:
    er7 = ADT_A01.replace("|19800102|F|", f"|19800102|{pid8}|")
    assert one(convert(er7), "Patient")["gender"] == gender


def test_a_gender_outside_table_0001_is_left_out_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    er7 = ADT_A01.replace("|19800102|F|", "|19800102|Q|")
    with caplog.at_level(logging.WARNING, logger="hie.fhir"):
        patient = one(convert(er7), "Patient")
    assert "gender" not in patient
    assert "PID-8 'Q' is not in table 0001" in caplog.text


def test_deceased_and_a_merge_link_to_the_replaced_patient() -> None:
    pid = seg("PID", {**PID_FIELDS, 29: "20240301120000+0100", 30: "Y"})
    er7 = message("ADT^A40^ADT_A39", pid, seg("MRG", {1: "OLD9^^^HOSP&1.2.3&ISO^MR"}))
    doc = convert(er7)
    patient = one(doc, "Patient")
    assert patient["deceasedDateTime"] == "2024-03-01T12:00:00+01:00"
    assert patient["link"] == [
        {
            "other": {
                "type": "Patient",
                "identifier": {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                "code": "MR",
                            }
                        ]
                    },
                    "system": "urn:oid:1.2.3",
                    "value": "OLD9",
                },
            },
            "type": "replaces",
        }
    ]
    assert resources(doc, "Encounter") == []  # no PV1


# -- Encounter ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "patient_class", "discharged", "status", "code"),
    [
        ("A01", "I", "", "in-progress", "IMP"),
        ("A04", "O", "", "in-progress", "AMB"),
        ("A04", "E", "", "in-progress", "EMER"),
        ("A05", "P", "", "planned", "PRENC"),
        ("A03", "I", "202401051200", "finished", "IMP"),
        ("A11", "I", "", "cancelled", "IMP"),
        ("A08", "I", "202401051200", "finished", "IMP"),
        ("A08", "I", "", "in-progress", "IMP"),
        ("A08", "P", "", "planned", "PRENC"),
    ],
)
def test_encounter_class_and_status(
    trigger: str, patient_class: str, discharged: str, status: str, code: str
) -> None:
    pv1 = PV1.replace("|I|", f"|{patient_class}|", 1) + ("|" + discharged if discharged else "")
    encounter = one(convert(message(f"ADT^{trigger}", PID, pv1)), "Encounter")
    assert encounter["status"] == status
    assert encounter["class"]["code"] == code
    assert encounter["class"]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    if discharged:
        assert encounter["period"]["end"] == "2024-01-05T12:00:00+01:00"


def test_encounter_identifier_period_location_and_attending_doctor() -> None:
    doc = convert(ADT_A01)
    encounter = one(doc, "Encounter")
    (visit,) = encounter["identifier"]
    assert (visit["value"], visit["system"]) == ("V100", "urn:id:HOSP")
    assert visit["type"]["coding"][0]["code"] == "VN"
    assert encounter["period"] == {"start": "2024-01-02T09:00:00+01:00"}  # MSH-7's offset
    assert encounter["location"][0]["location"] == {"display": "4E, 401, B, MAIN"}
    assert encounter["serviceType"]["coding"][0]["code"] == "MED"
    doctor = entry(doc, "Practitioner")
    assert encounter["participant"][0]["individual"]["reference"] == doctor["fullUrl"]
    assert doctor["resource"]["name"][0]["family"] == "Smith"


def test_a_pv1_that_says_not_applicable_makes_no_encounter() -> None:
    doc = convert(message("ADT^A28^ADT_A05", PID, "PV1|1|N"))
    assert resources(doc, "Encounter") == []
    assert len(resources(doc, "Patient")) == 1


# -- results -----------------------------------------------------------------------------------


def observation(doc: dict[str, Any], loinc: str) -> dict[str, Any]:
    (found,) = [o for o in resources(doc, "Observation") if o["code"]["coding"][0]["code"] == loinc]
    return found


def test_numeric_result_with_ucum_units_range_and_flag() -> None:
    glucose = observation(convert(ORU_R01), "2345-7")
    assert glucose["valueQuantity"] == {
        "value": 105.5,
        "unit": "milligram per deciliter",
        "system": "http://unitsofmeasure.org",
        "code": "mg/dL",
    }
    (reference_range,) = glucose["referenceRange"]
    assert reference_range["text"] == "70-99"
    assert reference_range["low"]["value"] == 70 and reference_range["high"]["value"] == 99
    assert reference_range["low"]["code"] == "mg/dL"
    assert glucose["interpretation"] == [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                    "code": "H",
                }
            ]
        }
    ]
    assert glucose["status"] == "final"
    assert glucose["effectiveDateTime"] == "2024-01-02T08:15:00+01:00"  # OBX-14


def test_units_without_ucum_are_unit_text_only() -> None:
    er7 = ORU_R01.replace("mg/dL^milligram per deciliter^UCUM", "mg/dL")
    assert observation(convert(er7), "2345-7")["valueQuantity"] == {"value": 105.5, "unit": "mg/dL"}


def test_text_coded_date_and_status_values() -> None:
    doc = convert(ORU_R01)
    comment = observation(doc, "8251-1")
    assert comment["valueString"] == "hemolysed"
    assert comment["status"] == "preliminary"
    assert comment["effectiveDateTime"] == "2024-01-02T08:00:00+01:00"  # no OBX-14: OBR-7
    assert observation(doc, "11488-4")["valueString"] == "line one\nline two"
    assert observation(doc, "18842-5")["valueString"] == "See & note"
    assert observation(doc, "18842-5")["status"] == "cancelled"
    culture = observation(doc, "600-7")
    assert culture["status"] == "corrected"
    assert culture["valueCodeableConcept"]["coding"] == [
        {"system": "http://snomed.info/sct", "code": "3092008", "display": "S aureus"}
    ]
    covid = observation(doc, "94500-6")
    assert covid["valueCodeableConcept"]["coding"][0]["code"] == "260373001"
    assert [i["coding"][0]["code"] for i in covid["interpretation"]] == ["A", "AA"]
    assert observation(doc, "11368-8")["valueDateTime"] == "2023-12-24"


def test_structured_numeric_results() -> None:
    doc = convert(ORU_R01)
    assert observation(doc, "1988-5")["valueQuantity"] == {
        "value": 5,
        "comparator": "<",
        "unit": "mg/L",
        "system": "http://unitsofmeasure.org",
        "code": "mg/L",
    }
    assert observation(doc, "5370-2")["valueRatio"] == {
        "numerator": {"value": 1},
        "denominator": {"value": 64},
    }
    cells = observation(doc, "5811-5")["valueRange"]
    assert (cells["low"]["value"], cells["high"]["value"]) == (2, 8)
    assert cells["low"]["code"] == "/[HPF]"
    assert observation(doc, "5811-5")["status"] == "unknown"  # no OBX-11


def test_a_number_that_does_not_parse_is_kept_as_text(caplog: pytest.LogCaptureFixture) -> None:
    er7 = ORU_R01.replace("|105.50|", "|>500|")
    with caplog.at_level(logging.WARNING, logger="hie.fhir"):
        glucose = observation(convert(er7), "2345-7")
    assert glucose["valueString"] == ">500 milligram per deciliter"
    assert "OBX-5 '>500' is not a number" in caplog.text


def test_report_lists_its_observations_and_the_order_it_answers() -> None:
    doc = convert(ORU_R01)
    report = one(doc, "DiagnosticReport")
    observation_urls = [
        e["fullUrl"] for e in doc["entry"] if e["resource"]["resourceType"] == "Observation"
    ]
    assert len(observation_urls) == 10
    assert [r["reference"] for r in report["result"]] == observation_urls
    assert report["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "24323-8",
        "display": "Metabolic panel",
    }
    assert report["status"] == "final"
    assert report["effectiveDateTime"] == "2024-01-02T08:00:00+01:00"
    assert report["issued"] == "2024-01-02T10:00:00+01:00"
    assert report["category"][0]["coding"][0]["code"] == "CH"
    assert report["basedOn"] == [{"reference": entry(doc, "ServiceRequest")["fullUrl"]}]
    assert [i["value"] for i in report["identifier"]] == ["F200", "P100"]
    assert entry(doc, "DiagnosticReport")["request"]["ifNoneExist"] == "identifier=urn:id:LAB|F200"
    patient_url = entry(doc, "Patient")["fullUrl"]
    assert report["subject"]["reference"] == patient_url
    assert all(o["subject"]["reference"] == patient_url for o in resources(doc, "Observation"))


def test_results_without_orc_have_no_service_request() -> None:
    er7 = ORU_R01.replace(ORC_RE + "\r", "")
    doc = convert(er7)
    assert resources(doc, "ServiceRequest") == []
    assert "basedOn" not in one(doc, "DiagnosticReport")
    assert [i["value"] for i in one(doc, "DiagnosticReport")["identifier"]] == ["F200", "P100"]


# -- orders, immunizations, appointments -------------------------------------------------------


def test_order_becomes_a_service_request_with_placer_and_filler_numbers() -> None:
    doc = convert(ORM_O01)
    request = entry(doc, "ServiceRequest")
    placer, filler = request["resource"]["identifier"]
    assert (placer["value"], placer["system"], placer["type"]["coding"][0]["code"]) == (
        "ORD77",
        "urn:id:EHR",
        "PLAC",
    )
    assert (filler["value"], filler["type"]["coding"][0]["code"]) == ("LAB88", "FILL")
    assert request["request"]["ifNoneExist"] == "identifier=urn:id:EHR|ORD77"
    assert request["resource"]["status"] == "active"  # ORC-5 IP
    assert request["resource"]["intent"] == "order"
    assert request["resource"]["code"]["coding"][0]["code"] == "58410-2"
    assert request["resource"]["authoredOn"] == "2024-01-02T09:15:00+01:00"
    doctor = entry(doc, "Practitioner")
    assert request["resource"]["requester"]["reference"] == doctor["fullUrl"]
    assert doctor["request"]["ifNoneExist"] == "identifier=urn:oid:2.16.840.1.113883.4.6|1234"
    assert len(resources(doc, "Practitioner")) == 1  # PV1-7 and ORC-12 are the same doctor


@pytest.mark.parametrize(
    ("orc5", "orc1", "status"),
    [
        ("CM", "SC", "completed"),
        ("CA", "OC", "revoked"),
        ("", "NW", "active"),
        ("", "HR", "on-hold"),
    ],
)
def test_order_status_from_orc5_else_orc1(orc5: str, orc1: str, status: str) -> None:
    er7 = ORM_O01.replace("ORC|NW|", f"ORC|{orc1}|").replace(
        "|LAB88^LAB||IP|", f"|LAB88^LAB||{orc5}|"
    )
    assert one(convert(er7), "ServiceRequest")["status"] == status


def test_oml_reflex_order() -> None:
    request = one(convert(OML_O21), "ServiceRequest")
    assert request["intent"] == "reflex-order"  # OBR-11 G
    assert request["identifier"][0]["value"] == "ORD78"


def test_vaccination_becomes_an_immunization() -> None:
    doc = convert(VXU_V04)
    shot = entry(doc, "Immunization")
    immunization = shot["resource"]
    assert immunization["vaccineCode"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/cvx",
        "code": "208",
        "display": "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose",
    }
    assert immunization["occurrenceDateTime"] == "2024-01-05T10:30:00+01:00"
    assert immunization["doseQuantity"] == {
        "value": 0.3,
        "unit": "milliliter",
        "system": "http://unitsofmeasure.org",
        "code": "mL",
    }
    assert immunization["lotNumber"] == "LOT123"
    assert immunization["expirationDate"] == "2024-12-31"
    assert immunization["status"] == "completed"
    assert immunization["manufacturer"]["identifier"]["value"] == "PFR"
    assert immunization["manufacturer"]["display"] == "Pfizer, Inc"
    assert immunization["patient"]["reference"] == entry(doc, "Patient")["fullUrl"]
    assert immunization["performer"][0]["actor"]["display"] == "Nina Nurse"
    assert shot["request"]["ifNoneExist"] == "identifier=urn:id:IIS|IMM-9"


@pytest.mark.parametrize(
    ("rxa20", "rxa21", "status"),
    [
        ("RE", "", "not-done"),
        ("NA", "", "not-done"),
        ("PA", "", "completed"),
        ("CP", "D", "entered-in-error"),
    ],
)
def test_immunization_status_from_rxa20_and_rxa21(rxa20: str, rxa21: str, status: str) -> None:
    er7 = VXU_V04.replace(RXA, RXA.replace("|CP", f"|{rxa20}|{rxa21}"))
    assert one(convert(er7), "Immunization")["status"] == status


def test_appointment_from_sch_and_ais() -> None:
    doc = convert(SIU_S12)
    appointment = one(doc, "Appointment")
    assert [i["value"] for i in appointment["identifier"]] == ["A10", "S20"]
    assert appointment["status"] == "booked"
    assert appointment["start"] == "2024-01-10T14:00:00+01:00"
    assert appointment["end"] == "2024-01-10T14:30:00+01:00"  # AIS-4 + 30 min
    assert appointment["serviceType"][0]["coding"][0]["code"] == "45"
    assert appointment["participant"] == [
        {"actor": {"reference": entry(doc, "Patient")["fullUrl"]}, "status": "accepted"}
    ]


def test_appointment_times_from_tq1_win_over_ais() -> None:
    tq1 = seg("TQ1", {1: "1", 7: "20240111090000", 8: "20240111094500"})
    er7 = SIU_S12.replace(SCH + "\r", SCH + "\r" + tq1 + "\r")
    appointment = one(convert(er7), "Appointment")
    assert (appointment["start"], appointment["end"]) == (
        "2024-01-11T09:00:00+01:00",
        "2024-01-11T09:45:00+01:00",
    )


# -- the Bundle --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(ALL))
def test_every_entry_is_a_posted_urn_uuid_and_every_reference_resolves(kind: str) -> None:
    doc = convert(ALL[kind])
    assert doc["resourceType"] == "Bundle" and doc["type"] == "transaction"
    urls = [e["fullUrl"] for e in doc["entry"]]
    assert len(set(urls)) == len(urls)
    assert all(u.startswith("urn:uuid:") and len(u) == len("urn:uuid:") + 36 for u in urls)
    assert all(e["request"]["method"] == "POST" for e in doc["entry"])
    assert all(e["request"]["url"] == e["resource"]["resourceType"] for e in doc["entry"])
    found = references(doc)
    assert found, "the resources refer to the patient at least"
    assert set(found) <= set(urls)
    assert empties(doc) == []


def test_conditional_create_escapes_the_identifier() -> None:
    er7 = ADT_A01.replace("123^^^HOSP&1.2.3&ISO^MR", "12\\F\\3 4^^^HOSP&1.2.3&ISO^MR")
    request = entry(convert(er7), "Patient")["request"]
    assert request["ifNoneExist"] == "identifier=urn:oid:1.2.3|12%5C|3%204"


def test_no_condition_without_a_system() -> None:
    pv1 = PV1.replace("V100^^^HOSP", "V100")
    doc = convert(message("ADT^A01", PID, pv1))
    encounter = entry(doc, "Encounter")
    assert encounter["resource"]["identifier"][0]["value"] == "V100"
    assert "ifNoneExist" not in encounter["request"]


def test_a_bad_date_is_left_out_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    er7 = ORU_R01.replace("|19800102|", "|19801302|").replace("|20240102081500\r", "|soon\r")
    with caplog.at_level(logging.WARNING, logger="hie.fhir"):
        doc = convert(er7)
    assert "birthDate" not in one(doc, "Patient")
    assert observation(doc, "2345-7")["effectiveDateTime"] == "2024-01-02T08:00:00+01:00"
    assert "PID-7 '19801302' is not an HL7 date/time" in caplog.text
    assert "OBX-14 'soon' is not an HL7 date/time" in caplog.text
    assert "message R1" in caplog.text


def test_unsupported_types_are_refused_by_name() -> None:
    with pytest.raises(MessageError, match=r"does not convert MDM\^T02 messages"):
        to_fhir_bundle(HL7Message(message("MDM^T02^MDM_T02", PID)))
    with pytest.raises(MessageError, match=r"does not convert ADT\^A09 messages"):
        HL7ToFHIR().apply(HL7Message(message("ADT^A09", PID)))


def test_a_message_without_pid_is_refused() -> None:
    with pytest.raises(MessageError, match="has no PID segment"):
        to_fhir_bundle(HL7Message(message("ADT^A01", PV1)))


# -- dates -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hl7", "fhir"),
    [
        ("2024", "2024"),
        ("202401", "2024-01"),
        ("20240102", "2024-01-02"),
        ("2024010210", "2024-01-02T10:00:00+01:00"),
        ("202401021030", "2024-01-02T10:30:00+01:00"),
        ("20240102103005", "2024-01-02T10:30:05+01:00"),
        ("20240102103005.1234", "2024-01-02T10:30:05.1234+01:00"),
        ("20240102103005-0500", "2024-01-02T10:30:05-05:00"),
    ],
)
def test_hl7_datetimes_keep_their_precision(hl7: str, fhir: str) -> None:
    parsed = parse_hl7(hl7)
    assert parsed is not None
    assert fhir_datetime(parsed, "+0100") == fhir


def test_a_time_without_any_offset_takes_the_local_one() -> None:
    parsed = parse_hl7("202407011200")
    assert parsed is not None
    local = datetime(2024, 7, 1, 12, 0).astimezone().isoformat()
    assert fhir_datetime(parsed, None) == local


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024-01-02",
        "20241301",
        "198000",
        "19800100",
        "20240230",
        "202401021",
        "2024010212.5",
        "20240102+2500",
        "abc",
    ],
)
def test_what_is_not_an_hl7_date_is_refused(text: str) -> None:
    assert parse_hl7(text) is None


@given(st.datetimes(min_value=datetime(1000, 1, 1)))
def test_any_datetime_written_in_hl7_reads_back(when: datetime) -> None:
    parsed = parse_hl7(when.strftime("%Y%m%d%H%M%S") + "+0000")
    assert parsed is not None
    assert fhir_datetime(parsed, None) == when.replace(microsecond=0).strftime(
        "%Y-%m-%dT%H:%M:%S+00:00"
    )


@given(st.text(max_size=30) | st.from_regex(r"[0-9]{4,14}([+-][0-9]{4})?", fullmatch=True))
def test_any_text_in_a_date_field_never_breaks_the_conversion(text: str) -> None:
    value = "".join(c for c in text if c not in "|^~\\&\r\n")
    pid = seg("PID", {**PID_FIELDS, 7: value})
    pv1 = seg("PV1", {1: "1", 2: "I", 44: value})  # MSH-7 has no offset: the local one is used
    doc = convert(message("ADT^A01", pid, pv1, ts="20240102103000"))
    assert one(doc, "Patient")["name"][0]["family"] == "Doe"
    assert one(doc, "Encounter")["class"]["code"] == "IMP"


# -- travelling as a message body, and by name in routing rules -------------------------------


def test_the_bundle_round_trips_as_a_message_body() -> None:
    bundle = to_fhir_bundle(HL7Message(ORU_R01))
    body_type, raw = encode_body(bundle)
    assert body_type == "fhir.resources.R4B.bundle:Bundle"
    assert raw["resourceType"] == "Bundle" and empties(raw) == []
    # Through the broker: the envelope as JSON text and back.
    wire = json.loads(json.dumps(Envelope.wrap(bundle).to_wire()))
    back = Envelope.from_wire(wire).payload()
    assert isinstance(back, Bundle)
    assert back == bundle == decode_body(body_type, raw)
    assert fhir_json(back) == fhir_json(bundle)


def test_fhir_json_refuses_what_is_not_fhir() -> None:
    with pytest.raises(MessageError, match="not a FHIR resource"):
        fhir_json({"resourceType": "Bundle"})


RULES = {
    "rule_sets": [
        {
            "rules": [
                {
                    "name": "to-fhir",
                    "when": [
                        {
                            "condition": 'HL7.{MSH:9.1} = "ORU"',
                            "actions": [
                                {"type": "send", "target": "FHIR.Out", "transform": "HL7ToFHIR"}
                            ],
                        }
                    ],
                }
            ]
        }
    ]
}


def production(rules: dict[str, Any]) -> Production:
    return Production(
        name="P",
        items=[
            Item(
                name="Router",
                class_name="HL7RoutingEngine",
                targets=["FHIR.Out"],
                settings={"rules": rules},
            ),
            Item(name="FHIR.Out", class_name="FileOperation", settings={"file_path": "/tmp"}),
        ],
    )


def test_a_routing_rule_finds_hl7tofhir_without_listing_it() -> None:
    prod = production(RULES)
    assert RoutingEngine.check_item(prod.item("Router"), prod) == []
    _, registry, _ = compile_routing(RoutingSettings(rules=RULES), prod, "Router")
    transform = registry["HL7ToFHIR"]
    assert isinstance(transform, HL7ToFHIR)
    # What the router does with it: apply it to a copy and send the result on.
    bundle = transform.apply(HL7Message(ORU_R01).copy())
    assert isinstance(bundle, Bundle)
    assert len(resources(json.loads(fhir_json(bundle)), "Observation")) == 10


def test_a_transform_that_is_neither_listed_nor_built_in_is_still_refused() -> None:
    rules = json.loads(json.dumps(RULES).replace("HL7ToFHIR", "HL7ToFHRI"))
    with pytest.raises(ConfigError, match="transform 'HL7ToFHRI' is not loaded"):
        compile_routing(RoutingSettings(rules=rules), production(rules), "Router")


def test_the_transform_refuses_what_is_not_hl7() -> None:
    with pytest.raises(MessageError, match="not a dict"):
        HL7ToFHIR().apply({"a": 1})


def test_segments_flattened_onto_one_line_are_split_again() -> None:
    # A message whose carriage returns became spaces reads as a lone MSH.
    flat = (
        "MSH|^~\\&|HIS|H|LAB|H|20240101||ADT^A01|FL1|P|2.5 EVN|A01|20240101 "
        "PID|1||77^^^HOSP^MR||ROE^ANN||19700101|F\r"
    )
    bundle = json.loads(fhir_json(to_fhir_bundle(HL7Message(flat))))
    patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    assert patient["identifier"][0]["value"] == "77"
    assert patient["name"][0]["family"] == "ROE"
    assert patient["gender"] == "female"
