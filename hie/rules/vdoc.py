"""Virtual documents that are not HL7, as a tree: XML, X12, EDIFACT, ASTM, IOP and the like.

IRIS reads and builds these documents with virtual property paths (``target.{Patient.Name}``,
``source.{ISA:InterchangeDate}``, ``{Pgrp(k1).P:PatientName.LastName}``). HIE holds such a
document as a JSON-like tree: dicts of names, lists for repeating parts, text (or numbers) at the
leaves. A path inside ``{}`` walks it:

- a name is a key; ``.`` and ``:`` both go one level down (``:`` between a segment and its
  field is only a nesting level here);
- ``name(n)`` is the n-th element (from 1) of the list under ``name``; a single value counts as
  a list of one; ``name(k1)`` takes the position from a variable (a foreach key); a key that is
  not a number selects that key of an array (a dict);
- ``name()`` / ``name(*)`` is every element: reading gives the list of values, a foreach runs
  over them, an assign reaches each;
- ``name`` with no index on a list is its first element, as IRIS reads an unindexed repeat.

Reading a missing part gives ``""`` (``[]`` under ``()``). Assigning makes what is missing: a
dict per name, a list where an index is given. The assign actions: ``set``; ``clear`` (empties
the value); ``remove`` (element ``key``, else the part itself); ``append`` (a new last element:
a missing part becomes a list of one, a single value a list of two); ``insert`` (at position
``key`` of a list, under text ``key`` of an array, else at the end).

Parsing real X12, EDIFACT or ASTM interchanges into this tree is not done here: their DTLs run
over the tree form (a JSON body). XML text converts both ways in ``hie.rules.vdoc_xml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from pydantic import BaseModel

from hie.errors import ConfigError
from hie.rules.functions import to_number, to_str
from hie.rules.paths import Index, Step

__all__ = [
    "ALL",
    "TreePath",
    "TreeStep",
    "assign_tree",
    "items_tree",
    "parse_tree_path",
    "read_tree",
]

#: Index meaning every element: ``()`` or ``(*)``.
ALL: Final = "*"

#: One ``name(index)`` step of a tree path: the step of virtual property paths.
TreeStep = Step

_STEP = re.compile(r"\s*([^.:()\s]+)\s*(?:\(\s*([^()]*?)\s*\))?\s*")
_VARIABLE = re.compile(r"[A-Za-z%][A-Za-z0-9%]*")


@dataclass(frozen=True)
class TreePath:
    """A parsed tree path (the inside of ``{}``)."""

    text: str
    steps: tuple[TreeStep, ...]

    @property
    def has_all(self) -> bool:
        """True when a step asks for every element (``()``): reading gives a list."""
        return any(step.index == ALL for step in self.steps)


def _index(text: str | None, path: str) -> Index:
    if text is None:
        return None
    if text in ("", "*"):
        return ALL
    if text.isdigit() and int(text) > 0:
        return int(text)
    if _VARIABLE.fullmatch(text):
        return text
    raise ConfigError(
        f"{{{path}}}: index ({text}) must be a position from 1, empty or * (every one), or a "
        "variable"
    )


@lru_cache(maxsize=4096)
def parse_tree_path(text: str) -> TreePath:
    """Parse the inside of ``{}`` for a document tree; ``ConfigError`` when it is not a path."""
    steps: list[TreeStep] = []
    pos = 0
    while True:
        m = _STEP.match(text, pos)
        if m is None:
            raise ConfigError(
                f"{{{text}}} is not a virtual property path: expected name or name(index) at "
                f"column {pos + 1}"
            )
        steps.append(TreeStep(m.group(1), _index(m.group(2), text)))
        pos = m.end()
        if pos == len(text):
            return TreePath(text, tuple(steps))
        if text[pos] not in ".:":
            raise ConfigError(
                f"{{{text}}} is not a virtual property path: unexpected {text[pos]!r} at "
                f"column {pos + 1}"
            )
        pos += 1


def _resolve(index: Index, variables: dict[str, Any]) -> int | str | None:
    """A variable index as its value: a position when it is a whole number, else a key."""
    if not isinstance(index, str) or index == ALL:
        return index
    value = variables.get(index, "")
    number = to_number(value, strict=True)
    if isinstance(number, int) or (isinstance(number, float) and number.is_integer()):
        if number < 1:
            raise ConfigError(f"index ({index}) is {to_str(value)}: positions start at 1")
        return int(number)
    return to_str(value) or None


def _get(node: Any, name: str) -> Any:
    if isinstance(node, BaseModel):
        node = node.model_dump(by_alias=True)
    return node.get(name) if isinstance(node, dict) else None


def _select(node: Any, step: TreeStep, variables: dict[str, Any], every: bool) -> list[Any]:
    """The values ``step`` selects under ``node`` (``every``: all elements when unindexed)."""
    value = _get(node, step.name)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    index = _resolve(step.index, variables)
    if index is None:
        return items if every else items[:1]
    if index == ALL:
        return items
    if isinstance(index, int):
        return items[index - 1 : index]
    found = value.get(index) if isinstance(value, dict) else None
    return [] if found is None else [found]


def read_tree(doc: Any, path: TreePath, variables: dict[str, Any]) -> Any:
    """The value at ``path``: a list of values when it has ``()``, ``""`` when missing."""
    nodes = [doc]
    for step in path.steps:
        nodes = [n for node in nodes for n in _select(node, step, variables, every=False)]
    nodes = ["" if n is None else n for n in nodes]
    if path.has_all:
        return nodes
    return nodes[0] if nodes else ""


def items_tree(doc: Any, path: TreePath, variables: dict[str, Any]) -> list[Any]:
    """What a ``foreach`` over ``path`` runs over: every element of its last step."""
    nodes = [doc]
    last = len(path.steps) - 1
    for i, step in enumerate(path.steps):
        nodes = [n for node in nodes for n in _select(node, step, variables, every=i == last)]
    return nodes


# -- assigning ----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A copy of ``value`` as plain data, so source and target never share a part."""
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _list_at(node: dict[str, Any], name: str) -> list[Any]:
    """The list under ``name``, made from what is there (nothing, or a single value)."""
    current = node.get(name)
    if isinstance(current, list):
        return current
    made = [] if current is None or current == "" else [current]
    node[name] = made
    return made


def _branch(items: list[Any], at: int) -> dict[str, Any]:
    """Element ``at`` (from 0) of ``items`` as a dict, made (or replacing a value) as needed."""
    items.extend({} for _ in range(at + 1 - len(items)))
    if not isinstance(items[at], dict):
        items[at] = {}
    found: dict[str, Any] = items[at]
    return found


def _descend(node: dict[str, Any], step: TreeStep, variables: dict[str, Any]) -> list[Any]:
    """The dicts under ``node`` that ``step`` reaches, made when missing."""
    index = _resolve(step.index, variables)
    current = node.get(step.name)
    if index == ALL:
        items = current if isinstance(current, list) else [current]
        found = [i for i in items if isinstance(i, dict)]
        return found or [_branch(_list_at(node, step.name), 0)]
    if isinstance(index, str):  # a key of an array
        array = current if isinstance(current, dict) else {}
        node[step.name] = array
        if not isinstance(array.get(index), dict):
            array[index] = {}
        return [array[index]]
    if isinstance(current, dict) and index in (None, 1):
        return [current]
    if index is None and not isinstance(current, list):
        node[step.name] = {}
        return [node[step.name]]
    return [_branch(_list_at(node, step.name), (index or 1) - 1)]


def assign_tree(
    doc: dict[str, Any],
    path: TreePath,
    value: Any,
    *,
    action: str = "set",
    key: int | str | None = None,
    variables: dict[str, Any],
) -> None:
    """Assign ``value`` at ``path`` in ``doc`` (see the module docstring for the actions)."""
    nodes: list[Any] = [doc]
    for step in path.steps[:-1]:
        nodes = [n for node in nodes for n in _descend(node, step, variables)]
    for node in nodes:
        _act(node, path.steps[-1], _plain(value), action, key, variables, path)


def _act(
    node: dict[str, Any],
    step: TreeStep,
    value: Any,
    action: str,
    key: int | str | None,
    variables: dict[str, Any],
    path: TreePath,
) -> None:
    index = _resolve(step.index, variables)
    if action == "set":
        _set(node, step.name, index, value)
    elif action == "clear":
        _set(node, step.name, index, _emptied(_at(node, step.name, index)))
    elif action == "remove":
        _remove(node, step.name, index, key)
    elif action in ("append", "insert"):
        _add(node, step.name, index, value, key if action == "insert" else None)
    else:
        raise ConfigError(
            f"{{{path.text}}}: assign action {action!r} is not set, clear, remove, append or insert"
        )


def _at(node: dict[str, Any], name: str, index: int | str | None) -> Any:
    current = node.get(name)
    if isinstance(index, int) and isinstance(current, list):
        return current[index - 1] if index <= len(current) else None
    return current


def _emptied(current: Any) -> Any:
    return type(current)() if isinstance(current, list | dict) else ""


def _set(node: dict[str, Any], name: str, index: int | str | None, value: Any) -> None:
    current = node.get(name)
    if index == ALL:
        if isinstance(value, list) or not isinstance(current, list) or not current:
            node[name] = value if isinstance(value, list) else [value]
        else:
            node[name] = [_plain(value) for _ in current]
    elif isinstance(index, str):
        array = current if isinstance(current, dict) else {}
        array[index] = value
        node[name] = array
    elif isinstance(index, int) and (index > 1 or isinstance(current, list) or current is None):
        items = _list_at(node, name)
        items.extend("" for _ in range(index - len(items)))
        items[index - 1] = value
    elif isinstance(current, list) and current and not isinstance(value, list):
        current[0] = value  # an unindexed repeat is its first element
    else:
        node[name] = value


def _remove(
    node: dict[str, Any], name: str, index: int | str | None, key: int | str | None
) -> None:
    if key is None:
        current = node.get(name)
        if isinstance(index, int) and isinstance(current, list):
            if index <= len(current):
                current.pop(index - 1)
        else:
            node.pop(name, None)
        return
    target = _at(node, name, index if isinstance(index, int) else None)
    if isinstance(target, list) and isinstance(key, int) and 0 < key <= len(target):
        target.pop(key - 1)
    elif isinstance(target, dict):
        target.pop(str(key), None)


def _add(
    node: dict[str, Any], name: str, index: int | str | None, value: Any, key: int | str | None
) -> None:
    if isinstance(index, int):  # into the element the index names
        items = _list_at(node, name)
        items.extend("" for _ in range(index - len(items)))
        items[index - 1] = _added(items[index - 1], value, key)
    else:
        node[name] = _added(node.get(name), value, key)


def _added(current: Any, value: Any, key: int | str | None) -> Any:
    """``current`` with ``value`` added: at position ``key`` (from 1), under text ``key`` of an
    array, else at the end."""
    if isinstance(key, str) and not isinstance(current, list):
        array = current if isinstance(current, dict) else {}
        array[key] = value
        return array
    at = key if isinstance(key, int) else None
    if isinstance(current, list):
        current.insert(len(current) if at is None else max(at - 1, 0), value)
        return current
    if current is None or current == "":
        return [value]
    return [value, current] if at == 1 else [current, value]
