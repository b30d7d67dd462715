"""Every public sample in shared/samples/hl7 whose type HL7ToFHIR supports converts to a Bundle
that fhir.resources reads back from its JSON, with a Patient for the PID and references that
resolve inside the Bundle. Samples of other types are counted, not converted."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from hie.fhir import fhir_json, supported, to_fhir_bundle
from hie.hl7 import HL7Message, split_batch

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples" / "hl7"
FILES = sorted(p for p in SAMPLES.rglob("*") if p.is_file()) if SAMPLES.is_dir() else []

pytestmark = pytest.mark.skipif(
    not FILES, reason=f"the shared HL7 samples are absent ({SAMPLES} not found)"
)


def _id(path: Path) -> str:
    return str(path.relative_to(SAMPLES)) if FILES else path.name


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return own + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []


def _check(msg: HL7Message) -> None:
    """Convert one supported message and check what a FHIR server would rely on."""
    bundle = to_fhir_bundle(msg)
    text = fhir_json(bundle)
    assert Bundle.model_validate_json(text) == bundle  # valid FHIR, and nothing lost on the way
    doc = json.loads(text)
    assert doc["type"] == "transaction"
    urls = {e["fullUrl"] for e in doc["entry"]}
    assert set(_references(doc)) <= urls, f"{msg.control_id}: a reference points outside"
    patients = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert len(patients) == 1, f"{msg.control_id}: one Patient for the PID"
    mrn = msg.get("PID-3.1") or _flattened_mrn(msg)
    if mrn:
        assert mrn in [i["value"] for i in patients[0]["identifier"]]


def _flattened_mrn(msg: HL7Message) -> str:
    """PID-3.1 of a message whose segments were flattened onto one line with spaces."""
    text = msg.to_er7()
    if "PID" in msg.segment_names() or " PID|" not in text:
        return ""
    pid = text.split(" PID|", 1)[1].split("|")
    return pid[2].split("^")[0] if len(pid) > 2 else ""


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_supported_samples_convert_to_valid_bundles(path: Path) -> None:
    for msg in split_batch(path.read_bytes()):
        if supported(msg):
            _check(msg)


def test_enough_samples_convert_for_the_check_to_mean_something() -> None:
    converted: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for path in FILES:
        for msg in split_batch(path.read_bytes()):
            if not supported(msg):
                skipped[msg.message_type] += 1
            elif "PID" in msg.segment_names():
                to_fhir_bundle(msg)
                converted[msg.message_type] += 1
    print(f"converted {sum(converted.values())}: {dict(sorted(converted.items()))}")
    print(f"skipped {sum(skipped.values())}: {dict(sorted(skipped.items()))}")
    assert sum(converted.values()) >= 20
    # Each family of supported types is exercised by real-world messages, not just ADT.
    assert {t.split("^")[0] for t in converted} >= {"ADT", "ORU", "ORM", "OML", "SIU"}
