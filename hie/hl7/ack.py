"""ACK and NAK builders, and reading an ACK's code and control id."""

from __future__ import annotations

import re
import time
from datetime import datetime
from functools import lru_cache
from uuid import uuid4

from hie.errors import HL7ParseError
from hie.hl7.charset import python_codec, sniff_charset
from hie.hl7.escapes import DEFAULT_ENCODING_CHARS, Delimiters
from hie.hl7.message import HL7Message
from hie.hl7.path import parse_path

#: MSA-1 codes: original mode (AA/AE/AR) and enhanced mode commit (CA/CE/CR).
ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})

#: HL7 table 0357, message error condition codes, used in ERR-3 (ERR-1.4 before v2.5).
ERROR_CODES = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}


def _version(text: str) -> tuple[int, ...]:
    match = re.match(r"^\d+(\.\d+)*", text)
    return tuple(int(x) for x in match.group().split(".")) if match else (2, 5)


def new_control_id() -> str:
    """A fresh MSH-10: 20 hex characters (MSH-10 is 20 long in v2.5), unique in practice."""
    return uuid4().hex[:20]


def hl7_now() -> str:
    """The current local time as an HL7 DTM with its UTC offset (``20240101120000+0100``)."""
    return _dtm(int(time.time()))


@lru_cache(maxsize=2)
def _dtm(second: int) -> str:
    # Second resolution: one formatting per second, however many ACKs go out in it.
    return datetime.fromtimestamp(second).astimezone().strftime("%Y%m%d%H%M%S%z")


def build_ack(
    msg: HL7Message,
    code: str = "AA",
    *,
    text: str | None = None,
    error: str | None = None,
    error_location: str | None = None,
    error_code: str = "207",
    control_id: str | None = None,
) -> HL7Message:
    """The acknowledgement of ``msg``: MSA-1 ``code``, MSA-2 its MSH-10, MSA-3 ``text``.

    The MSH swaps sender and receiver (MSH-3/4 <-> MSH-5/6), gets a new MSH-10 (or
    ``control_id``) and the current MSH-7, MSH-9 ``ACK^<trigger>^ACK``, and echoes MSH-11, MSH-12
    and MSH-18 with the same delimiters. ``error`` adds an ERR segment: v2.5+ writes ERR-2 (from
    ``error_location``, a path like ``PID-3``), ERR-3 (``error_code`` from HL7 table 0357), ERR-4
    severity and ERR-8 the message; older versions write ERR-1 and put the message in MSA-3.
    """
    if code not in ACK_CODES:
        raise ValueError(f"ACK code {code!r} is not one of {sorted(ACK_CODES)}")
    d = msg.delimiters
    version = msg.get_raw("MSH-12")
    trigger = msg.get_raw("MSH-9.2")
    # MSH-9.3 (message structure) exists from v2.3.1; older receivers reject a third component.
    msh9 = "ACK"
    if trigger:
        msh9 += d.component + trigger
        if _version(msg.version) >= (2, 3, 1):
            msh9 += d.component + "ACK"
    fields = {
        3: msg.get_raw("MSH-5(*)"),
        4: msg.get_raw("MSH-6(*)"),
        5: msg.get_raw("MSH-3(*)"),
        6: msg.get_raw("MSH-4(*)"),
        7: hl7_now(),
        9: msh9,
        10: control_id or new_control_id(),
        11: msg.get_raw("MSH-11(*)"),
        12: version,
        18: msg.get_raw("MSH-18(*)"),
    }
    last = max(n for n, value in fields.items() if value)
    msh = d.field.join(fields.get(n, "") for n in range(3, last + 1))
    ack = HL7Message(f"MSH{d.field}{d.encoding_chars}{d.field}{msh}\r")
    ack.set("MSA-1", code)
    ack.set_raw("MSA-2", msg.get_raw("MSH-10"))
    if text or error:
        ack.set("MSA-3", text or error or "")
    if error:
        _add_err(ack, code, error, error_location, error_code)
    return ack


def _add_err(ack: HL7Message, code: str, error: str, location: str | None, error_code: str) -> None:
    name = ERROR_CODES.get(error_code, "")
    where = parse_path(location) if location else None
    if _version(ack.version) < (2, 5):
        # v2.1-2.4: ERR-1 is ELD (segment^sequence^field^code&text&HL70357).
        if where:
            ack.set("ERR-1.1", where.segment)
            ack.set("ERR-1.2", str(where.segment_index or 1))
            ack.set("ERR-1.3", str(where.field))
        ack.set("ERR-1.4.1", error_code)
        ack.set("ERR-1.4.2", name)
        ack.set("ERR-1.4.3", "HL70357")
        return
    if where:  # ERR-2 is ERL: segment^sequence^field^repetition^component^subcomponent
        parts = [where.segment, where.segment_index or 1, where.field, where.repetition or 1]
        parts += [x for x in (where.component, where.subcomponent) if x]
        for n, value in enumerate(parts, start=1):
            ack.set(f"ERR-2.{n}", str(value))
    ack.set("ERR-3.1", error_code)
    ack.set("ERR-3.2", name)
    ack.set("ERR-3.3", "HL70357")
    ack.set("ERR-4", "W" if code in ("AA", "CA") else "E")
    ack.set("ERR-8", error)


def build_nak_for_unreadable(
    raw: bytes | str, reason: str, *, error_code: str = "100"
) -> HL7Message:
    """An AR for input too broken to build an ``HL7Message`` from, with ``reason`` in ERR-8.

    Whatever can be recovered from the first MSH-like line is used (delimiters, MSH-3..6, MSH-9
    trigger, MSH-10 for MSA-2, MSH-11, MSH-12, MSH-18); the rest falls back to ``|^~\\&`` and
    version 2.5. ``error_code`` is from HL7 table 0357 (100 when the MSH itself is unusable).
    """
    if isinstance(raw, bytes):
        raw = raw.decode(python_codec(sniff_charset(raw)), errors="replace")
    start = raw.find("MSH")
    line = "" if start < 0 else re.split(r"[\r\n]", raw[start:], maxsplit=1)[0]
    fs = line[3:4]
    try:
        d = Delimiters.parse(fs, line[4:].split(fs, 1)[0] if fs else "")
        parts = line.split(fs)
    except HL7ParseError:
        d = Delimiters.parse("|", DEFAULT_ENCODING_CHARS)
        parts = []
    # parts[n - 1] is MSH-n; control characters would corrupt the NAK, so they go.
    recovered = {
        n: re.sub(r"[\x00-\x1f\x7f]", "", parts[n - 1])[:200] for n in range(3, len(parts) + 1)
    }
    version = recovered.get(12, "")
    if not re.match(r"^2\.\d", version):
        recovered[12] = "2.5"
    recovered[9] = recovered.get(9) or "UNK"
    keep = (3, 4, 5, 6, 9, 10, 11, 12, 18)
    msh = d.field.join(recovered.get(n, "") if n in keep else "" for n in range(3, 19))
    try:
        inbound = HL7Message(f"MSH{d.field}{d.encoding_chars}{d.field}{msh}")
    except HL7ParseError:
        inbound = HL7Message("MSH|^~\\&|||||||UNK||P|2.5")
    return build_ack(inbound, "AR", error=reason, error_code=error_code)


def ack_code(ack: HL7Message | str | bytes) -> str:
    """MSA-1 of an acknowledgement (``AA``, ``AE``, ``AR``, ``CA``, ``CE``, ``CR``), or ``""``."""
    return (ack if isinstance(ack, HL7Message) else HL7Message(ack)).get("MSA-1")


def ack_control_id(ack: HL7Message | str | bytes) -> str:
    """MSA-2 of an acknowledgement: the MSH-10 of the message it acknowledges."""
    return (ack if isinstance(ack, HL7Message) else HL7Message(ack)).get_raw("MSA-2")
