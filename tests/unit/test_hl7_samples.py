"""Every public sample in shared/samples/hl7 splits, reads and round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from hie.hl7 import HL7Message, normalise_terminators, split_batch
from hie.hl7.validation import line_problems

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples" / "hl7"
FILES = sorted(p for p in SAMPLES.rglob("*") if p.is_file()) if SAMPLES.is_dir() else []
ENVELOPE = ("FHS", "BHS", "BTS", "FTS")

pytestmark = pytest.mark.skipif(
    not FILES, reason=f"the shared HL7 samples are absent ({SAMPLES} not found)"
)


def _id(path: Path) -> str:
    return str(path.relative_to(SAMPLES)) if FILES else path.name


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_sample_splits_and_round_trips(path: Path) -> None:
    raw = path.read_bytes()
    messages = split_batch(raw)
    assert messages, f"{path.name}: no message found"

    # Each message is a slice of the file as written (terminators normalised to \r); what lies
    # between them is only envelope segments, blank lines, or lines before the first MSH.
    text = normalise_terminators(raw.decode(messages[0].codec).removeprefix("\ufeff"))
    pos = 0
    for msg in messages:
        er7 = msg.to_er7()
        found = text.find(er7, pos)
        if found < 0:  # blank lines inside a message are dropped from it
            found = text.find(er7.split("\r", 1)[0], pos)
        assert found >= 0, f"{path.name}: message {msg.control_id!r} is not a slice of the file"
        gap = text[pos:found].split("\r")
        assert all(not line.strip() or line.startswith(ENVELOPE) or pos == 0 for line in gap), (
            f"{path.name}: lost lines {gap!r}"
        )
        pos = found + len(er7)

        assert HL7Message(er7).to_er7() == er7
        assert HL7Message(er7.encode(msg.codec)).encode() == er7.encode(msg.codec)
        assert msg.message_code, f"{path.name}: MSH-9.1 unreadable"
        assert msg.get("MSH-1") == msg.delimiters.field
        assert msg.get("MSH-10") == msg.control_id
        assert len(msg.segments()) == len(msg.segment_names())
        if line_problems(msg):
            # A few samples have a field broken by a line break: kept as-is, and reported.
            assert msg.validate() == line_problems(msg)
            continue
        assert msg.version.startswith("2."), f"{path.name}: MSH-12 is {msg.version!r}"
        if msg.message_code == "ACK":
            assert msg.get("MSA-1") in ("AA", "AE", "AR", "CA", "CE", "CR")
        for name, fields in zip(msg.segment_names(), msg.segments(), strict=True):
            assert fields[0] == name
