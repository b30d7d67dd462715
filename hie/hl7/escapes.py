"""HL7 delimiters and escape sequences (``\\F\\``, ``\\S\\``, ``\\X0D\\`` ...)."""

from __future__ import annotations

from typing import NamedTuple

from hie.errors import HL7ParseError

DEFAULT_ENCODING_CHARS = "^~\\&"


class Delimiters(NamedTuple):
    """The separators of one message, read from MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""  # v2.7+: a fifth encoding character, or "" when absent

    @property
    def encoding_chars(self) -> str:
        """MSH-2 as it is written: component, repetition, escape, subcomponent[, truncation]."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation

    @classmethod
    def parse(cls, field_sep: str, encoding_chars: str) -> Delimiters:
        """Check MSH-1 and MSH-2 and build the delimiters; raises ``HL7ParseError`` if invalid."""
        if len(field_sep) != 1 or field_sep.isalnum() or field_sep.isspace():
            raise HL7ParseError(
                f"MSH-1 field separator {field_sep!r} is invalid; it must be one character that "
                "is not a letter, a digit or white space (usually '|')",
                segment="MSH",
                field=1,
            )
        # "^~\\&" is MSH-2 written out from a string literal with its backslash still escaped;
        # it is common enough in the wild to read as the standard "^~\&" (the text is kept).
        chars = DEFAULT_ENCODING_CHARS if encoding_chars == "^~\\\\&" else encoding_chars
        bad = (
            len(chars) not in (4, 5)
            or len(set(chars)) != len(chars)
            or field_sep in chars
            or any(c.isalnum() or c.isspace() for c in chars)
        )
        if bad:
            raise HL7ParseError(
                f"MSH-2 encoding characters {encoding_chars!r} are invalid; expected 4 or 5 "
                "distinct punctuation characters different from the field separator, "
                "like '^~\\&' (component, repetition, escape, subcomponent[, truncation])",
                segment="MSH",
                field=2,
            )
        return cls(field_sep, chars[0], chars[1], chars[2], chars[3], chars[4:5])


def unescape(value: str, d: Delimiters, codec: str = "utf-8") -> str:
    """Decode the escape sequences of one leaf value.

    ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` (and ``\\P\\`` when MSH-2 has a truncation character) become
    their delimiter, ``\\Xhh..\\`` becomes the bytes it spells decoded with ``codec``; formatting
    (``\\H\\``, ``\\N\\``, ``\\.br\\``), charset switches and anything unknown or malformed stay as
    written, so no information is lost.
    """
    esc = d.escape
    if esc not in value:
        return value
    out: list[str] = []
    pos = 0
    while True:
        start = value.find(esc, pos)
        end = value.find(esc, start + 1) if start >= 0 else -1
        if end < 0:
            out.append(value[pos:])
            return "".join(out)
        out.append(value[pos:start])
        decoded = _decode_one(value[start + 1 : end], d, codec)
        out.append(value[start : end + 1] if decoded is None else decoded)
        pos = end + 1


def _decode_one(code: str, d: Delimiters, codec: str) -> str | None:
    simple = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition}
    if code in simple:
        return simple[code]
    if code == "E":
        return d.escape
    if code == "P" and d.truncation:
        return d.truncation
    if code[:1] == "X" and len(code) > 1:
        try:
            return bytes.fromhex(code[1:]).decode(codec)
        except (ValueError, LookupError):
            return None
    return None


def escape(value: str, d: Delimiters) -> str:
    """Encode delimiters (and CR/LF, which would end the segment) in a value written to a leaf."""
    esc = d.escape
    specials: tuple[str, ...] = (
        esc,
        d.field,
        d.component,
        d.repetition,
        d.subcomponent,
        "\r",
        "\n",
    )
    if d.truncation:
        specials += (d.truncation,)
    if not any(c in value for c in specials):
        return value
    # The escape character first, so the escapes added below are not escaped again.
    value = value.replace(esc, f"{esc}E{esc}")
    for char, code in (
        (d.field, "F"),
        (d.component, "S"),
        (d.repetition, "R"),
        (d.subcomponent, "T"),
        (d.truncation, "P"),
        ("\r", "X0D"),
        ("\n", "X0A"),
    ):
        if char:
            value = value.replace(char, f"{esc}{code}{esc}")
    return value
