"""HL7 v2: fast message access, escapes, charsets, batches, ACK/NAK builders, validation.

``HL7Message`` reads and edits ER7 text without a full parse; hl7apy is used only by
``HL7Message.validate`` / ``to_hl7apy``, which are slow and optional.
"""

from __future__ import annotations

from hie.hl7.ack import (
    ACK_CODES,
    ERROR_CODES,
    ack_code,
    ack_control_id,
    build_ack,
    build_nak_for_unreadable,
    new_control_id,
)
from hie.hl7.batch import split_batch
from hie.hl7.charset import python_codec, sniff_charset, unreadable_charset
from hie.hl7.escapes import Delimiters, escape, unescape
from hie.hl7.message import HL7Message, normalise_terminators
from hie.hl7.path import ALL, HL7Path, parse_path

__all__ = [
    "ACK_CODES",
    "ALL",
    "ERROR_CODES",
    "Delimiters",
    "HL7Message",
    "HL7Path",
    "ack_code",
    "ack_control_id",
    "build_ack",
    "build_nak_for_unreadable",
    "escape",
    "new_control_id",
    "normalise_terminators",
    "parse_path",
    "python_codec",
    "sniff_charset",
    "split_batch",
    "unescape",
    "unreadable_charset",
]
