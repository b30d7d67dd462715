"""Assigning into a transform's object target: properties, lists and arrays, made as needed.

While a transform runs its object target is plain data: a dict per object and per array
(``array Of``), a list per list (``list Of``, indexed from 1). A missing step is created on the
way, as IRIS DTL does for ``target.Observations.(k1).Code``: what it becomes (list, array or
object) comes from the target's model when there is one, else from the next step (a numeric
index makes a list).

The assign actions (``<assign action=...>``) on a path:

- ``set``: the value; with a ``key``, element ``key`` of the collection (a list from 1, an
  array by text), as IRIS ``SetAt``; ``clear``: an empty collection, or no value for a property;
- ``append``: a new last element of a list (text properties are extended instead);
- ``insert``: into a list at ``key`` (from 1; at the end without one), into an array at ``key``;
- ``remove``: element ``key`` of a list or array; without a key, the property itself.
"""

from __future__ import annotations

import types
from inspect import isclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from hie.errors import ConfigError
from hie.rules.expressions import Context
from hie.rules.functions import to_str
from hie.rules.object_paths import ObjectPath, field_name, plain

__all__ = ["assign_object", "check_object_path", "shape_of"]

Key = str | int


def shape_of(annotation: Any) -> tuple[str, Any]:
    """``("list" | "array" | "object" | "value" | "open", inner)`` for a field's type
    annotation; ``open`` (``Any``: a class not defined here) takes whatever is put there."""
    if annotation is Any:
        return "open", None
    if get_origin(annotation) in (Union, types.UnionType):
        kept = [a for a in get_args(annotation) if a is not type(None)]
        return shape_of(kept[0]) if len(kept) == 1 else ("value", None)
    origin = get_origin(annotation)
    if origin is list:
        return "list", get_args(annotation)[0]
    if origin is dict:
        return "array", get_args(annotation)[1]
    if isclass(annotation) and issubclass(annotation, BaseModel):
        return "object", annotation
    return "value", None


def _known(annotation: Any) -> tuple[str, Any] | None:
    """The shape of ``annotation`` when it says one (not missing, not open)."""
    shape = shape_of(annotation) if annotation is not None else None
    return None if shape is None or shape[0] == "open" else shape


def _child_shape(shape: tuple[str, Any] | None, key: Key, path: ObjectPath) -> Any:
    """The annotation of ``key`` inside a node of ``shape`` (None when unknown)."""
    if shape is None:
        return None
    kind, inner = shape
    if kind in ("list", "array"):
        return inner
    if kind == "object":
        name = field_name(inner, str(key))
        if name is None:
            props = ", ".join(f.alias or n for n, f in inner.model_fields.items())
            raise ConfigError(
                f"{path.text}: {inner.__qualname__} has no property {key!r} (it has {props})"
            )
        return inner.model_fields[name].annotation
    raise ConfigError(f"{path.text}: {key!r} is inside a value, not an object")


def check_object_path(path: ObjectPath, model: type[BaseModel] | None, where: str) -> None:
    """Refuse, at load, a path that cannot be assigned: a method step, or a property the
    target's model does not have (``target.PatientID`` for ``PatientId``)."""
    shape: tuple[str, Any] | None = ("object", model) if model is not None else None
    for step in path.steps:
        if step.method:
            raise ConfigError(f"{where}: {path.text}: a method result cannot be assigned to")
        if shape is None or (not step.name and shape[0] == "object"):
            return  # no model, or an index into an object: only the run can tell
        if not step.name:
            annotation = shape[1]
        else:
            try:
                annotation = _child_shape(shape, step.name, path)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        shape = _known(annotation)
        if shape is not None and shape[0] == "value":
            shape = None if step is path.steps[-1] else shape


def _get(node: Any, key: Key) -> Any:
    if isinstance(node, dict):
        return node.get(str(key))
    if isinstance(node, list) and isinstance(key, int) and 0 < key <= len(node):
        return node[key - 1]
    return None


def _put(node: Any, key: Key, value: Any, path: ObjectPath) -> None:
    if isinstance(node, dict):
        node[str(key)] = value
        return
    if isinstance(node, list) and isinstance(key, int) and key > 0:
        node.extend([None] * (key - len(node)))
        node[key - 1] = value
        return
    raise ConfigError(f"{path.text}: cannot set {key!r} here (lists are indexed from 1)")


def _new(annotation: Any, next_key: Key | None) -> list[Any] | dict[str, Any]:
    """An empty list, array or object for a missing step."""
    if _known(annotation) is not None:
        return [] if shape_of(annotation)[0] == "list" else {}
    return [] if isinstance(next_key, int) else {}


def assign_object(
    path: ObjectPath,
    ctx: Context,
    value: Any,
    *,
    action: str = "set",
    key: Key | None = None,
    model: type[BaseModel] | None = None,
) -> None:
    """Assign ``value`` at ``path`` in ``ctx.target``, or in a DTL variable when the path
    starts with one (``tObj.Name``: an object made when the variable holds none); see the
    module docstring.

    Raises ``ConfigError`` naming the path when a step is not an object or collection, or the
    model has no such property.
    """
    node: Any = ctx.target
    if path.owner != "target":
        node = plain(ctx.variables.get(path.owner))
        node = ctx.variables[path.owner] = node if isinstance(node, dict) else {}
        model = None  # a variable's object: no class to check it against
    elif not isinstance(node, dict):
        raise ConfigError(f"{path.text}: the target is not an object")
    shape: tuple[str, Any] | None = ("object", model) if model is not None else None
    keys = [path.key(step, ctx) for step in path.steps]
    for i, step_key in enumerate(keys[:-1]):
        annotation = _child_shape(shape, step_key, path)
        found = _get(node, step_key)
        if not isinstance(found, dict | list):
            found = _new(annotation, keys[i + 1])
            _put(node, step_key, found, path)
        node = found
        shape = _known(annotation)
    last = keys[-1]
    annotation = _child_shape(shape, last, path)
    _act(node, last, plain(value), action, key, annotation, path)


def _act(
    node: Any,
    last: Key,
    value: Any,
    action: str,
    key: Key | None,
    annotation: Any,
    path: ObjectPath,
) -> None:
    current = _get(node, last)
    if action == "set" and key is not None:  # an element of the collection (IRIS SetAt)
        if not isinstance(current, list | dict):
            current = _new(annotation, key)
            _put(node, last, current, path)
        _put(current, key, value, path)
    elif action == "set":
        _put(node, last, value, path)
    elif action in ("clear", "remove") and key is None:
        if isinstance(current, list | dict) and action == "clear":
            current.clear()
        elif isinstance(node, dict):
            node.pop(str(last), None)
        elif isinstance(node, list) and isinstance(last, int) and 0 < last <= len(node):
            node.pop(last - 1)
    elif action == "remove":
        if isinstance(current, list) and isinstance(key, int) and 0 < key <= len(current):
            current.pop(key - 1)
        elif isinstance(current, dict):
            current.pop(str(key), None)
    elif action == "append" and (isinstance(current, str) or _is_text(annotation)):
        _put(node, last, to_str(current) + to_str(value), path)
    elif action in ("append", "insert"):
        if current is None or current == "":
            current = _new(annotation, key if action == "insert" and key is not None else 1)
            _put(node, last, current, path)
        _insert(current, value, key if action == "insert" else None, path)
    else:
        raise ConfigError(
            f"{path.text}: assign action {action!r} is not set, clear, remove, append or insert"
        )


def _insert(collection: Any, value: Any, key: Key | None, path: ObjectPath) -> None:
    if isinstance(collection, list):
        if key is None:
            collection.append(value)
        elif isinstance(key, int) and key > 0:
            collection.insert(key - 1, value)
        else:
            raise ConfigError(f"{path.text}: a list is indexed from 1, not by {key!r}")
    elif isinstance(collection, dict):
        if key is None:
            raise ConfigError(f"{path.text}: inserting into an array needs a key")
        collection[str(key)] = value
    else:
        raise ConfigError(f"{path.text}: append and insert need a list or an array")


def _is_text(annotation: Any) -> bool:
    return (
        annotation is not None
        and shape_of(annotation) == ("value", None)
        and (str in get_args(annotation) or annotation is str)
    )
