"""XML text and the document tree of ``hie.rules.vdoc``, both ways (``EnsLib.EDI.XML.Document``).

An IRIS XML virtual document is addressed from inside its root element: for
``<Container><Patient><Name>..`` the path is ``{Patient.Name}``. The tree is the root's content:

- an element is a key named after it (its namespace left out); an element that repeats under
  the same parent is a list, in document order;
- an element holding only text is that text (``""`` when empty);
- attributes are keys ``"@name"``; an element with attributes or child elements keeps its own
  text (all of it, trimmed; mixed content does not keep its place between children) under
  ``"#text"``;
- comments and processing instructions are left out.

Writing turns the same tree back into XML under a root element the caller names (the part of
the doc type after ``:``, ``SDA3_schema:Container`` -> ``Container``): a list writes one element
per value, numbers and other leaves are written as their text, ``None`` as an empty element.
A key that is not an XML name (``0004``) cannot be written and raises ``MessageError``.
"""

from __future__ import annotations

from typing import Any

from lxml import etree
from pydantic import BaseModel

from hie.errors import ConfigError, MessageError
from hie.rules.functions import to_str

__all__ = ["tree_from_xml", "tree_to_xml", "xml_root"]


def xml_root(doc_type: str) -> str:
    """The root element a doc type names (``IoT MQTT:body`` -> ``body``); ``""`` when none."""
    return doc_type.rpartition(":")[2].strip()


def tree_from_xml(data: str | bytes) -> dict[str, Any]:
    """The tree of an XML document (its root element's content); ``MessageError`` when the
    text is not well-formed XML (or declares a DTD, which is refused)."""
    from hie.iris.safe_xml import parse_xml  # hie.iris imports hie.rules: import when used

    try:
        root = parse_xml(data, source="XML document")
    except ConfigError as exc:
        raise MessageError(str(exc)) from exc
    content = _value(root)
    if isinstance(content, dict):
        return content
    return {"#text": content} if content else {}


def _local(element: etree._Element) -> str:
    return str(etree.QName(element).localname)


def _value(element: etree._Element) -> Any:
    children = [c for c in element if isinstance(c.tag, str)]
    if not children and not element.attrib:
        return element.text or ""
    out: dict[str, Any] = {f"@{etree.QName(k).localname}": v for k, v in element.attrib.items()}
    for child in children:
        name, value = _local(child), _value(child)
        if name not in out:
            out[name] = value
        elif isinstance(out[name], list):
            out[name].append(value)
        else:
            out[name] = [out[name], value]
    text = (element.text or "") + "".join(c.tail or "" for c in element)
    if text.strip():
        out["#text"] = text.strip()
    return out


def tree_to_xml(tree: Any, root: str) -> str:
    """The XML text of ``tree`` (a dict, or the model a transform returned) under ``<root>``
    (``<document>`` when ``root`` is empty)."""
    if isinstance(tree, BaseModel):
        tree = tree.model_dump(by_alias=True)
    element = _element(None, root or "document")
    _fill(element, tree)
    return str(etree.tostring(element, encoding="unicode"))


def _element(parent: etree._Element | None, name: str) -> etree._Element:
    try:
        return etree.Element(name) if parent is None else etree.SubElement(parent, name)
    except ValueError as exc:
        raise MessageError(f"{name!r} cannot be an XML element name: {exc}") from exc


def _fill(element: etree._Element, value: Any) -> None:
    try:
        if isinstance(value, dict):
            for key, item in value.items():
                if key.startswith("@"):
                    element.set(key[1:], to_str(item))
                elif key == "#text":
                    element.text = to_str(item)
                else:
                    for one in item if isinstance(item, list) else [item]:
                        _fill(_element(element, key), one)
        elif value is not None:
            element.text = to_str(value)
    except ValueError as exc:  # an attribute name or a character XML does not allow
        raise MessageError(f"<{element.tag}> cannot be written as XML: {exc}") from exc
