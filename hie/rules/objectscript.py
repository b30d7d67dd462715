"""ObjectScript intrinsic functions (``$PIECE``, ``$ZDATE``, ``$LISTBUILD``...) with IRIS semantics,
for rule and DTL expressions.

The parser hands ``compile_intrinsic`` a ``$NAME(...)`` call once and gets a closure back.
Names and abbreviations are case-insensitive (``$e`` is ``$EXTRACT``). Arguments arrive
compiled as ``Arg``: an omitted one (``$LB(1,,3)``) has no value, ``case:value`` pairs feed
``$CASE`` and ``$SELECT``, and ``$GET`` / ``$DATA`` get a probe that says whether a variable or
path is defined. ``*`` and ``*-n`` positions arrive as ``End``. Special variables, written
without parentheses (``$HOROLOG``, ``$ZTIMESTAMP``), compile through
``compile_special_variable``.

Where IRIS stops with an error (``<SELECT>``, ``<ILLEGAL VALUE>``, ``<LIST>``) a ``ConfigError``
names the function, the value and the IRIS error; the date and time functions return their
``erropt`` argument instead when one is given, as IRIS does.
"""

from __future__ import annotations

import html
import json
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote

from hie.errors import ConfigError, MessageError
from hie.rules import horolog
from hie.rules.functions import (
    FUNCTIONS,
    MAX_STRING,
    piece,
    position,
    to_number,
    to_str,
    truth,
    zstrip,
)

__all__ = [
    "INTRINSICS",
    "REFERENCE_FUNCTIONS",
    "SPECIAL_VARIABLES",
    "Arg",
    "Intrinsic",
    "IrisList",
    "compile_intrinsic",
    "compile_special_variable",
    "concat",
]

Thunk = Callable[[Any], Any]  # a compiled argument: context -> value


@dataclass(frozen=True)
class Arg:
    """One compiled argument of a ``$`` function call."""

    value: Thunk | None = None  # None when the argument is omitted
    label: Thunk | None = None  # the case or condition before ':' ($CASE, $SELECT)
    paired: bool = False  # written label:value; a pair without label is $CASE's :default
    probe: Thunk | None = None  # $GET/$DATA: context -> (defined, value) of a variable or path
    variable: str | None = None  # the local variable a reference names ($INCREMENT writes it)


@dataclass(frozen=True)
class Intrinsic:
    """A ``$`` function: its IRIS name, implementation and how many arguments it takes."""

    name: str
    fn: Callable[..., Any]
    min_args: int
    max_args: int | None
    special: Callable[[Intrinsic, list[Arg]], Thunk] | None = None  # compiles its own args


class IrisList(tuple[Any, ...]):
    """An IRIS list (``$LISTBUILD``): its elements in order, ``None`` for an omitted one.

    As text it reads as its elements joined by commas (``to_str``).
    """

    __slots__ = ()


def concat(a: Any, b: Any) -> Any:
    """The ``_`` operator: two lists make one list, as IRIS list encodings concatenate
    (``""`` is the empty list); anything else is text."""
    if isinstance(a, IrisList) and (isinstance(b, IrisList) or b == ""):
        return IrisList(a + b) if isinstance(b, IrisList) else a
    if a == "" and isinstance(b, IrisList):
        return b
    return to_str(a) + to_str(b)


def _int(value: Any, default: int) -> int:
    return default if value is None or value == "" else int(to_number(value) or 0)


def _dec(value: Any) -> Decimal:
    return Decimal(to_str(to_number(value) or 0))


def _number(value: Decimal) -> int | float:
    if value and value.adjusted() > 145:  # IRIS decimals stop near 9.2E145
        raise MessageError(f"{value} is larger than IRIS numbers go (<MAXNUMBER>)")
    return int(value) if value == value.to_integral_value() else float(value)


def _round(value: Decimal, places: int) -> Decimal:
    try:
        return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise MessageError(f"cannot round {value} to {places} places (IRIS <MAXNUMBER>)") from None


# -- strings ------------------------------------------------------------------------------------


def _extract(ctx: Any, value: Any, start: Any = None, end: Any = None) -> str:
    text = to_str(value)
    first = 1 if start is None else position(start, len(text))
    if end is None:
        return text[first - 1] if 1 <= first <= len(text) else ""
    last = min(position(end, len(text)), len(text))
    first = max(first, 1)  # in a range a start below 1 means 1
    return text[first - 1 : last] if last >= first else ""


def _piece(ctx: Any, value: Any, delim: Any, start: Any = None, end: Any = None) -> str:
    return piece(to_str(value), to_str(delim), start, end)


def _find(ctx: Any, value: Any, part: Any, start: Any = None) -> int:
    text, sub, begin = to_str(value), to_str(part), max(_int(start, 1), 1)
    if not sub:
        return begin if begin <= len(text) + 1 else 0
    found = text.find(sub, begin - 1)
    return found + len(sub) + 1 if found >= 0 else 0  # the position after the match


def _ascii(ctx: Any, value: Any, pos: Any = None) -> int:
    text, at = to_str(value), _int(pos, 1)
    return ord(text[at - 1]) if 1 <= at <= len(text) else -1


def _char(ctx: Any, *codes: Any) -> str:
    numbers = (_int(c, -1) for c in codes)
    return "".join(chr(n) for n in numbers if 0 <= n <= 0x10FFFF)  # -1 and the like: nothing


def _justify(ctx: Any, value: Any, width: Any, decimals: Any = None) -> str:
    size = _int(width, 0)
    if size > MAX_STRING:
        raise ConfigError(f"$JUSTIFY: width {size} is longer than IRIS strings go (<MAXSTRING>)")
    if decimals is None:
        return to_str(value).rjust(size)
    return f"{_round(_dec(value), max(_int(decimals, 0), 0)):f}".rjust(size)


def _words(text: str) -> str:
    # A word starts the text or follows a blank, a quote, an apostrophe or "(".
    out, start = [], True
    for c in text:
        out.append(c.upper() if start else c.lower())
        start = c.isspace() or c in "\"'("
    return "".join(out)


def _sentences(text: str) -> str:
    # A sentence starts at the first non-blank character and after . ? ! (blanks skipped).
    out, start = [], True
    for c in text:
        if not c.isspace():
            out.append(c.upper() if start else c.lower())
            start = c in ".?!"
        else:
            out.append(c)
    return "".join(out)


_JS_OUT = {"\\": "\\\\", "'": "\\'", '"': '\\"', "\r": "\\r", "\n": "\\n", "\t": "\\t"}
_JS_OUT |= {"\b": "\\b", "\f": "\\f"}
_JS_IN = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|[0-7]{1,3}|.)", re.DOTALL)
_JS_NAMED = {"r": "\r", "n": "\n", "t": "\t", "b": "\b", "f": "\f", "v": "\v"}
_URL_CHARS = frozenset(' "#%&+,:;<=>?@[]^`{|}~')
_URI_CHARS = frozenset(" !\"#$%&'()*+,/:;<=>?@[]^`{|}")


def _js_unescape(m: re.Match[str]) -> str:
    code = m.group(1)
    if code[0] in "xu" and len(code) > 1:
        return chr(int(code[1:], 16))
    if code.isdigit():
        return chr(int(code, 8))
    return _JS_NAMED.get(code, code)


def _url_out(text: str) -> str:
    def one(c: str) -> str:
        n = ord(c)
        if n > 255:
            return f"%u{n:04X}"
        return f"%{n:02X}" if c in _URL_CHARS or n < 32 or n > 126 else c

    return "".join(one(c) for c in text)


def _url_in(text: str) -> str:
    text = re.sub(r"%u([0-9A-Fa-f]{4})", lambda m: chr(int(m.group(1), 16)), text)
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _uri_out(text: str) -> str:
    def one(c: str) -> str:
        if ord(c) > 127:  # above ASCII: the UTF-8 bytes, each %-encoded
            return "".join(f"%{b:02X}" for b in c.encode("utf-8"))
        return f"%{ord(c):02X}" if c in _URI_CHARS or ord(c) < 32 or ord(c) == 127 else c

    return "".join(one(c) for c in text)


def _json_in(text: str) -> str:
    try:
        return str(json.loads(f'"{text}"'))
    except json.JSONDecodeError as exc:
        problem = f'$ZCONVERT(..., "I", "JSON"): {text!r} is not JSON text: {exc}'
        raise ConfigError(problem) from None


def _utf8_in(text: str) -> str:
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise MessageError(f'$ZCONVERT(..., "I", "UTF8"): {text!r} is not UTF-8') from None


def _html_out(text: str) -> str:
    return html.escape(text, quote=True).replace("&#x27;", "&#39;")


def _xml_out(text: str) -> str:
    return html.escape(text, quote=True).replace("&#x27;", "&apos;")


#: $ZCONVERT translation tables: name -> (output "O", input "I").
_TABLES: dict[str, tuple[Callable[[str], str], Callable[[str], str]]] = {
    "HTML": (_html_out, html.unescape),
    "XML": (_xml_out, html.unescape),
    "JS": (lambda t: "".join(_JS_OUT.get(c, c) for c in t), lambda t: _JS_IN.sub(_js_unescape, t)),
    "JSON": (lambda t: json.dumps(t, ensure_ascii=False)[1:-1], _json_in),
    "URL": (_url_out, _url_in),
    "URI": (_uri_out, unquote),
    "UTF8": (lambda t: t.encode("utf-8").decode("latin-1"), _utf8_in),
    "RAW": (str, str),
}
_TABLES |= {"JSML": _TABLES["JS"], "JSONML": _TABLES["JSON"], "SAME": _TABLES["RAW"]}
_CASES: dict[str, Callable[[str], str]] = {
    "U": str.upper,
    "L": str.lower,
    "T": lambda t: "".join(c.title() for c in t),
    "W": _words,
    "S": _sentences,
}


def _zconvert(ctx: Any, value: Any, mode: Any, table: Any = None) -> str:
    text, code = to_str(value), to_str(mode).upper()
    if code in ("I", "O"):
        if table is None:
            return text  # the process's own I/O table: HIE's strings need none
        name = to_str(table).upper()
        pair = _TABLES.get(name)
        if pair is None:
            known = ", ".join(sorted(_TABLES))
            raise ConfigError(f"$ZCONVERT: translation table {name!r} is not one of {known}")
        return pair[0](text) if code == "O" else pair[1](text)
    case = _CASES.get(code)
    if case is None:
        raise ConfigError(f"$ZCONVERT: mode {code!r} is not one of U, L, T, W, S, I, O")
    return case(text)


def _zstrip(ctx: Any, value: Any, action: Any, remove: Any = None, keep: Any = None) -> str:
    return zstrip(to_str(value), to_str(action), to_str(remove), to_str(keep))


def _isobject(ctx: Any, value: Any) -> int:
    # An object reference in HIE is anything but a value: a message, a model, a dict (dynamic
    # object) or a list (a collection). IRIS's -1 (a stale reference) cannot happen here.
    plain = value is None or isinstance(value, str | bytes | int | float | Decimal | tuple)
    return int(not plain)


# -- lists --------------------------------------------------------------------------------------


def _as_list(value: Any, name: str) -> tuple[Any, ...]:
    if isinstance(value, tuple):
        return value
    if isinstance(value, list):  # the values of a () path read as a list
        return tuple(value)
    if value is None or value == "":
        return ()  # "" is the empty list
    raise MessageError(f"{name}: {to_str(value)!r} is not a list (IRIS <LIST>); build one with $LB")


def _list_pos(value: Any, count: int) -> int:
    at = position(value, count)
    return count if at == -1 else at  # -1 is the last element, as IRIS reads it


def _list(ctx: Any, value: Any, pos: Any = None, end: Any = None) -> Any:
    items = _as_list(value, "$LIST")
    first = 1 if pos is None else _list_pos(pos, len(items))
    if end is None:
        # IRIS stops with <NULL VALUE> on a missing element; a rule reads "" ($LISTGET for a
        # default).
        found = items[first - 1] if 1 <= first <= len(items) else None
        return "" if found is None else found
    last = min(_list_pos(end, len(items)), len(items))
    return IrisList(items[max(first, 1) - 1 : last])


def _listget(ctx: Any, value: Any, pos: Any = None, default: Any = None) -> Any:
    items = _as_list(value, "$LISTGET")
    at = 1 if pos is None else _list_pos(pos, len(items))
    found = items[at - 1] if 1 <= at <= len(items) else None
    return ("" if default is None else default) if found is None else found


def _listfind(ctx: Any, value: Any, wanted: Any, after: Any = None) -> int:
    items, text = _as_list(value, "$LISTFIND"), to_str(wanted)
    for at in range(max(_int(after, 0), 0), len(items)):
        if items[at] is not None and to_str(items[at]) == text:
            return at + 1
    return 0


def _listdata(ctx: Any, value: Any, pos: Any = None) -> int:
    items = _as_list(value, "$LISTDATA")
    at = 1 if pos is None else _list_pos(pos, len(items))
    return int(1 <= at <= len(items) and items[at - 1] is not None)


def _listtostring(ctx: Any, value: Any, delim: Any = None) -> str:
    sep = "," if delim is None else to_str(delim)
    return sep.join(to_str(v) for v in _as_list(value, "$LISTTOSTRING"))


def _listfromstring(ctx: Any, value: Any, delim: Any = None) -> IrisList:
    text, sep = to_str(value), "," if delim is None else to_str(delim)
    if not text:
        return IrisList()
    return IrisList(text.split(sep) if sep else (text,))


# -- numbers ------------------------------------------------------------------------------------

_NUMERIC = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_LEADING = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _in_range(value: Decimal, low: Any, high: Any) -> bool:
    too_low = low is not None and low != "" and value < _dec(low)
    return not too_low and not (high is not None and high != "" and value > _dec(high))


def _scale(value: Decimal, scale: int) -> Decimal:
    if scale < 0:  # -1: truncate to an integer
        return _round(value.to_integral_value(rounding=ROUND_DOWN), 0)
    return _round(value, scale)


def _isvalidnum(ctx: Any, value: Any, scale: Any = None, low: Any = None, high: Any = None) -> int:
    text = to_str(value)
    if not _NUMERIC.fullmatch(text):
        return 0
    number = Decimal(text)
    if scale is not None and scale != "":
        number = _scale(number, _int(scale, 0))
    return int(_in_range(number, low, high))


def _number_fn(ctx: Any, value: Any, fmt: Any = None, low: Any = None, high: Any = None) -> Any:
    # Format codes, in any order: "." or "," as the decimal separator (the other one groups
    # digits), a signed rounding factor, "I" for integers only. Invalid input reads "".
    spec = to_str(fmt)
    point = "," if "," in spec else "."
    text = to_str(value).strip().replace("." if point == "," else ",", "").replace(point, ".")
    if not _NUMERIC.fullmatch(text):
        return ""
    number = Decimal(text)
    factor = re.search(r"[+-]?\d+", spec)
    if factor:  # a negative factor rounds left of the point: -2 makes 234.45 into 200
        number = _round(number, int(factor.group()))
    if "I" in spec.upper() and number != number.to_integral_value():
        return ""
    return _number(number) if _in_range(number, low, high) else ""


def _normalize(ctx: Any, value: Any, scale: Any) -> int | float:
    m = _LEADING.match(to_str(value))  # validation stops at the first character that is not
    number = Decimal(m.group().strip()) if m else Decimal(0)
    return _number(_scale(number, _int(scale, 0)))


def _zsqr(ctx: Any, value: Any) -> int | float:
    number = to_number(value) or 0
    if number < 0:
        raise MessageError(f"$ZSQR({to_str(value)}): no square root of a negative number")
    root = math.sqrt(number)
    return int(root) if root.is_integer() else root


def _random(ctx: Any, value: Any) -> int:
    limit = _int(value, 0)
    if limit < 1:
        raise ConfigError(
            f"$RANDOM({to_str(value)}): the range must be 1 or more (IRIS <FUNCTION>)"
        )
    return random.randrange(limit)


# -- dates and times ----------------------------------------------------------------------------


def _local(ctx: Any) -> datetime:
    moment: datetime = ctx.clock()
    return moment.astimezone().replace(tzinfo=None) if moment.tzinfo else moment


def _utc(ctx: Any) -> datetime:
    moment: datetime = ctx.clock()
    return moment.astimezone(UTC)  # a naive clock is read as local time


def _illegal(name: str, value: Any, erropt: Any, problem: Exception) -> Any:
    if erropt is not None:
        return erropt
    raise MessageError(f"{name}({to_str(value)!r}): {problem} (IRIS <ILLEGAL VALUE>)")


def _day(value: Any, low: Any = None, high: Any = None) -> int:
    text = to_str(value).partition(",")[0].strip()
    if not re.fullmatch(r"-?\d+", text):
        raise ValueError(f"{text!r} is not a $HOROLOG date")
    day = int(text)
    if (low not in (None, "") and day < _int(low, 0)) or (
        high not in (None, "") and day > _int(high, 0)
    ):
        raise ValueError(f"day {day} is outside mindate..maxdate")
    return day


def _months(value: Any) -> tuple[str, ...] | None:
    text = to_str(value)
    if not text:
        return None
    names = tuple(text[1:].split(text[0]))  # the first character is the separator
    if len(names) != 12:
        raise ValueError(f"monthlist {text!r} must name 12 months")
    return names


def _zdate(ctx: Any, h: Any, df: Any = None, ml: Any = None, yo: Any = None, *rest: Any) -> Any:
    low, high, erropt = (list(rest) + [None] * 5)[2:5]  # startwin, endwin, min, max, erropt
    try:
        day = _day(h, low, high)
        return horolog.format_date(day, _int(df, 1), months=_months(ml), yearopt=_int(yo, 0))
    except ValueError as exc:
        return _illegal("$ZDATE", h, erropt, exc)


def _zdateh(ctx: Any, text: Any, df: Any = None, ml: Any = None, *rest: Any) -> Any:
    erropt = (list(rest) + [None] * 6)[5]  # yearopt, startwin, endwin, min, max, erropt
    try:
        today = _local(ctx).date()
        return horolog.parse_date(to_str(text), _int(df, 1), today=today, months=_months(ml))
    except ValueError as exc:
        return _illegal("$ZDATEH", text, erropt, exc)


def _ztime(ctx: Any, h: Any, tf: Any = None, precision: Any = None, erropt: Any = None) -> Any:
    try:
        seconds = horolog.decimal(to_str(h) or "0")
        return horolog.format_time(seconds, _int(tf, 1), _int(precision, 0) or None)
    except ValueError as exc:
        return _illegal("$ZTIME", h, erropt, exc)


def _ztimeh(ctx: Any, text: Any, tf: Any = None, erropt: Any = None) -> Any:
    try:
        return _number(horolog.parse_time(to_str(text)))
    except ValueError as exc:
        return _illegal("$ZTIMEH", text, erropt, exc)


def _zdatetime(ctx: Any, h: Any, df: Any = None, tf: Any = None, p: Any = None, *rest: Any) -> Any:
    ml, yo, _sw, _ew, low, high, erropt = (list(rest) + [None] * 7)[:7]
    try:
        day_text, _, time_text = to_str(h).partition(",")
        day = _day(day_text, low, high)
        when = horolog.format_date(day, _int(df, 1), months=_months(ml), yearopt=_int(yo, 0))
        seconds = horolog.decimal(time_text or "0")
        return f"{when} {horolog.format_time(seconds, _int(tf, 1), _int(p, 0) or None)}"
    except ValueError as exc:
        return _illegal("$ZDATETIME", h, erropt, exc)


_TRAILING_TIME = re.compile(
    r"(.*?)[\sT](\d{1,2}:\d{1,2}(?::\d{1,2}(?:\.\d*)?)?\s*(?:AM|PM|A|P)?)", re.IGNORECASE
)


def _zdatetimeh(ctx: Any, text: Any, df: Any = None, tf: Any = None, *rest: Any) -> Any:
    ml, erropt = (list(rest) + [None] * 7)[0], (list(rest) + [None] * 7)[6]
    try:
        whole = to_str(text).strip()
        m = _TRAILING_TIME.fullmatch(whole)
        date_text, time_text = (m.group(1), m.group(2)) if m else (whole, "")
        today = _local(ctx).date()
        day = horolog.parse_date(date_text, _int(df, 1), today=today, months=_months(ml))
        seconds = horolog.parse_time(time_text) if time_text else Decimal(0)
        return f"{day},{seconds.normalize():f}" if seconds else f"{day},0"
    except ValueError as exc:
        return _illegal("$ZDATETIMEH", text, erropt, exc)


def _special(compute: Callable[[Any], Any]) -> Intrinsic:
    return Intrinsic("", compute, 0, 0)


#: Special variables, read without parentheses: name (lower-case, no $) -> Intrinsic.
SPECIAL_VARIABLES: dict[str, Intrinsic] = {
    "horolog": _special(lambda ctx: horolog.horolog(_local(ctx))),
    "ztimestamp": _special(lambda ctx: horolog.timestamp(_utc(ctx))),
    "zpi": _special(lambda ctx: "3.141592653589793238"),
}
SPECIAL_VARIABLES |= {"h": SPECIAL_VARIABLES["horolog"], "zts": SPECIAL_VARIABLES["ztimestamp"]}


# -- forms that compile their own arguments -----------------------------------------------------


def _plain(spec: Intrinsic, args: list[Arg]) -> Thunk:
    if any(a.paired for a in args):
        raise ValueError(f"{spec.name}() takes no case:value pairs")
    fn = spec.fn
    thunks = tuple(a.value for a in args)

    def run(ctx: Any) -> Any:
        return fn(ctx, *[None if t is None else t(ctx) for t in thunks])

    return run


def _compile_case(spec: Intrinsic, args: list[Arg]) -> Thunk:
    target, pairs = args[0], args[1:]
    value = target.value
    if value is None or target.paired:
        raise ValueError("$CASE() starts with the value to match, then case:value pairs")
    cases: list[tuple[Thunk, Thunk]] = []
    default: Thunk | None = None
    for i, a in enumerate(pairs):
        if not a.paired or a.value is None:
            raise ValueError(f"$CASE() argument {i + 2} must be case:value or :default")
        if a.label is None:
            if i != len(pairs) - 1:
                raise ValueError("$CASE() takes its :default last")
            default = a.value
        else:
            cases.append((a.label, a.value))

    def run(ctx: Any) -> Any:
        key = to_str(value(ctx))
        for label, result in cases:
            if to_str(label(ctx)) == key:
                return result(ctx)
        if default is None:
            problem = "no case matches and there is no :default (IRIS <ILLEGAL VALUE>)"
            raise ConfigError(f"$CASE({key!r}): {problem}")
        return default(ctx)

    return run


def _compile_select(spec: Intrinsic, args: list[Arg]) -> Thunk:
    pairs: list[tuple[Thunk, Thunk]] = []
    for i, a in enumerate(args):
        if a.label is None or a.value is None:
            raise ValueError(f"$SELECT() argument {i + 1} must be condition:value")
        pairs.append((a.label, a.value))

    def run(ctx: Any) -> Any:
        for condition, result in pairs:  # left to right; later pairs are never evaluated
            if truth(condition(ctx)):
                return result(ctx)
        raise MessageError("$SELECT(): no condition is true (IRIS <SELECT>); end with 1:default")

    return run


def _probe(arg: Arg) -> Thunk:
    if arg.probe is not None:
        return arg.probe
    value = arg.value
    if value is None or arg.paired:
        raise ValueError("$GET() and $DATA() need a variable or a path")

    def run(ctx: Any) -> tuple[bool, Any]:
        found = value(ctx)
        return found not in ("", None, []), found

    return run


def _compile_get(spec: Intrinsic, args: list[Arg]) -> Thunk:
    probe = _probe(args[0])
    default = args[1].value if len(args) > 1 else None

    def run(ctx: Any) -> Any:
        defined, value = probe(ctx)
        if defined:
            return value
        return "" if default is None else default(ctx)

    return run


def _compile_increment(spec: Intrinsic, args: list[Arg]) -> Thunk:
    name = args[0].variable
    if name is None:
        raise ValueError("$INCREMENT() adds to a local variable: $INCREMENT(name) or (name, n)")
    step = args[1].value if len(args) > 1 else None

    def run(ctx: Any) -> Any:
        by = 1 if step is None else (to_number(step(ctx)) or 0)
        # An undefined variable counts from 0; text counts from its leading number.
        total = (to_number(ctx.variables.get(name, 0)) or 0) + by
        ctx.variables[name] = total
        return total

    return run


def _compile_data(spec: Intrinsic, args: list[Arg]) -> Thunk:
    probe = _probe(args[0])
    return lambda ctx: int(probe(ctx)[0])


_TABLE: tuple[tuple[str, Callable[..., Any], int, int | None], ...] = (
    ("EXTRACT/E", _extract, 1, 3),
    ("PIECE/P", _piece, 2, 4),
    ("LENGTH/L", FUNCTIONS["length"], 1, 2),
    ("TRANSLATE/TR", FUNCTIONS["translate"], 2, 3),
    ("REPLACE", FUNCTIONS["replacestr"], 3, 3),
    ("ZCONVERT/ZCVT", _zconvert, 2, 3),
    ("ZSTRIP", _zstrip, 2, 4),
    ("FIND/F", _find, 2, 3),
    ("REVERSE/RE", lambda ctx, v: to_str(v)[::-1], 1, 1),
    ("ISOBJECT", _isobject, 1, 1),
    ("JUSTIFY/J", _justify, 2, 3),
    ("CHAR/C", _char, 1, None),
    ("ASCII/A", _ascii, 1, 2),
    ("LISTBUILD/LB", lambda ctx, *items: IrisList(items or (None,)), 0, None),
    ("LIST/LI", _list, 1, 3),
    ("LISTLENGTH/LL", lambda ctx, v: len(_as_list(v, "$LISTLENGTH")), 1, 1),
    ("LISTGET/LG", _listget, 1, 3),
    ("LISTFIND/LF", _listfind, 2, 3),
    ("LISTDATA/LD", _listdata, 1, 2),
    ("LISTTOSTRING/LTS", _listtostring, 1, 2),
    ("LISTFROMSTRING/LFS", _listfromstring, 1, 2),
    ("ISVALIDNUM", _isvalidnum, 1, 4),
    ("NUMBER/NUM", _number_fn, 1, 4),
    ("NORMALIZE", _normalize, 2, 2),
    ("ZABS", lambda ctx, v: abs(to_number(v) or 0), 1, 1),
    ("ZSQR", _zsqr, 1, 1),
    ("RANDOM/R", _random, 1, 1),
    ("ZDATE/ZD", _zdate, 1, 9),
    ("ZDATEH/ZDH", _zdateh, 1, 9),
    ("ZDATETIME/ZDT", _zdatetime, 1, 11),
    ("ZDATETIMEH/ZDTH", _zdatetimeh, 1, 10),
    ("ZTIME/ZT", _ztime, 1, 4),
    ("ZTIMEH/ZTH", _ztimeh, 1, 3),
)
_FORMS: tuple[tuple[str, Callable[[Intrinsic, list[Arg]], Thunk], int, int | None], ...] = (
    ("CASE", _compile_case, 1, None),
    ("SELECT/S", _compile_select, 1, None),
    ("GET/G", _compile_get, 1, 2),
    ("DATA/D", _compile_data, 1, 1),
    ("INCREMENT/I", _compile_increment, 1, 2),
)


def _register() -> dict[str, Intrinsic]:
    table: dict[str, Intrinsic] = {}
    for names, fn, low, high in _TABLE:
        spec = Intrinsic("$" + names.split("/")[0], fn, low, high)
        table |= {n.lower(): spec for n in names.split("/")}
    for names, form, low, high in _FORMS:
        spec = Intrinsic("$" + names.split("/")[0], lambda ctx: None, low, high, form)
        table |= {n.lower(): spec for n in names.split("/")}
    return table


#: Every $ function by lower-case name and abbreviation, without the $.
INTRINSICS: dict[str, Intrinsic] = _register()
#: $ functions whose first argument is a variable or path reference, not a value.
REFERENCE_FUNCTIONS = frozenset({"get", "g", "data", "d", "increment", "i"})


def compile_intrinsic(name: str, args: list[Arg]) -> Thunk:
    """Compile ``$name(args)`` once; raises ``ValueError`` saying what is wrong (an unknown
    function, a wrong number of arguments, a misplaced ``case:value``)."""
    spec = INTRINSICS.get(name.lower())
    if spec is None:
        raise ValueError(f"unknown function ${name.upper()}()")
    too_many = spec.max_args is not None and len(args) > spec.max_args
    if len(args) < spec.min_args or too_many:
        most = "more" if spec.max_args is None else spec.max_args
        problem = f"{spec.name}() takes {spec.min_args} to {most} arguments, not {len(args)}"
        raise ValueError(problem)
    return (spec.special or _plain)(spec, args)


def compile_special_variable(name: str) -> Thunk:
    """Compile the special variable ``$name`` (``$H``, ``$ZTS``); ``ValueError`` if unknown."""
    spec = SPECIAL_VARIABLES.get(name.lower())
    if spec is None:
        raise ValueError(f"unknown special variable ${name.upper()} (a function needs parentheses)")
    return spec.fn
