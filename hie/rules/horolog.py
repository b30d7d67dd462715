"""Dates and times as IRIS writes them: ``$HOROLOG`` day numbers, the ``$ZDATE`` / ``$ZTIME``
formats and the time stamp specifications (``%Y%m%d``) of ``ConvertDateTime``.

Day 0 of ``$HOROLOG`` is 1840-12-31, so day 1 is 1841-01-01 and day 67000 is 2024-06-09;
its second part counts seconds from midnight. Everything here takes and returns plain Python
values and raises ``ValueError`` on input IRIS refuses with ``<ILLEGAL VALUE>``; the callers
turn that into an ``erropt`` result or an error naming the function.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

__all__ = [
    "decimal",
    "format_date",
    "format_spec",
    "format_time",
    "horolog",
    "parse_date",
    "parse_spec",
    "parse_time",
    "timestamp",
    "to_date",
    "to_day",
]

EPOCH = date(1840, 12, 31)
#: The $HOROLOG range IRIS accepts: 0001-01-01 .. 9999-12-31.
MIN_DAY, MAX_DAY = -672045, 2980013
MONTHS: tuple[str, ...] = ("January", "February", "March", "April", "May", "June", "July")
MONTHS += ("August", "September", "October", "November", "December")
DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_JAPANESE = ("\u5e74", "\u6708", "\u65e5")  # $CHAR(24180), $CHAR(26376), $CHAR(26085)
_THAI_ERA = 543  # dformat 13 writes Buddhist Era years
#: dformats whose year is [YY]YY, so yearopt 2 shortens it; all but 7 write 1900-1999 short by
#: default (the dformat table shows 07/01/97 and 01 Jul 97, but Jul 01 1997).
_SHORT_YEAR = frozenset({1, 2, 4, 7, 15})
_SHORT_20TH = frozenset({1, 2, 4, 15})


def to_date(day: int) -> date:
    """The calendar date of a $HOROLOG day number."""
    if not MIN_DAY <= day <= MAX_DAY:
        raise ValueError(f"day {day} is outside {MIN_DAY}..{MAX_DAY} (0001-01-01..9999-12-31)")
    return EPOCH + timedelta(days=day)


def to_day(moment: date) -> int:
    """The $HOROLOG day number of a date."""
    return (moment - EPOCH).days


def _seconds(moment: datetime) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second


def horolog(moment: datetime) -> str:
    """``$HOROLOG`` for a local time: ``"days,seconds"``."""
    return f"{to_day(moment.date())},{_seconds(moment)}"


def timestamp(moment: datetime) -> str:
    """``$ZTIMESTAMP`` for a UTC time: ``"days,seconds.fff"``, milliseconds with trailing zeros
    (and a bare point) suppressed, as IRIS writes it."""
    fraction = f"{moment.microsecond // 1000:03d}".rstrip("0")
    return f"{to_day(moment.date())},{_seconds(moment)}" + (f".{fraction}" if fraction else "")


# -- $ZDATE / $ZDATEH -----------------------------------------------------------------------


def _year(year: int, dformat: int, yearopt: int) -> str:
    if dformat not in _SHORT_YEAR or yearopt == 4:
        return f"{year:04d}"
    if yearopt == 2 or (dformat in _SHORT_20TH and 1900 <= year <= 1999):
        return f"{year % 100:02d}"
    return f"{year:04d}"


def format_date(
    day: int, dformat: int = 1, *, months: tuple[str, ...] | None = None, yearopt: int = 0
) -> str:
    """``$ZDATE(day, dformat, monthlist, yearopt)`` for dformats 1-17; ``months`` replaces the
    month names (``monthlist``)."""
    d = to_date(day)
    dformat = 1 if dformat == -1 else dformat  # -1: the locale's format, 1 in English
    short = (months or tuple(m[:3] for m in MONTHS))[d.month - 1]
    full = (months or MONTHS)[d.month - 1]
    yy = _year(d.year, dformat, yearopt)
    y, mo, dd, wd = d.year, d.month, d.day, (d.weekday() + 1) % 7  # IRIS counts Sunday as 0
    forms: dict[int, Callable[[], str]] = {
        1: lambda: f"{mo:02d}/{dd:02d}/{yy}",
        2: lambda: f"{dd:02d} {short} {yy}",
        3: lambda: f"{y:04d}-{mo:02d}-{dd:02d}",
        4: lambda: f"{dd:02d}/{mo:02d}/{yy}",
        5: lambda: f"{short} {dd}, {y:04d}",
        6: lambda: f"{short} {dd} {y:04d}",
        7: lambda: f"{short} {dd:02d} {yy}",
        8: lambda: f"{y:04d}{mo:02d}{dd:02d}",
        9: lambda: f"{full} {dd}, {y:04d}",
        10: lambda: str(wd),
        11: lambda: DAYS[wd][:3],
        12: lambda: DAYS[wd],
        13: lambda: f"{dd}/{mo}/{y + _THAI_ERA}",
        14: lambda: str(d.timetuple().tm_yday),
        15: lambda: f"{dd:02d}/{mo:02d}/{yy}",
        16: lambda: f"{y}{_JAPANESE[0]}{mo}{_JAPANESE[1]}{dd}{_JAPANESE[2]}",
        17: lambda: f"{y}{_JAPANESE[0]} {mo}{_JAPANESE[1]} {dd}{_JAPANESE[2]}",
    }
    form = forms.get(dformat)
    if form is None:
        raise ValueError(f"dformat {dformat} is not one of 1-17")
    return form()


def _full_year(text: str) -> int:
    year = int(text)
    return 1900 + year if len(text) <= 2 else year  # yearopt 0: two digits are 19YY


def _month(name: str, months: tuple[str, ...] | None) -> int:
    names = [m.lower() for m in (months or MONTHS)]
    low = name.lower()
    for number, full in enumerate(names, 1):
        if low == full or (months is None and len(low) >= 3 and full.startswith(low)):
            return number
    raise ValueError(f"{name!r} is not a month name")


def _loose_date(text: str, today: date, months: tuple[str, ...] | None) -> date:
    """dformats 5-7 and 9 read any of "9/21/1999", "SEP 21 1998", "21 SEP", "2 29 2000"."""
    tokens = [t for t in re.split(r"[\s/,]+", text.strip()) if t]
    named = [t for t in tokens if t.isalpha()]
    numbers = [t for t in tokens if t.isdigit()]
    if len(named) + len(numbers) != len(tokens) or len(named) > 1:
        raise ValueError(f"{text!r} is not a date")
    if named:
        month, rest = _month(named[0], months), numbers
    elif len(numbers) >= 2:
        month, rest = int(numbers[0]), numbers[1:]
    else:
        raise ValueError(f"{text!r} is not a date")
    if not 1 <= len(rest) <= 2:
        raise ValueError(f"{text!r} is not a date")
    year = _full_year(rest[1]) if len(rest) == 2 else today.year
    return date(year, month, int(rest[0]))


_NUMERIC_DATE = {
    1: (r"(\d{1,2})/(\d{1,2})/(\d{2}|\d{4})", (3, 1, 2)),
    3: (r"(\d{4})-(\d{2})-(\d{2})", (1, 2, 3)),
    4: (r"(\d{1,2})/(\d{1,2})/(\d{2}|\d{4})", (3, 2, 1)),
    8: (r"(\d{4})(\d{2})(\d{2})", (1, 2, 3)),
    13: (r"(\d{1,2})/(\d{1,2})/(\d{4})", (3, 2, 1)),
    15: (r"(\d{1,2})/(\d{1,2})/(\d{2}|\d{4})", (3, 2, 1)),
    16: (r"(\d{1,4})\u5e74(\d{1,2})\u6708(\d{1,2})\u65e5", (1, 2, 3)),
    17: (r"(\d{1,4})\u5e74 (\d{1,2})\u6708 (\d{1,2})\u65e5", (1, 2, 3)),
}
_TODAY = re.compile(r"^[Tt]([+-]\d+)?$")


def parse_date(
    text: str, dformat: int = 1, *, today: date, months: tuple[str, ...] | None = None
) -> int:
    """``$ZDATEH(text, dformat)``: the $HOROLOG day of a date written in ``dformat``.

    ``"T"``, ``"T+12"``, ``"t-7"`` mean today plus or minus days (dformats 5-9 and 15).
    """
    text, dformat = text.strip(), 1 if dformat == -1 else dformat
    today_form = _TODAY.match(text)
    if today_form and dformat in (5, 6, 7, 8, 9, 15):
        return to_day(today) + int(today_form.group(1) or 0)
    if dformat in (5, 6, 7, 9):
        return to_day(_loose_date(text, today, months))
    if dformat == 2:
        m = re.fullmatch(r"(\d{1,2})\s+([A-Za-z]+)\s+(\d{2}|\d{4})", text)
        if m is None:
            raise ValueError(f"{text!r} is not a date in dformat 2")
        return to_day(date(_full_year(m[3]), _month(m[2], months), int(m[1])))
    pattern = _NUMERIC_DATE.get(dformat)
    if pattern is None:
        raise ValueError(f"dformat {dformat} cannot be read back")
    m = re.fullmatch(pattern[0], text)
    if m is None:
        raise ValueError(f"{text!r} is not a date in dformat {dformat}")
    y, mo, d = (m.group(i) for i in pattern[1])
    year = int(y) - _THAI_ERA if dformat == 13 else _full_year(y)
    return to_day(date(year, int(mo), int(d)))


# -- $ZTIME / $ZTIMEH -----------------------------------------------------------------------


def format_time(seconds: Decimal, tformat: int = 1, precision: int | None = None) -> str:
    """``$ZTIME(seconds, tformat, precision)``: tformat 1 ``hh:mm:ss``, 2 ``hh:mm``, 3 and 4
    the same on a 12-hour clock with ``AM``/``PM``; fractions are truncated to ``precision``."""
    if not 0 <= seconds < 86400:
        raise ValueError(f"{seconds} is outside 0-86399 seconds")
    whole = int(seconds)
    hour, minute, second = whole // 3600, whole % 3600 // 60, whole % 60
    suffix = ""
    if tformat in (3, 4):
        suffix = "AM" if hour < 12 else "PM"
        hour = hour % 12 or 12
    elif tformat not in (-1, 1, 2):
        raise ValueError(f"tformat {tformat} is not one of 1-4")
    text = f"{hour:02d}:{minute:02d}"
    if tformat in (-1, 1, 3):
        text += f":{second:02d}"
        if precision and precision > 0:
            precision = min(precision, 9)  # IRIS keeps at most nanoseconds
            digits = int((seconds - whole) * 10**precision)
            text += f".{digits:0{precision}d}"
    return text + suffix


_TIME = re.compile(r"(\d{1,2})(?::(\d{1,2}))?(?::(\d{1,2})(\.\d*)?)?\s*(AM|PM|A|P)?", re.IGNORECASE)


def parse_time(text: str) -> Decimal:
    """``$ZTIMEH(text)``: seconds since midnight of ``hh:mm[:ss[.fff]][AM|PM]``, ``NOON`` or
    ``MIDNIGHT``; fractions of a second are kept."""
    word = text.strip().upper()
    if word in ("NOON", "MIDNIGHT"):
        return Decimal(43200 if word == "NOON" else 0)
    m = _TIME.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a time")
    hour, minute, second = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    if m[5]:
        if not 1 <= hour <= 12:
            raise ValueError(f"{text!r}: a 12-hour clock runs from 1 to 12")
        hour = hour % 12 + (12 if m[5].upper().startswith("P") else 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"{text!r} is not a time")
    fraction = Decimal(m[4]) if m[4] and m[4] != "." else Decimal(0)
    return hour * 3600 + minute * 60 + second + fraction


def decimal(text: str) -> Decimal:
    """A number as exact decimal (``"3600.123"`` keeps its digits); ValueError when not one."""
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None


# -- time stamp specifications (ConvertDateTime, CurrentDateTime) -----------------------------

_CODE = re.compile(r"%(#?)([A-Za-z%])(\(\d+\))?")
_ODBC = "%Y-%m-%d %H:%M:%S"


def _fraction(moment: datetime) -> str:
    return f".{moment.microsecond // 1000:03d}" if moment.microsecond else ""


def _expand(moment: datetime, bare: str, code: str, arg: str, file: str) -> str:
    simple: dict[str, Callable[[], str]] = {
        "a": lambda: DAYS[(moment.weekday() + 1) % 7][:3],
        "A": lambda: DAYS[(moment.weekday() + 1) % 7],
        "b": lambda: MONTHS[moment.month - 1][:3],
        "B": lambda: MONTHS[moment.month - 1],
        "D": lambda: moment.strftime("%m/%d/%y"),
        "f": lambda: file,
        "p": lambda: "AM" if moment.hour < 12 else "PM",
        "w": lambda: str((moment.weekday() + 1) % 7),
        "y": lambda: f"{moment.year % 100:02d}",
        "Y": lambda: f"{moment.year:04d}",
        "%": lambda: "%",
        "Q": lambda: moment.strftime(_ODBC) + _fraction(moment),
    }
    numbers = {"d": moment.day, "H": moment.hour, "I": moment.hour % 12 or 12}
    numbers |= {"m": moment.month, "M": moment.minute, "S": moment.second}
    if code == "q":  # HL7 TS, or ODBC / ISO with (1) / (3)
        forms = {"": "%Y%m%d%H%M%S", "(1)": _ODBC, "(3)": "%Y-%m-%dT%H:%M:%S"}
        return moment.strftime(forms.get(arg, _ODBC))
    if code == "j":
        day = moment.timetuple().tm_yday
        return str(day) if bare else f"{day:03d}"
    if code in numbers:
        return str(numbers[code]) if bare else f"{numbers[code]:02d}"
    if code in simple:
        return simple[code]() + arg
    return f"%{bare}{code}{arg}"  # not a code IRIS knows: written as it stands


def format_spec(moment: datetime, spec: str, *, file: str = "") -> str:
    """Expand an IRIS time stamp specification (``%Y%m%d%H%M%S``, ``%#d``, ``%Q``, ``%q(1)``,
    ``%f`` for ``file``); other characters are copied."""
    return _CODE.sub(lambda m: _expand(moment, m[1], m[2], m[3] or "", file), spec)


_NAMES = "|".join(MONTHS + tuple(m[:3] for m in MONTHS))
_DAY_NAMES = "|".join(DAYS + tuple(d[:3] for d in DAYS))
_PARSE = {
    "Y": r"(?P<Y>\d{4})",
    "y": r"(?P<y>\d{2})",
    "j": r"(?P<j>\d{3})",
    "b": rf"(?P<b>{_NAMES})",
    "B": rf"(?P<b>{_NAMES})",
    "a": rf"(?:{_DAY_NAMES})",
    "A": rf"(?:{_DAY_NAMES})",
    "p": r"(?P<p>AM|PM)",
    "Q": r"(?P<Y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})(?: (?P<H>\d{2}):(?P<M>\d{2})"
    r"(?::(?P<S>\d{2})(?P<frac>\.\d+)?)?)?",
}


def _spec_regex(spec: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _CODE.finditer(spec):
        out.append(re.escape(spec[pos : m.start()]))
        bare, code = m[1], m[2]
        if code in "dHImMS":
            out.append(rf"(?P<{code}>\d{{1,2}})" if bare else rf"(?P<{code}>\d{{2}})")
        elif code in _PARSE:
            out.append(_PARSE[code])
        elif code == "%":
            out.append("%")
        else:
            raise ValueError(f"%{code} cannot be read")
        pos = m.end()
    out.append(re.escape(spec[pos:]))
    return re.compile("".join(out) + r"\Z", re.IGNORECASE)


def _hl7_ts(text: str) -> datetime:
    # HL7 TS: YYYY[MM[DD[HH[MM[SS]]]]]; a fraction or a zone offset after the digits is dropped.
    digits = re.match(r"\d*", text).group()  # type: ignore[union-attr]
    lengths = {4: 2, 6: 4, 8: 6, 10: 8, 12: 10, 14: 12}
    return datetime.strptime(digits[:14], "%Y%m%d%H%M%S"[: lengths.get(len(digits), 12)])


def parse_spec(text: str, spec: str) -> datetime:
    """Read ``text`` written in time stamp specification ``spec``; ValueError when it does not
    match. ``%q`` alone reads an HL7 TS, ``%q(1)`` an ISO/ODBC date and time."""
    if spec == "%q":
        return _hl7_ts(text)
    if spec == "%q(1)":
        return datetime.fromisoformat(text)
    m = _spec_regex(spec).match(text)
    if m is None:
        raise ValueError(f"{text!r} does not match {spec!r}")
    parts = {k: v for k, v in m.groupdict().items() if v is not None}
    year = int(parts["Y"]) if "Y" in parts else 1900
    if "y" in parts:
        year = datetime.strptime(parts["y"], "%y").year
    month = int(parts.get("m", 1))
    if "b" in parts:
        month = next(
            i for i, n in enumerate(MONTHS, 1) if n.lower().startswith(parts["b"][:3].lower())
        )
    hour = int(parts.get("H", parts.get("I", 0)))
    if parts.get("p", "").upper() == "PM" and hour < 12:
        hour += 12
    elif parts.get("p", "").upper() == "AM" and hour == 12:
        hour = 0
    micro = int(Decimal(parts["frac"]) * 1_000_000) if "frac" in parts else 0
    moment = datetime(year, month, int(parts.get("d", 1)), hour, int(parts.get("M", 0)))
    moment = moment.replace(second=int(parts.get("S", 0)), microsecond=micro)
    if "j" in parts:
        moment += timedelta(days=int(parts["j"]) - 1)
    return moment
