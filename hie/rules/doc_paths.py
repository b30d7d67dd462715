"""Virtual property paths read by what their owner holds: ``target.{Patient.Name}``,
``tSeg.{BPR:AccountNumber}``, ``source.Parent.{GS:Date}``.

The expression language reads ``{...}`` paths of HL7 messages itself. A DTL also puts them on
documents that are not HL7 (``hie.rules.vdoc`` trees), on a single segment
(``hie.rules.segment_view``) and on variables holding either; a ``DocPath`` reads, counts and
assigns those, choosing by what the owner holds when the transform runs:

- a ``SegmentView``: the path names a field of that segment (``{SetIDPID}``);
- an ``HL7Message``: an HL7 path (``{PIDgrp.PID:5}``);
- anything else (a dict, a model, nothing yet): a document tree path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from hie.errors import ConfigError
from hie.hl7 import HL7Message
from hie.rules.access import read_path
from hie.rules.functions import to_str
from hie.rules.hl7_target import assign_hl7, count
from hie.rules.paths import VirtualPath, parse_virtual_path
from hie.rules.segment_view import SegmentView
from hie.rules.vdoc import TreePath, assign_tree, items_tree, parse_tree_path, read_tree

if TYPE_CHECKING:
    from hie.rules.expressions import Context

__all__ = ["OWNERS", "DocPath", "doc_path_at", "owner_at", "parse_doc_path"]

#: Owners the expression language gives virtual paths itself (of HL7 messages).
OWNERS = frozenset({"hl7", "document", "source", "target", "aux", "request", "msg"})
_CHAIN = re.compile(r"([A-Za-z%][A-Za-z0-9%]*)((?:\.[A-Za-z%][A-Za-z0-9%]*)*)\.\{")


@dataclass(frozen=True)
class DocPath:
    """``owner.Prop.{inner}``: the owner (``source``, ``target``, ``aux`` or a variable), the
    properties on the way, and the path inside the braces."""

    text: str
    owner: str
    props: tuple[str, ...]
    inner: str
    tree: TreePath

    def holder(self, ctx: Context) -> Any:
        """What the path is read in: the owner's value, through its properties."""
        if self.owner in ("source", "target", "aux"):
            found = getattr(ctx, self.owner)
        else:
            found = ctx.variables.get(self.owner, "")
        for prop in self.props:
            if isinstance(found, BaseModel):
                found = found.model_dump(by_alias=True)
            found = found.get(prop, "") if isinstance(found, dict) else ""
        return found

    def read(self, ctx: Context) -> Any:
        """The value at the path (``""`` when missing; a list for ``()`` paths)."""
        doc = self.holder(ctx)
        if isinstance(doc, SegmentView):
            return read_path(doc.message, doc.path(self.inner), ctx.variables)
        if isinstance(doc, HL7Message):
            return read_path(doc, self._hl7(), ctx.variables)
        return read_tree(doc, self.tree, ctx.variables)

    def items(self, ctx: Context) -> list[Any]:
        """What a foreach runs over: positions 1..n, or for a ``...DocsRef`` of a document
        tree (the child documents of an X12 or EDIFACT batch) the children themselves, which
        IRIS gives the foreach key."""
        doc = self.holder(ctx)
        if isinstance(doc, SegmentView):
            total = count(doc.message, doc.path(self.inner), ctx.variables)
        elif isinstance(doc, HL7Message):
            total = count(doc, self._hl7(), ctx.variables)
        else:
            found = items_tree(doc, self.tree, ctx.variables)
            if self.tree.steps[-1].name.endswith("DocsRef"):
                return found
            total = len(found)
        return list(range(1, total + 1))

    def assign(self, ctx: Context, value: Any, *, action: str, key: int | str | None) -> None:
        """Assign ``value`` at the path of the target or a variable (a missing variable starts
        as an empty document tree)."""
        doc = self.holder(ctx)
        if isinstance(doc, SegmentView | HL7Message):
            if isinstance(key, str):
                raise ConfigError(f"{self.text}: key {key!r} is not a number")
            message = doc.message if isinstance(doc, SegmentView) else doc
            path = doc.path(self.inner) if isinstance(doc, SegmentView) else self._hl7()
            changed = assign_hl7(
                message, path, to_str(value), action=action, key=key, variables=ctx.variables
            )
            if isinstance(doc, SegmentView):
                doc.message = changed
            else:
                self._store(ctx, changed)
            return
        if isinstance(doc, BaseModel):
            doc = doc.model_dump(by_alias=True)
        if not isinstance(doc, dict):
            doc = {}
        self._store(ctx, doc)
        assign_tree(doc, self.tree, value, action=action, key=key, variables=ctx.variables)

    def _hl7(self) -> VirtualPath:
        return parse_virtual_path(self.inner)

    def _store(self, ctx: Context, doc: Any) -> None:
        if self.props:
            raise ConfigError(f"{self.text}: assign to the document itself, not a property of it")
        if self.owner == "target":
            ctx.target = doc
        elif self.owner == "aux":
            ctx.aux = doc
        else:
            ctx.variables[self.owner] = doc


def owner_at(text: str, start: int) -> tuple[str, tuple[str, ...]] | None:
    """The owner and properties of an ``owner.Prop.{`` starting at ``start``, else None."""
    m = _CHAIN.match(text, start)
    if m is None:
        return None
    return m.group(1), tuple(p for p in m.group(2).split(".") if p)


def doc_path_at(text: str, start: int) -> tuple[DocPath, int] | None:
    """The ``owner.Prop.{...}`` path starting at ``start`` of ``text`` and where it ends; None
    when none starts there. Raises ``ConfigError`` for a path that does not parse."""
    m = _CHAIN.match(text, start)
    if m is None:
        return None
    close = text.find("}", m.end())
    if close < 0:
        return None
    inner = text[m.end() : close]
    try:
        tree = parse_tree_path(inner)
    except ConfigError as exc:
        raise ConfigError(f"{text[start : close + 1]}: {exc}") from None
    props = tuple(p for p in m.group(2).split(".") if p)
    return DocPath(text[start : close + 1], m.group(1), props, inner, tree), close + 1


def parse_doc_path(text: str) -> DocPath | None:
    """``text`` as a ``DocPath`` when all of it is one, else None."""
    found = doc_path_at(text.strip(), 0)
    return found[0] if found is not None and found[1] == len(text.strip()) else None
