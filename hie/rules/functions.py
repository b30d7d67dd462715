"""The functions of IRIS rules and DTL (``Ens.Rule.FunctionSet``) and ObjectScript value rules.

Every function takes the evaluation ``Context`` first. Predicates taking a value list (from a
``()`` path) hold when they hold for any value; their negative twins hold when the positive
one holds for none.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from hie.errors import ConfigError

__all__ = ["FUNCTIONS", "PREDICATES", "iris_pattern", "to_number", "to_str", "truth"]

_NUM = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_LEADING_NUM = re.compile(r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)")


def to_str(value: Any) -> str:
    """A value as ObjectScript text: numbers canonical (``2.0`` -> ``2``), lists by first value."""
    if isinstance(value, list):
        return to_str(value[0]) if value else ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return "" if value is None else str(value)


def to_number(value: Any, *, strict: bool = False) -> float | int | None:
    """A value as a number; ``strict`` accepts only whole numeric text, else its leading number
    (ObjectScript: ``"12abc"`` is 12, ``"abc"`` is 0)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    text = to_str(value).strip()
    if strict:
        if not _NUM.match(text):
            return None
    else:
        m = _LEADING_NUM.match(text)
        if m is None:
            return 0
        text = m.group().strip()
    number = float(text)
    return int(number) if number.is_integer() and "e" not in text.lower() else number


def truth(value: Any) -> bool:
    """ObjectScript truth: numbers non-zero; strings by their leading number; lists any-of."""
    if isinstance(value, list):
        return any(truth(v) for v in value)
    if isinstance(value, bool):
        return value
    return bool(to_number(value))


def _values(value: Any) -> list[str]:
    return [to_str(v) for v in value] if isinstance(value, list) else [to_str(value)]


def _items(value: Any, sep: str = ",") -> list[str]:
    if isinstance(value, list):
        return [to_str(v) for v in value]
    text = to_str(value)
    if text.startswith("<") and text.endswith(">"):  # IRIS list form <a><b>
        return text[1:-1].split("><")
    return text.split(sep) if sep else [text]


# -- IRIS pattern match (the ? operator) -------------------------------------------------------

_CODES = {
    "A": "a-zA-Z",
    "U": "A-Z",
    "L": "a-z",
    "N": "0-9",
    "P": re.escape("".join(chr(c) for c in range(32, 127) if not chr(c).isalnum())),
    "C": "\\x00-\\x1f\\x7f",
    "E": "\\s\\S",
}
_PAT_TOKEN = re.compile(r'(\d*)(\.?)(\d*)(?:([AUNLPCE]+)|"((?:[^"]|"")*)"|(\())', re.IGNORECASE)


@lru_cache(maxsize=512)
def iris_pattern(pattern: str) -> re.Pattern[str]:
    """Compile an ObjectScript pattern (``3N1"-"4N``, ``1.3A``, ``.E``, ``1(1"Y",1"N")``)."""
    text = pattern[1:] if pattern.startswith("?") else pattern
    regex, end = _pattern_seq(text, 0, pattern)
    if end != len(text):
        raise ConfigError(f"pattern {pattern!r}: unexpected {text[end]!r} at column {end + 1}")
    return re.compile(regex + r"\Z", re.DOTALL)


def _pattern_seq(text: str, pos: int, whole: str) -> tuple[str, int]:
    parts: list[str] = []
    while pos < len(text) and text[pos] not in ",)":
        m = _PAT_TOKEN.match(text, pos)
        if m is None or not (m.group(1) or m.group(2)):
            raise ConfigError(f"pattern {whole!r}: expected a count at column {pos + 1}")
        low, dot, high, codes, literal, _group = m.groups()
        if dot:
            count = f"{{{low or 0},{high}}}"
        else:
            count = f"{{{low}}}"
        pos = m.end()
        if codes is not None:
            atom = "[" + "".join(_CODES[c] for c in codes.upper()) + "]"
        elif literal is not None:
            atom = "(?:" + re.escape(literal.replace('""', '"')) + ")"
        else:
            alts = []
            while True:
                alt, pos = _pattern_seq(text, pos, whole)
                alts.append(alt)
                if pos >= len(text):
                    raise ConfigError(f"pattern {whole!r}: '(' is not closed")
                pos += 1
                if text[pos - 1] == ")":
                    break
            atom = "(?:" + "|".join(alts) + ")"
        parts.append(atom + count)
    return "".join(parts), pos


def _matches(ctx: Any, value: Any, pattern: Any) -> bool:
    regex = iris_pattern(to_str(pattern))
    return any(regex.match(v) for v in _values(value))


@lru_cache(maxsize=512)
def _like_regex(pattern: str) -> re.Pattern[str]:
    out = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(out + r"\Z", re.DOTALL)


def _like(ctx: Any, value: Any, pattern: Any) -> bool:
    regex = _like_regex(to_str(pattern))
    return any(regex.match(v) for v in _values(value))


def _contains(ctx: Any, value: Any, part: Any) -> bool:
    return any(to_str(part) in v for v in _values(value))


def _starts(ctx: Any, value: Any, part: Any) -> bool:
    return any(v.startswith(to_str(part)) for v in _values(value))


def _ends(ctx: Any, value: Any, part: Any) -> bool:
    return any(v.endswith(to_str(part)) for v in _values(value))


def _in(ctx: Any, value: Any, items: Any, sep: Any = ",") -> bool:
    allowed = set(_items(items, to_str(sep)))
    return any(v in allowed for v in _values(value))


def _in_file(ctx: Any, value: Any, filename: Any, *_: Any) -> bool:
    # One value per line, as Ens.Rule.FunctionSet.InFile reads it; the file is read each call
    # so an edited list takes effect without a restart.
    try:
        lines = Path(to_str(filename)).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"InFile: cannot read {to_str(filename)!r}: {exc}") from exc
    allowed = {line.strip() for line in lines if line.strip()}
    return any(v in allowed for v in _values(value))


def _intersects(ctx: Any, value: Any, items: Any, sep1: Any = "><", sep2: Any = ",") -> bool:
    left = set(_items(value, "" if isinstance(value, list) else ","))
    if not isinstance(value, list) and to_str(sep1) not in ("><", ""):
        left = set(to_str(value).split(to_str(sep1)))
    return bool(left & set(_items(items, to_str(sep2))))


def _negate(pred: Callable[..., bool]) -> Callable[..., bool]:
    return lambda ctx, *args: not pred(ctx, *args)


#: Word operators usable infix (``a Contains "x"``) and as functions; keys lower-case.
PREDICATES: dict[str, Callable[..., bool]] = {
    "contains": _contains,
    "doesnotcontain": _negate(_contains),
    "startswith": _starts,
    "doesnotstartwith": _negate(_starts),
    "endswith": _ends,
    "doesnotendwith": _negate(_ends),
    "in": _in,
    "notin": _negate(_in),
    "infile": _in_file,
    "notinfile": _negate(_in_file),
    "matches": _matches,
    "doesnotmatch": _negate(_matches),
    "like": _like,
    "notlike": _negate(_like),
    "intersectslist": _intersects,
    "doesnotintersectlist": _negate(_intersects),
}


# -- value functions ---------------------------------------------------------------------------


def _piece(ctx: Any, value: Any, delim: Any = ",", start: Any = 1, end: Any = None) -> str:
    parts = to_str(value).split(to_str(delim) or ",")
    first = int(to_number(start) or 1)
    last = first if end is None else int(to_number(end) or 0)
    return to_str(delim).join(parts[max(first, 1) - 1 : last])


def _length(ctx: Any, value: Any, delim: Any = None) -> int:
    text = to_str(value)
    if delim is None:
        return len(text)
    return len(text.split(to_str(delim))) if text else 0


def _round(ctx: Any, value: Any, digits: Any = 0) -> float | int:
    number, places = to_number(value) or 0, int(to_number(digits) or 0)
    scaled = math.floor(abs(number) * 10**places + 0.5) / 10**places  # half away from zero
    result = math.copysign(scaled, number)
    return int(result) if places == 0 else result


def _substring(ctx: Any, value: Any, start: Any = 1, end: Any = None) -> str:
    text = to_str(value)
    first = int(to_number(start) or 1)
    last = len(text) if end is None else int(to_number(end) or 0)
    return text[max(first, 1) - 1 : last]


def _current(fmt: str) -> Callable[..., str]:
    return lambda ctx, f=None: ctx.clock().strftime(to_str(f) if f else fmt)


def _parse_time(text: str, fmt: str) -> datetime:
    if fmt in ("%q", ""):  # HL7 TS: YYYY[MM[DD[HH[MM[SS]]]]], offsets and fractions dropped
        digits = re.match(r"\d*", text).group()  # type: ignore[union-attr]
        pattern = "%Y%m%d%H%M%S"[: {4: 2, 6: 4, 8: 6, 10: 8, 12: 10, 14: 12}.get(len(digits), 12)]
        return datetime.strptime(digits[:14], pattern)
    if fmt == "%q(1)":
        return datetime.fromisoformat(text)
    return datetime.strptime(text, fmt)


def _format_time(moment: datetime, fmt: str) -> str:
    if fmt in ("%q", ""):
        return moment.strftime("%Y%m%d%H%M%S")
    if fmt == "%q(1)":  # ODBC
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if fmt == "%q(3)":
        return moment.strftime("%Y-%m-%dT%H:%M:%S")
    return moment.strftime(fmt)


def _convert_datetime(ctx: Any, value: Any, informat: Any = "%q", outformat: Any = "%q") -> str:
    text = to_str(value)
    try:
        return _format_time(_parse_time(text, to_str(informat)), to_str(outformat))
    except (ValueError, TypeError):
        return text  # IRIS returns the input when it cannot convert it


def _lookup(ctx: Any, table: Any, key: Any, default: Any = "", *_: Any) -> str:
    tables = ctx.tables
    if tables is None:
        return to_str(default)
    found = tables.get(to_str(table), to_str(key))
    return to_str(default) if found is None else found


def _exists(ctx: Any, table: Any, key: Any) -> bool:
    return ctx.tables is not None and ctx.tables.get(to_str(table), to_str(key)) is not None


def _if(ctx: Any, cond: Any, yes: Any = "", no: Any = "") -> Any:
    return yes if truth(cond) else no


def _translate(ctx: Any, value: Any, source: Any, target: Any = "") -> str:
    src, dst = to_str(source), to_str(target)
    table = {ord(c): (dst[i] if i < len(dst) else None) for i, c in enumerate(src)}
    return to_str(value).translate(table)


def _text(op: Callable[[str], str]) -> Callable[..., str]:
    return lambda ctx, value, *_: op(to_str(value))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    **PREDICATES,
    "piece": _piece,
    "length": _length,
    "toupper": _text(str.upper),
    "tolower": _text(str.lower),
    "strip": _text(str.strip),
    "substring": _substring,
    "replacestr": lambda ctx, v, f, r="": to_str(v).replace(to_str(f), to_str(r)),
    "translate": _translate,
    "round": _round,
    "min": lambda ctx, *a: min((to_number(x) or 0 for x in a), default=""),
    "max": lambda ctx, *a: max((to_number(x) or 0 for x in a), default=""),
    "currentdate": _current("%Y-%m-%d"),
    "currenttime": _current("%H:%M:%S"),
    "currentdatetime": _current("%Y-%m-%d %H:%M:%S"),
    "convertdatetime": _convert_datetime,
    "lookup": _lookup,
    "exists": _exists,
    "if": _if,
    "not": lambda ctx, v: not truth(v),
}
