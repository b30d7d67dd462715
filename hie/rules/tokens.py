"""The tokens of the rule and DTL expression language, and the stream the parser reads them from.

Names follow ObjectScript: letters of any alphabet, digits and ``%``, never ``_`` (the
concatenation operator); after a dot a name may be quoted (``source."2ndItem"``) and then hold
any character. ``.name`` alone (``..Fn(.tSC)``) is a by-reference argument.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hie.errors import ConfigError

__all__ = ["Tok", "TokenStream", "name_parts"]

#: A name: letters of any alphabet, digits and %; "_" is concatenation, never part of a name.
_IDENT = r"(?:[^\W\d_]|%)(?:[^\W_]|%)*"
_QUOTED = r'"(?:[^"]|"")*"'
_TOKEN = re.compile(
    rf"""
    (?P<ws>\s+)
  | (?P<str>{_QUOTED})
  | (?P<num>\d+(?:\.\d*)?|\.\d+)
  | (?P<dynamic>(?:\{{\s*\}}|\[\s*\])\.{_IDENT})
  | (?P<path>(?:{_IDENT}\.)?\{{[^{{}}]*\}})
  | (?P<classcall>(?i:\#\#class)\(\s*%?[A-Za-z][\w.%]*\s*\)\.%?[A-Za-z][A-Za-z0-9]*)
  | (?P<system>\$(?i:system)(?:\.{_IDENT})+)
  | (?P<dollar>\$[A-Za-z][A-Za-z0-9]*)
  | (?P<name>(?:\.\.)?{_IDENT}(?:\.(?:{_IDENT}|{_QUOTED}))*)
  | (?P<byref>\.(?={_IDENT}))
  | (?P<op>&&|\|\||!=|'=|<=|>=|'<|'>|'\[|'\]\]|'\]|\]\]|[=<>&!'_+\-*/(),:\[\]\#\\])
    """,
    re.VERBOSE,
)
_PART = re.compile(f"{_IDENT}|{_QUOTED}")


@dataclass(frozen=True)
class Tok:
    """One token: its kind (``name``, ``op``, ``str``, ``end``...), text and column (from 1)."""

    kind: str
    text: str
    col: int


class TokenStream:
    """The tokens of ``text``, read one at a time; errors name the expression and a column."""

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        self.toks = self._tokenize(text)
        self.i = 0

    def error(self, problem: str, col: int | None = None) -> ConfigError:
        """A ``ConfigError`` naming the expression and the column (the current token's)."""
        col = col if col is not None else self.peek().col
        prefix = f"{self.where}: " if self.where else ""
        return ConfigError(f"{prefix}expression {self.text!r}: {problem} at column {col}")

    def _tokenize(self, text: str) -> list[Tok]:
        toks: list[Tok] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise self.error(f"unexpected character {text[pos]!r}", pos + 1)
            kind = m.lastgroup or ""
            if kind != "ws":
                toks.append(Tok(kind, m.group(), pos + 1))
            pos = m.end()
        toks.append(Tok("end", "", len(text) + 1))
        return toks

    def peek(self) -> Tok:
        """The current token."""
        return self.toks[self.i]

    def take(self) -> Tok:
        """The current token; the stream moves past it."""
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        """Move past the token ``text``; an error names what was found instead."""
        if self.peek().text != text:
            got = self.peek().text or "the end"
            raise self.error(f"expected {text!r} but found {got!r}")
        self.i += 1


def name_parts(text: str) -> list[str]:
    """The names of a dotted name (``..`` dropped), quoted ones (``"2ndItem"``) unquoted."""
    names = [m.group() for m in _PART.finditer(text)]
    return [n[1:-1].replace('""', '"') if n.startswith('"') else n for n in names]
