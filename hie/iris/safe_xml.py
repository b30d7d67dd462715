"""Safe XML parsing for every XML HIE reads (productions, rules, DTL, lookup tables).

XML from an IRIS export is configuration, but it still crosses a trust boundary: a DTD with
entity declarations can expand to gigabytes ("billion laughs") or pull in local files
(``file:///etc/passwd``). IRIS exports never need a DTD, so any ``<!DOCTYPE`` or ``<!ENTITY``
is refused before lxml sees the document, and the parser is built with entity resolution,
network access and DTD loading all off as a second line of defence.
"""

from __future__ import annotations

import re

from lxml import etree

from hie.errors import ConfigError

__all__ = ["parse_xml"]

_DTD_RE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _parser() -> etree.XMLParser:
    # A fresh parser per call: lxml parsers are not thread-safe and these are cheap.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        dtd_validation=False,
        remove_comments=False,
    )


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def parse_xml(text_or_bytes: str | bytes, *, source: str, first_line: int = 1) -> etree._Element:
    """Parse XML safely and return its root element.

    Args:
        text_or_bytes: the document.
        source: where it came from (a file name), used in every error.
        first_line: line of ``source`` where the document starts (for XData blocks in a
            ``.cls`` file), so errors and element ``sourceline`` values can be offset by callers.

    Raises:
        ConfigError: the document has a DTD or entity declarations, or is not well-formed XML.
    """
    data = text_or_bytes.encode("utf-8") if isinstance(text_or_bytes, str) else text_or_bytes
    found = _DTD_RE.search(data)
    if found:
        line = _line_of(data, found.start()) + first_line - 1
        raise ConfigError(f"XML with a DTD or entities is refused: {source}:{line}")
    if isinstance(text_or_bytes, str):
        # lxml refuses str input that carries an encoding declaration; bytes are fine.
        data = re.sub(rb"^\s*<\?xml[^>]*\?>", b"", data, count=1)
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        line = (exc.lineno or 1) + first_line - 1
        raise ConfigError(f"{source}:{line}: XML is not well-formed: {exc.msg}") from exc
    tree = root.getroottree()
    # Belt and braces: the regex above should make this unreachable.
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise ConfigError(f"XML with a DTD or entities is refused: {source}:{first_line}")
    return root
