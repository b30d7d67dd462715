"""Full validation with hl7apy: slow (milliseconds per message), so never on the routing path."""

from __future__ import annotations

import os
import re
import tempfile
from typing import TYPE_CHECKING

from hie.errors import HL7ParseError

if TYPE_CHECKING:
    from hl7apy.core import Message as HL7apyMessage

    from hie.hl7.message import HL7Message


def to_hl7apy(msg: HL7Message) -> HL7apyMessage:
    """Parse a copy of ``msg`` with hl7apy (tolerant, with groups); raises ``HL7ParseError``.

    hl7apy's group finding drops Z segments, so its output must never be forwarded.
    """
    from hl7apy.parser import parse_message

    # hl7apy reads LF-separated text as one MSH segment; the message text is already \r-only.
    text = "\r".join(seg for seg in msg.to_er7().split("\r") if seg)
    try:
        parsed: HL7apyMessage = parse_message(text, find_groups=True)
    except Exception as exc:  # hl7apy raises many types, not all its own: wrap them all here
        raise HL7ParseError(f"hl7apy cannot parse the message: {exc}") from exc
    return parsed


_SEGMENT_START = re.compile(r"^[A-Z][A-Z0-9]{2}$")


def line_problems(msg: HL7Message) -> list[str]:
    """Segments that do not start with a segment name, most often a field broken by a newline.

    ``HL7Message`` keeps such lines as they are so the message can still be forwarded unchanged.
    """
    fs = msg.delimiters.field
    return [
        f"segment {n} ({seg[:20]!r}) does not start with a segment name; "
        "is a field broken by a line break?"
        for n, seg in enumerate(msg.to_er7().split("\r"), start=1)
        if seg and not (_SEGMENT_START.match(seg[:3]) and seg[3:4] in ("", fs))
    ]


def validate_message(msg: HL7Message, *, strict: bool = False) -> list[str]:
    """Problems hl7apy reports for ``msg`` (errors; with ``strict`` also its warnings)."""
    from hl7apy import SUPPORTED_LIBRARIES

    broken = line_problems(msg)
    if broken:
        return broken  # hl7apy would misread everything after the first broken line
    version = msg.version
    if not version:
        return ["MSH-12 is empty; the version is needed to validate"]
    if version not in SUPPORTED_LIBRARIES:
        known = ", ".join(sorted(SUPPORTED_LIBRARIES))
        return [f"HL7 version {version} cannot be validated (hl7apy knows {known})"]
    try:
        parsed = to_hl7apy(msg)
    except HL7ParseError as exc:
        return [exc.reason]
    # hl7apy raises only its first error; its report file is the only way to get all of them.
    with tempfile.TemporaryDirectory(prefix="hie-hl7-") as tmp:
        report = os.path.join(tmp, "report.txt")
        try:
            parsed.validate(report_file=report)
        except Exception as exc:
            if not os.path.exists(report):
                return [f"hl7apy failed while validating: {exc}"]
        with open(report, encoding="utf-8") as f:
            lines = f.read().splitlines()
    problems: list[str] = []
    keep = False
    for line in lines:
        for prefix, wanted in (("Error: ", True), ("Warning: ", strict)):
            if line.startswith(prefix):
                keep = wanted
                if keep:
                    problems.append(line[len(prefix) :])
                break
        else:
            if keep and problems:  # a message that spans several lines
                problems[-1] += " " + line.strip()
    return problems
