"""Splitting files and batches into messages: FHS/BHS envelopes, several MSH, or one message."""

from __future__ import annotations

import logging

from hie.hl7.charset import python_codec, sniff_charset
from hie.hl7.message import HL7Message, normalise_terminators

logger = logging.getLogger(__name__)

_ENVELOPE = frozenset({"FHS", "BHS", "BTS", "FTS"})


def split_batch(text: str | bytes) -> list[HL7Message]:
    """The messages in a batch file, a file of several messages, or a single message.

    Each MSH starts a message, which runs until the next MSH or envelope segment (FHS, BHS, BTS,
    FTS); envelopes and blank lines are dropped. Lines before the first MSH that are not an
    envelope belong to no message: they are logged and skipped. Each message keeps its text as
    written (terminators normalised to ``\\r``), so ``to_er7`` gives back that slice of the file.
    Bytes are decoded with the charset of the first MSH-18, else UTF-8; a BOM is ignored.
    Raises ``HL7ParseError`` when one of the messages is malformed.
    """
    if isinstance(text, bytes):
        text = text.removeprefix(b"\xef\xbb\xbf").decode(python_codec(sniff_charset(text)))
    lines = normalise_terminators(text.removeprefix("\ufeff")).split("\r")
    last = len(lines) - 1
    messages: list[HL7Message] = []
    current: list[str] = []
    skipped = 0
    for n, line in enumerate(lines):
        if not line.strip():
            continue  # blank lines separate messages in files; they never end one early
        name = line[:3]
        if name == "MSH" or name in _ENVELOPE:
            if current:
                messages.append(HL7Message("".join(current)))
                current = []
            if name != "MSH":
                continue
        elif not current:
            skipped += 1
            continue
        # Every line but the file's last was terminated; the message keeps its terminators.
        current.append(line if n == last else line + "\r")
    if current:
        messages.append(HL7Message("".join(current)))
    if skipped:
        logger.warning("split_batch skipped %d line(s) that belong to no message", skipped)
    return messages
