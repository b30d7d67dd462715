"""Read the XML definition inside an IRIS class, wherever the class was saved.

A production, a routing rule and a DTL transform are each XML kept in an ``XData`` block of a
class (``ProductionDefinition``, ``RuleDefinition``, ``DTL``). An engineer hands HIE one of
three wrappings, and ``read_definition`` unwraps each the same way:

- a class file (``.cls``): ``Class Demo.X Extends Ens.Rule.Definition { XData RuleDefinition
  { <ruleDefinition> } }``;
- a Studio / portal export: ``<Export><Class name="Demo.X"><XData name="RuleDefinition"><Data>
  <![CDATA[<ruleDefinition>]]>``, or a document holding the element itself (Ens.Deployment);
- the bare document: ``<ruleDefinition>``.

Lines are kept: every element's line is its line in the file the engineer opened, so each error
a reader raises can say where to look. The XML itself goes through ``parse_xml`` (no DTDs).

Classes one definition uses (message classes, subtransforms) are found with ``files_beside``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from hie.errors import ConfigError
from hie.iris.safe_xml import parse_xml

__all__ = [
    "Definition",
    "class_declaration",
    "extract_xdata",
    "file_kind",
    "files_beside",
    "read_definition",
    "tag_name",
]

_CLASS_RE = re.compile(r"^\s*Class\s+([\w.%]+)(?:\s+Extends\s+\(?([\w.%,\s]+)\)?)?", re.MULTILINE)
_XDATA_RE = re.compile(r"^[ \t]*XData[ \t]+(\w+)\b[^\n{]*\n?[ \t]*\{[ \t]*\n?", re.MULTILINE)
_XDATA_NAME_RE = re.compile(r"^[ \t]*XData[ \t]+(\w+)", re.MULTILINE)
_XDATA_END_RE = re.compile(r"^[ \t]*\}[ \t]*$", re.MULTILINE)
_DECL_RE = re.compile(r"^\s*<\?xml[^>]*\?>")
#: Superclass, XData block or root element -> the kind of definition the file holds.
_KINDS = {
    "Ens.Production": "production",
    "Ens.Rule.Definition": "rule",
    "Ens.DataTransformDTL": "dtl",
    "ProductionDefinition": "production",
    "RuleDefinition": "rule",
    "DTL": "dtl",
    "Production": "production",
    "ruleDefinition": "rule",
    "transform": "dtl",
}


def tag_name(element: etree._Element) -> str:
    """The element's tag without its namespace; ``""`` for comments and processing instructions."""
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def class_declaration(cls_text: str) -> tuple[str, list[str]]:
    """The class name and the classes it extends, from the ``Class`` line of a ``.cls`` file."""
    match = _CLASS_RE.search(cls_text)
    if match is None:
        return "", []
    supers = [name.strip() for name in (match.group(2) or "").split(",") if name.strip()]
    return match.group(1), supers


def files_beside(name: str, near: Path) -> list[Path]:
    """The files that may hold class ``name`` exported near the file ``near``: ``name.cls``,
    ``name.xml``, ``*__name.cls`` or ``.xml``, in ``near``'s folder, its parent and the parent's
    other folders (how an export is usually laid out), in that order.

    ``prefix__Name.cls`` names a class of the export ``prefix``: when ``near`` is named so too,
    a class file of another export is not its class, even of the same name.
    """
    here = near.resolve().parent
    try:
        beside = sorted(p for p in here.parent.iterdir() if p.is_dir() and p != here)
    except OSError:
        beside = []
    export = near.name.rpartition("__")[0]
    found: list[Path] = []
    for folder in [here, here.parent, *beside]:
        candidates = [folder / f"{name}.cls", folder / f"{name}.xml"]
        for suffix in (".cls", ".xml"):
            candidates += [
                p
                for p in sorted(folder.glob(f"*__{name}{suffix}"))
                if not export or p.name[: -len(f"__{name}{suffix}")] == export
            ]
        found.extend(p for p in candidates if p.is_file())
    return found


def file_kind(path: Path) -> str:
    """``production``, ``rule`` or ``dtl``; ``ConfigError`` when the file is none of these."""
    if path.suffix.lower() == ".cls":
        text = path.read_text(encoding="utf-8")
        names = class_declaration(text)[1] + _XDATA_NAME_RE.findall(text)
    else:
        root = parse_xml(path.read_bytes(), source=str(path))
        # An export names its class's superclass in <Super> and its XData blocks by name.
        names = [
            e.text.strip() if tag_name(e) == "Super" and e.text else e.get("name") or tag_name(e)
            for e in root.iter()
            if tag_name(e)
        ]
    for name in names:
        if name in _KINDS:
            return _KINDS[name]
    raise ConfigError(
        f"{path}: not an IRIS production, routing rule or DTL (no Ens.Production, "
        "Ens.Rule.Definition or Ens.DataTransformDTL)"
    )


def extract_xdata(cls_text: str, name: str, *, source: str) -> tuple[str, int]:
    """Pull the body of ``XData <name> { ... }`` out of an IRIS ``.cls`` file.

    Returns ``(xml_text, first_line)`` where ``first_line`` is the 1-based line of ``cls_text``
    on which ``xml_text`` starts, so XML errors can name the line of the class file.

    Raises:
        ConfigError: the class has no XData block of that name, or it is not closed.
    """
    for match in _XDATA_RE.finditer(cls_text):
        if match.group(1).lower() != name.lower():
            continue
        start = match.end()
        close = _xdata_end(cls_text, start)
        if close is None:
            line = cls_text.count("\n", 0, match.start()) + 1
            raise ConfigError(f"{source}:{line}: XData {name} is not closed with '}}'")
        first_line = cls_text.count("\n", 0, start) + 1
        return cls_text[start:close], first_line
    raise ConfigError(f"{source}: no 'XData {name}' block in the class")


def _xdata_end(cls_text: str, start: int) -> int | None:
    """Where the XData block opened before ``start`` ends: the first line that is only "}"
    outside a CDATA section (IRIS writes XData this way; a ``<code>`` body in CDATA may hold
    such a line, and a "}" in XML text or attributes is never alone on a line)."""
    pos = start
    while True:
        close = _XDATA_END_RE.search(cls_text, pos)
        cdata = cls_text.find("<![CDATA[", pos)
        if close is None or cdata < 0 or cdata > close.start():
            return None if close is None else close.start()
        end = cls_text.find("]]>", cdata)
        if end < 0:
            return None
        pos = end + 3


@dataclass(frozen=True)
class Definition:
    """The root element of a class's XData definition, with what is needed to name lines."""

    root: etree._Element
    #: The IRIS class the definition belongs to; ``""`` when the file does not say (bare XML).
    class_name: str
    source: str
    #: Added to an element's ``sourceline`` to give its line in ``source``.
    line_offset: int = 0

    def line(self, element: etree._Element) -> int:
        """The line of ``element`` in the original file."""
        return (element.sourceline or 1) + self.line_offset

    def error(self, element: etree._Element, problem: str) -> ConfigError:
        """A ``ConfigError`` naming the file and the line of ``element``."""
        return ConfigError(f"{self.source}:{self.line(element)}: {problem}")


def _strip_decl(text: str) -> str:
    # A declaration inside XData/CDATA text: drop it but keep its newlines so lines still match.
    return _DECL_RE.sub(lambda m: "\n" * m.group().count("\n"), text, count=1)


def _holds(text: str, root: str) -> bool:
    start = text.lstrip()
    return start.startswith((f"<{root}", "<?xml")) and f"<{root}" in text


def _from_export(export: etree._Element, raw: str, root: str, source: str) -> Definition | None:
    """The first ``<root>`` in an export: an element, or the (CDATA) text of one."""
    for element in export.iter():
        if tag_name(element) == root:
            return Definition(element, _owner_class(element), source)
    for element in export.iter():
        text = element.text or ""
        if not _holds(text, root):
            continue
        # CDATA is copied verbatim, so its offset in the file gives its first line.
        at = raw.find(text)
        first = raw.count("\n", 0, at) + 1 if at >= 0 else (element.sourceline or 1)
        inner = parse_xml(_strip_decl(text), source=source, first_line=first)
        if tag_name(inner) == root:
            return Definition(inner, _owner_class(element), source, first - 1)
    return None


def _owner_class(element: etree._Element) -> str:
    for ancestor in element.iterancestors():
        if tag_name(ancestor) == "Class":
            return ancestor.get("name") or ""
    return ""


def read_definition(data: str | bytes, *, xdata: str, root: str, source: str) -> Definition:
    """The ``<root>`` definition of a class file, an export or a bare document (module doc).

    Args:
        data: the file's content; bytes let an XML encoding declaration be honoured.
        xdata: the XData block a class file keeps it in (``RuleDefinition``).
        root: the definition's root element (``ruleDefinition``).
        source: the file name, used in every error.

    Raises:
        ConfigError: the XML is not well-formed or has a DTD, the class has no such XData
            block, or no ``<root>`` is found; the message names the file and, where known, line.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = ""  # not UTF-8: only an XML document declaring its encoding can be read
    else:
        text = data = data.removeprefix("\ufeff")
    # Newlines as Python's text mode reads them: the XData patterns and line counts need "\n".
    text = re.sub(r"\r\n?", "\n", text)
    found: Definition | None
    if text and not text.lstrip().startswith("<"):
        body, first = extract_xdata(text, xdata, source=source)
        element = parse_xml(_strip_decl(body), source=source, first_line=first)
        found = Definition(element, class_declaration(text)[0], source, first - 1)
    else:
        element = parse_xml(data, source=source)
        found = Definition(element, "", source) if tag_name(element) == root else None
        found = found or _from_export(element, text, root, source)
    if found is None:
        raise ConfigError(
            f"{source}: no <{root}> in this <{tag_name(element)}> document; expected a class "
            f"with XData {xdata}, or an export of one"
        )
    if tag_name(found.root) != root:
        raise found.error(found.root, f"expected <{root}>, found <{tag_name(found.root)}>")
    return found
