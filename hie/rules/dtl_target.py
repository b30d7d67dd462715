"""What a transform reads and builds, by the kind of its source and target classes.

- ``hl7``: an HL7 v2 message (``EnsLib.HL7.Message``), an ``HL7Message``; ``create="new"``
  starts from the source's MSH alone (every message needs one), ``copy`` and ``existing`` from
  a copy of the source (or of the message a parent hands a subtransform).
- ``segment``: one HL7 segment (``EnsLib.HL7.Segment``), run on a ``SegmentView``; a segment
  comes in and goes out as its ER7 text.
- ``object``: a message class defined beside the transform (``hie.iris.message_classes``):
  built as plain data and validated into its model at the end.
- ``document``: anything else, as an open tree of plain data: virtual documents
  (``EnsLib.EDI.XML.Document``, X12, EDIFACT, ASTM, ``IOP.Message``; ``hie.rules.vdoc``) and
  classes with no definition found (``Ens.Request`` subclasses whose ``.cls`` is elsewhere,
  product classes such as ``EnsLib.Kafka.Message``). Virtual paths and properties read and
  build the same tree. The result is an open model of the class (``iris:<Class>``, see
  ``hie.iris.message_classes.body_class``), so it travels as a JSON body. XML text given as
  the source is read into its tree (``hie.rules.vdoc_xml``), JSON text into its object.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from hie.errors import MessageError
from hie.hl7 import HL7Message
from hie.rules.object_paths import plain
from hie.rules.segment_view import SegmentView, segment_of
from hie.rules.vdoc_xml import tree_from_xml

__all__ = ["Kind", "class_kind", "finish", "new_target", "start_source"]

Kind = Literal["hl7", "segment", "object", "document"]


def class_kind(name: str, defined: dict[str, Any]) -> Kind:
    """The kind of class ``name`` (module docstring); ``defined``: the classes defined."""
    low = name.lower()
    if low == "enslib.hl7.segment":
        return "segment"
    if not name or low.startswith("enslib.hl7."):
        return "hl7"
    return "object" if name in defined else "document"


def _version(doc_type: str) -> str:
    version = doc_type.split(":")[0]
    return version if re.fullmatch(r"\d+(\.\d+)*", version) else ""


def start_source(source: Any, kind: Kind, doc_type: str) -> Any:
    """The source as the transform reads it: a segment's text as a ``SegmentView``, XML or
    JSON text of a document as its tree, a document's model as plain data."""
    if kind == "segment" and isinstance(source, str):
        return SegmentView.of(source, segment=segment_of(doc_type), version=_version(doc_type))
    if kind != "document":
        return source
    if isinstance(source, bytes):
        source = source.decode("utf-8-sig")
    if isinstance(source, str) and source.lstrip().startswith("<"):
        return tree_from_xml(source)
    if isinstance(source, str) and source.lstrip().startswith("{"):
        try:
            return json.loads(source)
        except ValueError as exc:
            raise MessageError(f"the source is not a JSON object: {exc}") from exc
    return plain(source) if isinstance(source, BaseModel) else source


def new_target(kind: Kind, *, create: str, doc_type: str, source: Any, existing: Any = None) -> Any:
    """The target a run starts from: per ``create``, new, a copy of the source, or
    ``existing`` (what a parent's ``targetObj`` holds, for ``create="existing"``)."""
    start = existing if create == "existing" and existing not in (None, "") else None
    if kind == "segment":
        if start is None and create != "new" and isinstance(source, SegmentView):
            start = source.text()
        text = start if isinstance(start, str) else ""
        return SegmentView.of(text, segment=segment_of(doc_type), version=_version(doc_type))
    if kind == "hl7":
        return _new_message(create, doc_type, source, start)
    if start is not None:
        return plain(start)
    copying = create != "new" and isinstance(source, BaseModel | dict)
    return plain(source) if copying else {}


def _new_message(create: str, doc_type: str, source: Any, start: Any) -> HL7Message:
    if isinstance(start, HL7Message):
        return start.copy()
    if not isinstance(source, HL7Message):
        return HL7Message(_blank_msh(doc_type))
    if create != "new":
        return source.copy()
    target = HL7Message(source.to_er7().split("\r")[0])
    version = _version(doc_type)
    if version:
        target.set("MSH-12", version)
    return target


def _blank_msh(doc_type: str) -> str:
    """An MSH for an HL7 target built from an object: version and type from the doc type."""
    version, _, name = doc_type.rpartition(":")
    code, _, event = name.partition("_")
    kind = "^".join(p for p in (code, event, name if event else "") if p) or "ACK"
    version = version if re.fullmatch(r"[\d.]+", version) else ""
    return "MSH|^~\\&|||||||" + kind + "|||" + version


def finish(
    target: Any, kind: Kind, *, name: str, class_name: str, model: type[BaseModel] | None
) -> Any:
    """What ``Transform.apply`` returns: the message, the segment's text, the model of an
    object (``MessageError`` naming transform ``name`` when it is not valid), or the open
    model of a document."""
    if isinstance(target, SegmentView):
        return target.text()
    if not isinstance(target, dict) or kind == "hl7":
        return target
    if model is None:
        from hie.iris.message_classes import BODY_PREFIX, body_class  # hie.iris imports us

        model = body_class(BODY_PREFIX + class_name)
    try:
        return model.model_validate(target)
    except ValidationError as exc:
        raise MessageError(
            f"transform {name}: the target is not a valid {class_name}: {exc}"
        ) from exc
