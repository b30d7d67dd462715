"""HL7 v2 dates and times (DT, DTM, TS, TM) as FHIR ``date``, ``dateTime``, ``instant``, ``time``.

HL7 writes ``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]``. A date keeps its precision (``2024``,
``2024-05``, ``2024-05-06``). FHIR has no minute or hour precision for a time of day, so a value
with a time is written to the second (``2024-05-06T10:30:00``, fractions kept) with an offset, which
FHIR requires: the value's own, else the one MSH-7 carries (HL7: an absent offset is the sender's
local time), else this machine's local offset for that date.

A value that is not a valid date is left out and logged with its field and message; mapping never
fails on one.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hie.fhir.segment import Segment

log = logging.getLogger(__name__)

_DTM = re.compile(
    r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?", re.ASCII
)
_TM = re.compile(r"(\d{2})(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?", re.ASCII)


@dataclass(frozen=True, slots=True)
class HL7Time:
    """A parsed HL7 date/time: the parts it had, None for those it did not."""

    year: int
    month: int | None
    day: int | None
    hour: int | None
    minute: int | None
    second: int | None
    fraction: str  # ".1234" as written, or ""
    offset: str | None  # "+0100" as written

    def naive(self) -> datetime:
        """The value as a naive datetime (missing parts are the first of their range)."""
        return datetime(
            self.year,
            1 if self.month is None else self.month,
            1 if self.day is None else self.day,
            self.hour or 0,
            self.minute or 0,
            self.second or 0,
        )


def parse_hl7(text: str) -> HL7Time | None:
    """Parse an HL7 DT/DTM/TS value; None when it is not a real date (``20240230``, ``2024-05``)."""
    match = _DTM.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if fraction and second is None:
        return None  # HL7 allows a fraction of a second only after the seconds
    parsed = HL7Time(
        int(year),
        _int(month),
        _int(day),
        _int(hour),
        _int(minute),
        _int(second),
        fraction or "",
        offset,
    )
    try:
        parsed.naive()
    except ValueError:
        return None
    if offset is not None and (int(offset[1:3]) > 14 or int(offset[3:]) > 59):
        return None
    return parsed


def _int(text: str | None) -> int | None:
    return None if text is None else int(text)


def fhir_date(value: HL7Time) -> str:
    """The FHIR ``date``: the day, month or year, as precise as the value (time dropped)."""
    if value.month is None:
        return f"{value.year:04d}"
    if value.day is None:
        return f"{value.year:04d}-{value.month:02d}"
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def fhir_datetime(value: HL7Time, default_offset: str | None) -> str:
    """The FHIR ``dateTime``; a time of day gets seconds and an offset (module docstring)."""
    if value.hour is None:
        return fhir_date(value)
    naive = value.naive()
    offset = value.offset or default_offset or _local_offset(naive)
    return f"{naive:%Y-%m-%dT%H:%M:%S}{value.fraction}{offset[:3]}:{offset[3:]}"


def _local_offset(naive: datetime) -> str:
    try:
        local = naive.astimezone().utcoffset() or timedelta(0)
    except (ValueError, OverflowError, OSError):  # year 1 and the like: today's offset will do
        local = datetime.now().astimezone().utcoffset() or timedelta(0)
    minutes = int(local.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def fhir_time(text: str) -> str | None:
    """An HL7 TM (``HHMM[SS[.S]]``) as a FHIR ``time`` (no offset: FHIR times have none)."""
    match = _TM.fullmatch(text.strip())
    if match is None:
        return None
    hour, minute, second, fraction, _ = match.groups()
    if int(hour) > 23 or int(minute or 0) > 59 or int(second or 0) > 59:
        return None
    if fraction and second is None:
        return None
    return f"{hour}:{minute or '00'}:{second or '00'}{fraction or ''}"


def message_offset(seg: Segment) -> str | None:
    """The offset MSH-7 carries, which HL7 says applies to values written without one."""
    parsed = parse_hl7(seg.msg.get("MSH-7.1"))
    return parsed.offset if parsed else None


def _read(seg: Segment, field: int, rep: int, comp: int, sub: int | None) -> HL7Time | None:
    text = seg.get(field, rep, comp, sub)
    if not text:
        return None
    parsed = parse_hl7(text)
    if parsed is None:
        log.warning(
            "%s %r is not an HL7 date/time; left out of the FHIR resource (message %s)",
            seg.where(field),
            text,
            seg.msg.control_id,
        )
    return parsed


def date_at(
    seg: Segment, field: int, rep: int = 1, comp: int = 1, sub: int | None = None
) -> str | None:
    """The FHIR ``date`` of a field (a TS reads its first component); None if empty or bad."""
    parsed = _read(seg, field, rep, comp, sub)
    return fhir_date(parsed) if parsed else None


def datetime_at(
    seg: Segment, field: int, rep: int = 1, comp: int = 1, sub: int | None = None
) -> str | None:
    """The FHIR ``dateTime`` of a field; None if empty or bad (logged)."""
    parsed = _read(seg, field, rep, comp, sub)
    return fhir_datetime(parsed, message_offset(seg)) if parsed else None


def instant_at(
    seg: Segment, field: int, rep: int = 1, comp: int = 1, sub: int | None = None
) -> str | None:
    """The FHIR ``instant`` of a field: only a value with a time of day can be one."""
    parsed = _read(seg, field, rep, comp, sub)
    if parsed is not None and parsed.hour is None:
        log.warning(
            "%s %r has no time of day, which a FHIR instant needs; left out (message %s)",
            seg.where(field),
            seg.get(field, rep, comp, sub),
            seg.msg.control_id,
        )
        return None
    return fhir_datetime(parsed, message_offset(seg)) if parsed else None
