"""The functions of IRIS rules and DTL (``Ens.Util.FunctionSet``) and ObjectScript value rules.

Every function takes the evaluation ``Context`` first and is keyed lower-case in ``FUNCTIONS``;
a rule calls it as ``Name(args)`` and DTL as ``..Name(args)``. Predicates taking a value list
(from a ``()`` path) hold when they hold for any value; their negative twins hold when the
positive one holds for none. The function set is a thin layer over ObjectScript (``Piece`` is
``$PIECE``, ``Strip`` is ``$ZSTRIP``), so the string rules both share live here too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from hie.errors import ConfigError, MessageError
from hie.rules.horolog import format_spec, parse_spec

__all__ = [
    "FUNCTIONS",
    "MAX_STRING",
    "PREDICATES",
    "End",
    "iris_pattern",
    "piece",
    "position",
    "to_number",
    "to_str",
    "truth",
    "zstrip",
]

#: The longest string IRIS holds; longer ones are its <MAXSTRING> error.
MAX_STRING = 3_641_144
_NUM = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_LEADING_NUM = re.compile(r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)")


def to_str(value: Any) -> str:
    """A value as ObjectScript text: numbers canonical (``2.0`` -> ``2``), path value lists by
    their first value, IRIS lists (``$LISTBUILD`` tuples) as their elements joined by commas."""
    if isinstance(value, list):
        return to_str(value[0]) if value else ""
    if isinstance(value, tuple):
        return ",".join(to_str(v) for v in value)
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


# -- positions and the string rules $PIECE and $ZSTRIP ------------------------------------------


class End(NamedTuple):
    """The ``*`` position of $EXTRACT, $PIECE and $LIST: the last one, moved by ``offset``
    (``*-1`` is ``End(-1)``)."""

    offset: int = 0


def position(value: Any, count: int, *, star_text: bool = False) -> int:
    """A 1-based position among ``count``: a number (truncated) or ``End``; ``star_text`` also
    reads the text ``"*"`` / ``"*-1"``, as the function set's ``Piece()`` is documented to."""
    if isinstance(value, End):
        return count + value.offset
    if star_text:
        text = to_str(value).replace(" ", "")
        if text.startswith("*"):
            return count + int(to_number(text[1:]) or 0)
    return int(to_number(value) or 0)


def piece(text: str, delim: str, first: Any = None, last: Any = None, *, star: bool = False) -> str:
    """``$PIECE(text, delim, first, last)``: one piece, or pieces ``first`` to ``last`` joined by
    ``delim``; a position below 1 is empty alone and 1 as the start of a range."""
    if not delim:
        return ""
    parts = text.split(delim)
    start = 1 if first is None else position(first, len(parts), star_text=star)
    if last is None:
        return parts[start - 1] if 1 <= start <= len(parts) else ""
    end = position(last, len(parts), star_text=star)
    start = max(start, 1)
    return delim.join(parts[start - 1 : end]) if end >= start else ""


def _punctuation(c: str) -> bool:
    return c.isprintable() and not c.isalnum()  # ObjectScript counts the space as punctuation


_MASKS: dict[str, Callable[[str], bool]] = {
    "A": str.isalpha,
    "U": str.isupper,
    "L": str.islower,
    "N": lambda c: "0" <= c <= "9",
    "P": _punctuation,
    "C": lambda c: ord(c) < 32 or 127 <= ord(c) <= 159,
    "W": lambda c: c in "\t \xa0",  # $CHAR(9), $CHAR(32), $CHAR(160)
    "E": lambda c: True,
}
_ACTION = re.compile(r"(\*|<=>|<>|<|>|=)((?:'?[AULNPCWE])*)", re.IGNORECASE)


def zstrip(text: str, action: str, remove: str = "", keep: str = "") -> str:
    """``$ZSTRIP(text, action, remove, keep)``: ``action`` is ``*`` (all), ``<`` (leading),
    ``>`` (trailing), ``<>``, ``=`` (repeats of one character) or ``<=>``, then mask codes
    (A U L N P C W E, ``'`` negates one); ``remove`` adds characters, ``keep`` spares some."""
    m = _ACTION.fullmatch(action)
    if m is None:
        raise ConfigError(
            f"$ZSTRIP action {action!r}: expected *, <, >, <>, = or <=> then mask codes"
            " (W, P, 'N...)"
        )
    masks = re.findall(r"('?)(.)", m.group(2))
    wanted = [_MASKS[c.upper()] for neg, c in masks if not neg]
    spared = [_MASKS[c.upper()] for neg, c in masks if neg]

    def target(c: str) -> bool:
        if c in remove:
            return True
        return c not in keep and any(f(c) for f in wanted) and not any(f(c) for f in spared)

    code = m.group(1)
    if code == "*":
        return "".join(c for c in text if not target(c))
    start, end = 0, len(text)
    while "<" in code and start < end and target(text[start]):
        start += 1
    while ">" in code and end > start and target(text[end - 1]):
        end -= 1
    out = text[start:end]
    if "=" in code:  # a run of one repeated character keeps a single instance
        out = "".join(c for i, c in enumerate(out) if not (i and c == out[i - 1] and target(c)))
    return out


def _values(value: Any) -> list[str]:
    return [to_str(v) for v in value] if isinstance(value, list) else [to_str(value)]


def _items(value: Any, sep: str = ",") -> list[str]:
    if isinstance(value, list | tuple):
        return [to_str(v) for v in value]
    text = to_str(value)
    head, mark, tail = text.rpartition(",,")
    if mark and len(tail) in (1, 2):  # "a|b,,|" names its separator, "<a><b>,,<>" its brackets
        text, sep = head, tail
    if len(sep) == 2 and sep != "><":
        opening, closing = re.escape(sep[0]), re.escape(sep[1])
        return re.findall(f"{opening}(.*?){closing}", text)
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
    escape = ""
    if len(pattern) >= 3 and pattern[-3:-1] == "%%":  # "...%%#": # escapes the next % or _
        pattern, escape = pattern[:-3], pattern[-1]
    out, literal = [], False
    for c in pattern:
        if literal:
            out.append(re.escape(c))
            literal = False
        elif escape and c == escape:
            literal = True
        else:
            out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


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
    return piece(to_str(value), to_str(delim), start, start if end is None else end, star=True)


def _length(ctx: Any, value: Any, delim: Any = None) -> int:
    text = to_str(value)
    if delim is None:
        return len(text)
    sep = to_str(delim)
    return len(text.split(sep)) if sep else 0  # "" has one (empty) piece


def _round(ctx: Any, value: Any, digits: Any = 0) -> float | int:
    number, places = Decimal(to_str(to_number(value) or 0)), int(to_number(digits) or 0)
    try:  # half away from zero, on decimals so 2.675 rounds as written
        result = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise MessageError(f"Round: cannot round {number} to {places} places") from None
    return int(result) if places <= 0 else float(result)


def _substring(ctx: Any, value: Any, start: Any = 1, end: Any = None) -> str:
    text = to_str(value)
    first = int(to_number(start) or 1)
    last = len(text) if end is None else int(to_number(end) or 0)
    return text[max(first, 1) - 1 : last]


def _strip(ctx: Any, value: Any, action: Any = "<>W", remove: Any = "", keep: Any = "") -> str:
    return zstrip(to_str(value), to_str(action), to_str(remove), to_str(keep))


def _pad(ctx: Any, value: Any, width: Any = 0, char: Any = " ") -> str:
    # A positive width pads on the right, a negative one on the left; a longer value stays.
    text, size, fill = to_str(value), int(to_number(width) or 0), to_str(char)[:1] or " "
    if abs(size) > MAX_STRING:
        raise ConfigError(f"Pad: width {size} is longer than IRIS strings go (<MAXSTRING>)")
    padding = fill * max(abs(size) - len(text), 0)
    return text + padding if size >= 0 else padding + text


def _regex_match(ctx: Any, value: Any, regex: Any) -> bool:
    try:
        return re.fullmatch(to_str(regex), to_str(value)) is not None
    except re.error as exc:
        problem = f"RegexMatch: {to_str(regex)!r} is not a regular expression: {exc}"
        raise ConfigError(problem) from None


def _current(default: str) -> Callable[..., str]:
    return lambda ctx, spec=None: format_spec(ctx.clock(), to_str(spec) if spec else default)


def _convert_datetime(
    ctx: Any, value: Any, informat: Any = "%Q", outformat: Any = "%Q", file: Any = ""
) -> str:
    text = to_str(value)
    try:
        moment = parse_spec(text, to_str(informat) or "%Q")
    except (ValueError, TypeError, StopIteration):
        return text  # IRIS returns the input when it does not match the input format
    return format_spec(moment, to_str(outformat) or "%Q", file=to_str(file))


def _lookup(ctx: Any, table: Any, key: Any, default: Any = "", on_empty: Any = 0) -> str:
    name, wanted, fallback = to_str(table), to_str(key), to_str(default)
    if not name or not wanted:
        # defaultOnEmptyInput: 0 "" always; 1 the default for an empty table name only; 2 the
        # default for an empty key only; 3 the default for either.
        mode = int(to_number(on_empty) or 0)
        use_default = mode == 3 or (mode == 1 and bool(wanted)) or (mode == 2 and bool(name))
        return fallback if use_default else ""
    tables = ctx.tables
    found = tables.get(name, wanted) if tables is not None else None
    return fallback if found is None else found


def _exists(ctx: Any, table: Any, key: Any) -> bool:
    return ctx.tables is not None and ctx.tables.get(to_str(table), to_str(key)) is not None


def _if(ctx: Any, cond: Any, yes: Any = "", no: Any = "") -> Any:
    return yes if truth(cond) else no


def _translate(ctx: Any, value: Any, source: Any, target: Any = "") -> str:
    src, dst = to_str(source), to_str(target)
    table: dict[int, str | None] = {}
    for i, c in enumerate(src):
        table.setdefault(ord(c), dst[i] if i < len(dst) else None)  # the first mapping wins
    return to_str(value).translate(table)


def _text(op: Callable[[str], str]) -> Callable[..., str]:
    return lambda ctx, value, *_: op(to_str(value))


def _replace(ctx: Any, value: Any, find: Any, repl: Any = "") -> str:
    return to_str(value).replace(to_str(find), to_str(repl)) if to_str(find) else to_str(value)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    **PREDICATES,
    "piece": _piece,
    "length": _length,
    "toupper": _text(str.upper),
    "tolower": _text(str.lower),
    "strip": _strip,
    "pad": _pad,
    "substring": _substring,
    "replacestr": _replace,
    "replace": _replace,  # deprecated in IRIS in favour of ReplaceStr, same behaviour
    "translate": _translate,
    "regexmatch": _regex_match,
    "round": _round,
    "min": lambda ctx, *a: min((to_number(x) or 0 for x in a), default=""),
    "max": lambda ctx, *a: max((to_number(x) or 0 for x in a), default=""),
    "currentdate": _current("%Y-%m-%d"),
    "currenttime": _current("%H:%M:%S"),
    "currentdatetime": _current("%Q"),
    "convertdatetime": _convert_datetime,
    "lookup": _lookup,
    "exists": _exists,
    "if": _if,
    "not": lambda ctx, v: not truth(v),
}
